#!/usr/bin/env bash
# The one decisive run on a lent GPU (step limits: 8.5 minutes in all), or its dry run anywhere:
#
#   scripts/gpu_check.sh [--dry-run]
#
#   1. machine facts                      nvidia-smi, nvcc, Python, CuPy, PyTorch, compute-sanitizer
#   2. build for this GPU's architecture  _C_cuda (+ _C_emu, _C_cpu) in place; the static SASS
#                                         report of the conv kernels (benchmarks/bench_sass.py)
#   3. kernel tests on cuda               CUDA_LAUNCH_BLOCKING=1, --maxfail
#   4. large shapes, asserted             every ResNet-50 conv shape at batch 32 against cuDNN
#                                         (TF32 off), relative difference <= 1e-3
#   5. compute-sanitizer                  memcheck and racecheck on small shapes of every kernel
#   6. conv speed                         TFLOP/s per ResNet-50 shape, ours beside cuDNN (FP32), and
#                                         the whole network over a training step's passes
#   6b. FP16 conv speed (speed16)         the same in float16: ours on tensor cores (conv2d version
#                                         4) beside cuDNN FP16, each result checked (<= 1e-2)
#   7. training step                      img/s of ResNet-50 (batch 64, 224 px), ResNet-18 and
#                                         DenseNet-121, ours beside PyTorch from the same weights,
#                                         first step's losses equal
#   7b. AMP training step (train_amp)     ResNet-50 img/s under autocast float16 + GradScaler, ours
#                                         beside torch.autocast + torch.amp.GradScaler
#   7c. bfloat16 AMP step (train_bf16)    ResNet-18 under autocast bfloat16 (sm_80+: bf16 tensor
#                                         cores; CuPy >= 14 for bfloat16 in the generic array work)
#   8. distributed smoke (distributed)    python -m minicnn.distributed.smoke: NCCL collectives and
#                                         DDP steps in a world of one (exit 2 = NCCL/mpi4py missing)
#
# --dry-run does what needs no GPU: the SASS report (no _C_cuda build), the kernel tests on emu,
# step 4 on emu at batch 2 and half-size images against the cpu conv, step 6b's check on emu in
# float16 at batch 1 and quarter-size images, step 7 on emu at batch 2 and 32 px; steps 5 and 6
# are skipped. CI runs it (about 3 minutes on 2 cores).
#
# Every step has a time limit (printed first); a failed step is recorded and the script goes on,
# exiting 1 at the end if any failed. Nothing is installed (the GPU machine has no network): a
# missing tool or package is reported and its step skipped.
#
# Results: one JSON file, $OUT_DIR/gpu_check.json, with every step's status and seconds and the
# figures of steps 2, 4, 6 and 7 (OUT_DIR = $MINICNN_GPU_CHECK_OUT, else $OUT, else ./gpu_check_out).
# Environment: PYTHON (default: .venv/bin/python if present, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PYTHON="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
OUT_DIR="${MINICNN_GPU_CHECK_OUT:-${OUT:-gpu_check_out}}"
mkdir -p "$OUT_DIR"
RESULTS="$OUT_DIR/steps.jsonl"
: > "$RESULTS"
failures=0

# name: seconds (real run / dry run)
declare -A LIMIT=([facts]=15 [build]=110 [tests]=60 [large]=40 [sanitizer]=40 [speed]=45
                  [speed16]=30 [train]=75 [train_amp]=45 [train_bf16]=30 [distributed]=20)
declare -A DRY_LIMIT=([facts]=20 [build]=90 [tests]=120 [large]=60 [sanitizer]=0 [speed]=0
                      [speed16]=90 [train]=150 [train_amp]=120 [train_bf16]=120 [distributed]=60)
STEPS=(facts build tests large sanitizer speed speed16 train train_amp train_bf16 distributed)
limit() { if ((DRY)); then echo "${DRY_LIMIT[$1]}"; else echo "${LIMIT[$1]}"; fi; }
total=0
for s in "${STEPS[@]}"; do total=$((total + $(limit "$s"))); done
echo "gpu_check: $([[ $DRY == 1 ]] && echo 'dry run' || echo 'GPU run'); time budget ${total}s in all:"
for s in "${STEPS[@]}"; do printf '  %-10s %4ss\n' "$s" "$(limit "$s")"; done
echo "results: $OUT_DIR/gpu_check.json"

