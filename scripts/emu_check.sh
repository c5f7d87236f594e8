#!/usr/bin/env bash
# Run the kernel tests on the CUDA emulator's race checker, under several schedules; exit non-zero on
# any finding (a race, an uninitialised shared-memory read, a deadlock) or any failing test.
#
#   scripts/emu_check.sh                 # build the checker (build/check) and run every schedule
#   scripts/emu_check.sh tests/kernels/test_kernels_conv.py -k tile    # other pytest arguments
#
# The checker is a separate build of minicnn._C_emu (MINICNN_EMU_CHECK=1, csrc/emu/check.h): every
# load and store of a kernel goes through shadow memory that knows which accesses CUDA orders. A
# finding makes the launch raise RuntimeError naming kernel, block, thread, address and the source
# lines of both accesses, so the test that launched it fails. The schedules vary the order of the
# threads in each barrier interval and of the blocks (csrc/emu/schedule.h); blocks run on
# $MINICNN_EMU_THREADS OS threads (default 2).
#
# Environment: PYTHON (default .venv/bin/python), MINICNN_HYPOTHESIS_EXAMPLES (default 10 per test
# and schedule), EMU_CHECK_SCHEDULES (default: the four below, ';'-separated).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export MINICNN_HYPOTHESIS_EXAMPLES="${MINICNN_HYPOTHESIS_EXAMPLES:-10}"
export MINICNN_EMU_THREADS="${MINICNN_EMU_THREADS:-2}"
SCHEDULES="${EMU_CHECK_SCHEDULES:-threads=forward blocks=forward;threads=reverse blocks=reverse;\
threads=random blocks=random seed=1;threads=random blocks=random seed=2}"
TESTS=(tests/kernels/test_kernels_emu.py tests/kernels/test_kernels_ops.py
  tests/kernels/test_kernels_errors.py tests/kernels/test_kernels_conv.py
  tests/core/test_device_random.py tests/core/test_fused_optim.py
  tests/kernels/test_kernels_half.py tests/kernels/test_kernels_wmma.py)
if (($# > 0)); then TESTS=("$@"); fi

fail() { echo "emu_check: $*" >&2; exit 2; }
[[ -x "$PYTHON" ]] || fail "no Python at $PYTHON (set PYTHON=...)"
"$PYTHON" -c "import pybind11" 2>/dev/null || fail "pybind11 is needed to build the checker: pip install 'pybind11>=2.12'"
command -v addr2line >/dev/null || fail "addr2line (GNU binutils) is not on PATH: the checker needs it for source lines"

echo "=== building minicnn._C_emu with the race checker (build/check)"
MINICNN_EMU_CHECK=1 MINICNN_CUDA=0 "$PYTHON" setup.py -q build_ext --build-lib build/check \
  --build-temp build/check-temp >/dev/null 2>build/check.log || { cat build/check.log; fail "the checker build failed"; }
checker="$(ls build/check/minicnn/_C_emu*.so)"
export MINICNN_EMU_EXTENSION="$checker" MINICNN_KERNEL_DEVICES=emu
"$PYTHON" -c "import minicnn.emu as e; e.require_race_checker(); e.selftest('neighbour_exchange')" \
  || fail "the race checker in $checker does not start (see the error above)"

failures=0
IFS=';' read -r -a schedules <<<"$SCHEDULES"
for schedule in "${schedules[@]}"; do
  echo
  echo "=== schedule: $schedule (workers=$MINICNN_EMU_THREADS)"
  if ! MINICNN_EMU_SCHEDULE="$schedule" "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}"; then
    echo "FAILED under schedule: $schedule"
    failures=$((failures + 1))
  fi
done
echo
if ((failures > 0)); then
  echo "emu_check: $failures schedule(s) with findings or failures"
  exit 1
fi
echo "emu_check: clean under ${#schedules[@]} schedules"
