// The CUDA emulator: run minicnn's CUDA kernels on the CPU, compiled by an ordinary C++ compiler.
//
// Kernels include cuda_compat.h, which includes this header when the compiler is not nvcc. Nothing
// has to be linked: every part is header-only (inline functions and variables, the context switch a
// naked inline function), so a build only adds `csrc` to the include path.
//
// The model, in four sentences:
//   1. A launch runs its blocks one after another, synchronously, on the calling OS thread.
//   2. Inside a block each CUDA thread runs on a fiber: its own small stack, so it can stop in the
//      middle of the kernel (at __syncthreads, __syncwarp, a shuffle or a vote) and continue later.
//   3. Only one fiber runs at a time; when it has to wait it switches to the next ready one. The
//      switch saves six registers and the stack pointer (a few ns; see fiber.h).
//   4. Threads that never wait cost no switch at all: one fiber runs them back to back as plain
//      function calls, so elementwise kernels run at loop speed (see scheduler.h).
//
// What the emulator checks that a GPU would not tell you:
//   - a barrier that some threads of the block never reach (they exited, or wait at another
//     __syncthreads) and deadlocks between barriers and warp operations: an error, not a hang;
//   - a warp operation whose mask names lanes that exited, wait elsewhere, or don't exist;
//   - dynamic shared memory is filled with 0xFF (NaN) before every block, and overruns are caught;
//   - exceptions and __trap() in a kernel: rethrown by the launch as std::runtime_error
//     "kernel <name>: block (x,y,z) thread (x,y,z): <what>";
//   - launch configurations CUDA would reject;
//   - built with -fsanitize=address, out-of-bounds accesses in kernels are reported at their line.
//
// What it cannot show: races (threads never run truly in parallel, and between two
// synchronisation points a thread runs alone), performance, and the GPU's floating-point rounding
// (no FMA contraction, exact __expf).
//
// Files: types.h (qualifiers, dim3, threadIdx...), runtime.h (cudaGetLastError, cudaMemcpy...),
// fiber.h (stacks, context switch), scheduler.h (threads, workers, __syncthreads core), sync.h
// (barriers, shuffles, votes), launch.h (LAUNCH, configuration checks, dynamic shared memory),
// device_functions.h (atomics, intrinsics), half.h (__half, __nv_bfloat16), wmma.h
// (nvcuda::wmma, the tensor cores).
#pragma once

#ifdef __CUDACC__
#error \
    "csrc/emu/cuda_emu.h is for host compilers; nvcc uses the real CUDA runtime (see cuda_compat.h)"
#endif

#define MINICNN_EMU 1

// Standard headers first: types.h defines __noinline__, which some of them use as an attribute.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "types.h"
#include "half.h"
#include "runtime.h"
#include "fiber.h"
#include "scheduler.h"
#include "sync.h"
#include "launch.h"
#include "device_functions.h"
#include "wmma.h"
#include "capi.h"