# record NAME STATUS SECONDS [NOTE]
record() {
  "$PYTHON" -c 'import json, sys; print(json.dumps(dict(step=sys.argv[1], status=sys.argv[2],
    seconds=float(sys.argv[3]), limit=int(sys.argv[4]), note=sys.argv[5])))' "$1" "$2" "$3" "$(limit "$1")" "${4:-}" \
    >> "$RESULTS"
}
# run NAME COMMAND...: the command under the step's time limit; its status recorded
run() {
  local name="$1" start=$SECONDS status
  shift
  printf '\n=== %s (limit %ss, at %ds)\n' "$name" "$(limit "$name")" "$SECONDS"
  if declare -F "$1" >/dev/null; then  # a function of this script: in a bash of its own
    timeout "$(limit "$name")" bash -c "$(declare -f "$1"); \"\$@\"" "$name" "$@"
  else
    timeout "$(limit "$name")" "$@"
  fi
  status=$?
  if ((status == 0)); then record "$name" passed $((SECONDS - start))
  else
    ((status == 124)) && echo "TIMED OUT after $(limit "$name")s"
    record "$name" "failed (exit $status)" $((SECONDS - start))
    failures=$((failures + 1))
  fi
}
skip() {
  printf '\n=== %s: skipped (%s)\n' "$1" "$2"
  record "$1" skipped 0 "$2"
}

facts() {
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi: no GPU here"
  echo "nvcc: $(command -v nvcc >/dev/null && nvcc --version | tail -1 || echo 'not found')"
  echo "compute-sanitizer: $(command -v compute-sanitizer || echo 'not found')"
  "$PYTHON" - <<'PY'
import importlib, json, os, platform, sys
facts = dict(python=platform.python_version(), cpus=os.cpu_count())
for name in ("numpy", "cupy", "torch", "torchvision", "pybind11", "pytest", "hypothesis", "mpi4py"):
    try:
        facts[name] = importlib.import_module(name).__version__
    except Exception as e:
        facts[name] = f"missing ({type(e).__name__})"
print(json.dumps(facts, indent=1))
json.dump(facts, open(os.path.join(sys.argv[1] if len(sys.argv) > 1 else os.environ["OUT_DIR"], "facts.json"), "w"))
PY
}
export OUT_DIR DRY PYTHON

build() {
  local cap
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
  if ((DRY == 0)); then
    [[ -n "$cap" ]] || { echo "no GPU found by nvidia-smi"; return 1; }
    command -v nvcc >/dev/null || { echo "nvcc not found: cannot build _C_cuda"; return 1; }
    echo "MINICNN_CUDA_ARCHS=$cap"
    MINICNN_CUDA=1 MINICNN_CUDA_ARCHS="$cap" "$PYTHON" setup.py -q build_ext --inplace 2>&1 | grep -v "nvcc -c" | tail -5
    [[ "${PIPESTATUS[0]}" == 0 ]] || return 1
    "$PYTHON" -c "import minicnn._C_cuda as C; print('built for', C.cuda_archs, '->', C.device_info())" || return 1
  fi
  if command -v nvcc >/dev/null; then  # the static report, for sm_90 (what the targets are about)
    "$PYTHON" benchmarks/bench_sass.py --match conv2d --conv-only --json "$OUT_DIR/sass.json" --jobs 4
  else
    echo "nvcc not found: no SASS report"
  fi
}

KERNEL_TESTS=(tests/kernels/test_kernels_emu.py tests/kernels/test_kernels_ops.py
              tests/kernels/test_kernels_errors.py tests/kernels/test_kernels_torch.py
              tests/kernels/test_kernels_conv.py tests/kernels/test_kernels_conv_v3.py
              tests/kernels/test_kernels_batchnorm_chunks.py tests/kernels/test_kernels_batchnorm_relu.py
              tests/kernels/test_kernels_half.py
              tests/kernels/test_kernels_wmma.py tests/core/test_device_random.py
              tests/core/test_fused_optim.py tests/core/test_deferred_target_check.py
              tests/train/test_host_syncs.py)
DEVICE=cuda
((DRY)) && DEVICE=emu

distributed_smoke() {  # DEVICE: exit 2 from the smoke (no NCCL/CuPy/mpi4py here) is a skip
  "$PYTHON" -m minicnn.distributed.smoke --device "$1"
  local status=$?
  ((status == 2)) && { echo "distributed smoke skipped: see the reason above"; return 0; }
  return $status
}

