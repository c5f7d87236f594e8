#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, in one command (well under 8 minutes):
#   1. build minicnn._C_cuda for this GPU's architecture (and _C_emu, _C_cpu), in place
#   2. run the kernel tests on device "cuda" (against the cpu backend and PyTorch)
#   3. print per-kernel timings beside PyTorch/cuDNN's for the same shapes, when PyTorch is installed
#   4. conv2d on every ResNet-50 conv shape (batch 64, 224 px): TFLOP/s of ours and cuDNN's
#
#   scripts/gpu_check.sh [--batch 32]        (extra arguments go to benchmarks/bench_kernels.py)
#
# Environment: PYTHON (default python3), MINICNN_CUDA_ARCHS (default: the GPU's compute capability).
# If CuPy is missing it tries `pip install cupy-cuda12x` or `cupy-cuda13x`, by the driver's CUDA version.
# Every step has a time limit; the script goes on after a failed step and exits non-zero at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
failures=0
step() { printf '\n=== %s (%ds)\n' "$*" "$SECONDS"; }
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }

step "the machine"
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader || fail "nvidia-smi"
driver_cuda="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\.\([0-9]*\).*/\1.\2/p' | head -1)"
echo "driver supports CUDA ${driver_cuda:-?}; nvcc: $(command -v nvcc || echo 'not found')"
command -v nvcc >/dev/null && nvcc --version | tail -2
"$PYTHON" --version

step "CuPy"
if ! "$PYTHON" -c "import cupy" 2>/dev/null; then
  package="cupy-cuda12x"
  [[ "${driver_cuda%%.*}" -ge 13 ]] 2>/dev/null && package="cupy-cuda13x"
  echo "CuPy is missing: pip install $package"
  timeout 180 "$PYTHON" -m pip install -q "$package" || fail "pip install $package (no network?)"
fi
"$PYTHON" -c "import cupy; print('CuPy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())" \
  || fail "import cupy"

step "build (MINICNN_CUDA=1: a failed CUDA build is an error)"
if [[ -z "${MINICNN_CUDA_ARCHS:-}" ]]; then
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
  export MINICNN_CUDA_ARCHS="${cap:-75,80,86,89,90+PTX}"
fi
echo "MINICNN_CUDA_ARCHS=$MINICNN_CUDA_ARCHS"
MINICNN_CUDA=1 timeout 300 "$PYTHON" setup.py -q build_ext --inplace 2>&1 | grep -v "^/.*nvcc -c" | tail -20
[[ "${PIPESTATUS[0]}" == 0 ]] || fail "build"
"$PYTHON" -c "
import minicnn._C_cuda as C
print('minicnn._C_cuda built for', C.cuda_archs, '->', C.device_info())
from minicnn.backends import get_backend
get_backend('cuda')
print('device cuda: usable')" || fail "device cuda"

step "kernel tests on device cuda"
MINICNN_KERNEL_DEVICES=cuda timeout 300 "$PYTHON" -m pytest -q -rs -p no:cacheprovider \
  tests/kernels/test_kernels_emu.py tests/kernels/test_kernels_ops.py tests/kernels/test_kernels_errors.py tests/kernels/test_kernels_torch.py \
  tests/kernels/test_kernels_conv.py \
  || fail "kernel tests on cuda"

step "timings: minicnn's kernels beside PyTorch's"
timeout 180 "$PYTHON" benchmarks/bench_kernels.py --device cuda "$@" || fail "benchmark"

step "conv2d on ResNet-50's layer shapes: ours beside cuDNN (FP32, TF32 off)"
timeout 150 "$PYTHON" benchmarks/bench_conv_gpu.py --batch 64 --repeats 3 || fail "conv benchmark"

step "done"
if ((failures > 0)); then
  echo "$failures step(s) failed"
  exit 1
fi
echo "gpu check: all passed"
