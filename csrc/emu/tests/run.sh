#!/usr/bin/env bash
# Build and run the CUDA emulator's tests; exit non-zero on any failure.
#
#   1. g++ -O2: the kernel and error tests (asm context switch)
#   2. the same with the ucontext fallback (-DMINICNN_EMU_UCONTEXT), as non-x86-64 machines use it
#   3. the same under AddressSanitizer, plus asan_oob.cu, which must die with an ASan report that
#      names the offending source line
#   4. the race checker: test_check.cu, and test_kernels.cu / test_errors.cu must stay clean
#      (-DMINICNN_EMU_CHECK -fsanitize=thread, linked without ThreadSanitizer's runtime)
#   5. nvcc -c on every test source, so they stay valid CUDA (skipped when nvcc is missing unless
#      REQUIRE_NVCC=1)
#
# Environment: CXX (default g++), NVCC (default nvcc), BUILD_DIR (default: a temporary directory).
set -euo pipefail

TESTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CSRC="$(cd "$TESTS/../.." && pwd)"
CXX="${CXX:-g++}"
NVCC="${NVCC:-nvcc}"
if [[ -n "${BUILD_DIR:-}" ]]; then
  BUILD="$BUILD_DIR"
  mkdir -p "$BUILD"
else
  BUILD="$(mktemp -d)"
  trap 'rm -rf "$BUILD"' EXIT
fi
CXXFLAGS=(-std=c++17 -O2 -g -Wall -Wextra -I"$CSRC" -I"$TESTS")
ASAN_FLAGS=(-fsanitize=address -fno-omit-frame-pointer)
failures=0

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*"; failures=$((failures + 1)); }

# build NAME SOURCE FLAGS...: compile a .cu test as C++ (-x c++) into $BUILD/NAME
build() {
  local name="$1" source="$2"
  shift 2
  "$CXX" "${CXXFLAGS[@]}" "$@" -x c++ "$TESTS/$source" -o "$BUILD/$name" || { fail "build $name"; return 1; }
}

run_test() {
  local name="$1"
  "$BUILD/$name" || fail "$name"
}

# asan_expect_report MODE: asan_oob must fail, and ASan's report must name the marked line.
asan_expect_report() {
  local mode="$1" line log="$BUILD/asan_oob_$1.log"
  line=$(grep -n "OUT-OF-BOUNDS ($mode)" "$TESTS/asan_oob.cu" | cut -d: -f1)
  if ASAN_OPTIONS=detect_leaks=0 "$BUILD/asan_oob" "$mode" >"$log" 2>&1; then
    fail "asan_oob $mode: the out-of-bounds write was not detected"
  elif grep -q "ERROR: AddressSanitizer: heap-buffer-overflow" "$log" && grep -q "asan_oob.cu:$line" "$log"; then
    echo "asan_oob $mode: reported as expected at asan_oob.cu:$line"
  else
    cat "$log"
    fail "asan_oob $mode: no ASan report naming asan_oob.cu:$line"
  fi
}

step "g++ -O2 (x86-64 assembly context switch where available)"
build test_kernels test_kernels.cu && run_test test_kernels
build test_errors test_errors.cu && run_test test_errors

step "g++ -O2 -DMINICNN_EMU_UCONTEXT (the portable fallback)"
build test_kernels_ucontext test_kernels.cu -DMINICNN_EMU_UCONTEXT && run_test test_kernels_ucontext
build test_errors_ucontext test_errors.cu -DMINICNN_EMU_UCONTEXT && run_test test_errors_ucontext

step "g++ -O2 ${ASAN_FLAGS[*]}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
build test_kernels_asan test_kernels.cu "${ASAN_FLAGS[@]}" && run_test test_kernels_asan
build test_errors_asan test_errors.cu "${ASAN_FLAGS[@]}" && run_test test_errors_asan
if build asan_oob asan_oob.cu "${ASAN_FLAGS[@]}"; then
  asan_expect_report global
  asan_expect_report shared
fi

step "race checker (-DMINICNN_EMU_CHECK -fsanitize=thread, no libtsan)"
# build_checked NAME SOURCE: compile with the instrumentation, link without -fsanitize (check.h)
build_checked() {
  "$CXX" "${CXXFLAGS[@]}" -O1 -fsanitize=thread --param=tsan-instrument-func-entry-exit=0 -DMINICNN_EMU_CHECK \
    -x c++ -c "$TESTS/$2" -o "$BUILD/$1.o" && "$CXX" "$BUILD/$1.o" -o "$BUILD/$1" || { fail "build $1"; return 1; }
}
build_checked test_check test_check.cu && run_test test_check
build_checked test_kernels_checked test_kernels.cu && run_test test_kernels_checked
build_checked test_errors_checked test_errors.cu && run_test test_errors_checked

step "nvcc -c (the sources must stay valid CUDA)"
if command -v "$NVCC" >/dev/null; then
  for source in test_kernels.cu test_errors.cu test_check.cu asan_oob.cu; do
    "$NVCC" -c -std=c++17 -arch=sm_75 -I"$CSRC" -I"$TESTS" "$TESTS/$source" -o "$BUILD/${source%.cu}.o" \
      && echo "nvcc -c $source: ok" || fail "nvcc -c $source"
  done
elif [[ "${REQUIRE_NVCC:-0}" == 1 ]]; then
  fail "nvcc not found (REQUIRE_NVCC=1)"
else
  echo "nvcc not found: skipped"
fi

echo
if ((failures > 0)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "emulator tests: all passed"