sanitizer() {
  command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found"; return 0; }
  local tool small=(-k "tile=128 and splits=3 and float32 or batch_norm or relu or pool or lrn")
  for tool in memcheck racecheck; do
    echo "--- $tool"
    MINICNN_KERNEL_DEVICES=cuda timeout 28 compute-sanitizer --tool "$tool" --error-exitcode 1 \
      "$PYTHON" -m pytest -q -x -p no:cacheprovider tests/kernels/test_kernels_conv_v3.py tests/kernels/test_kernels_ops.py \
      "${small[@]}" || return 1
  done
}

run facts facts
run build build
run tests env MINICNN_KERNEL_DEVICES="$DEVICE" CUDA_LAUNCH_BLOCKING=1 \
  "$PYTHON" -m pytest -q -p no:cacheprovider --maxfail=5 "${KERNEL_TESTS[@]}"
if ((DRY)); then
  run large "$PYTHON" benchmarks/bench_conv_gpu.py --device emu --batch 2 --scale 2 --repeats 0 --check 1e-3 \
    --json "$OUT_DIR/conv_large.json"
  skip sanitizer "dry run: needs a GPU"
  skip speed "dry run: needs a GPU"
  run speed16 "$PYTHON" benchmarks/bench_conv_gpu.py --device emu --dtype float16 --batch 1 \
    --scale 4 --repeats 0 --check 1e-2 --json "$OUT_DIR/conv_speed_fp16.json"
  run train "$PYTHON" benchmarks/bench_train_gpu.py --device emu --batch 2 --size 32 --steps 1 --warmup 0 \
    --json "$OUT_DIR/train.json"
  run train_amp "$PYTHON" benchmarks/bench_train_gpu.py --device emu --models resnet18 --batch 2 --size 32 \
    --steps 1 --warmup 0 --amp fp16 --json "$OUT_DIR/train_amp_fp16.json"
  run train_bf16 "$PYTHON" benchmarks/bench_train_gpu.py --device emu --models resnet18 --batch 2 --size 32 \
    --steps 1 --warmup 0 --amp bf16 --json "$OUT_DIR/train_amp_bf16.json"
  run distributed distributed_smoke cpu
else
  run large "$PYTHON" benchmarks/bench_conv_gpu.py --batch 32 --repeats 0 --check 1e-3 --json "$OUT_DIR/conv_large.json"
  run sanitizer sanitizer
  run speed "$PYTHON" benchmarks/bench_conv_gpu.py --batch 64 --repeats 3 --json "$OUT_DIR/conv_speed.json"
  run speed16 "$PYTHON" benchmarks/bench_conv_gpu.py --dtype float16 --batch 64 --repeats 3 \
    --check 1e-2 --json "$OUT_DIR/conv_speed_fp16.json"
  run train "$PYTHON" benchmarks/bench_train_gpu.py --batch 64 --size 224 --steps 5 --warmup 2 \
    --json "$OUT_DIR/train.json"
  run train_amp "$PYTHON" benchmarks/bench_train_gpu.py --models resnet50 --batch 64 --size 224 --steps 5 \
    --warmup 2 --amp fp16 --json "$OUT_DIR/train_amp_fp16.json"
  run train_bf16 "$PYTHON" benchmarks/bench_train_gpu.py --models resnet18 --batch 32 --size 64 --steps 3 \
    --warmup 1 --amp bf16 --json "$OUT_DIR/train_amp_bf16.json"
  run distributed distributed_smoke cuda
fi

# one JSON of everything
"$PYTHON" - "$OUT_DIR" "$DRY" <<'PY'
import json, os, sys
out, dry = sys.argv[1], sys.argv[2] == "1"
result = dict(dry_run=dry, steps=[json.loads(l) for l in open(os.path.join(out, "steps.jsonl")) if l.strip()])
for key, name in [("facts", "facts.json"), ("sass", "sass.json"), ("conv_large", "conv_large.json"),
                  ("conv_speed", "conv_speed.json"), ("conv_speed_fp16", "conv_speed_fp16.json"),
                  ("train", "train.json"), ("train_amp", "train_amp_fp16.json"),
                  ("train_bf16", "train_amp_bf16.json")]:
    path = os.path.join(out, name)
    if os.path.exists(path):
        result[key] = json.load(open(path))
with open(os.path.join(out, "gpu_check.json.tmp"), "w") as f:
    json.dump(result, f, indent=1)
os.replace(os.path.join(out, "gpu_check.json.tmp"), os.path.join(out, "gpu_check.json"))
print(f"\nwrote {os.path.join(out, 'gpu_check.json')}")
PY

echo "=== done at ${SECONDS}s"
if ((failures > 0)); then
  echo "gpu check: $failures step(s) failed"
  exit 1
fi
echo "gpu check: all steps passed"
