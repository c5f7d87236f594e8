// The CUDA kernels compiled for the CPU emulator: the "emu" half of minicnn._C_emu.
//
// setuptools compiles .cpp files only, so this file includes the kernel sources. Here the host
// compiler sees them, so csrc/cuda_compat.h brings in the emulator (csrc/emu/cuda_emu.h) and every
// LAUNCH runs the kernel on the CPU, one block after another, each CUDA thread on its own fiber.
// csrc/bindings.cpp, compiled separately, calls the launchers declared in kernels/kernels.h.
#include "kernels/relu.cu"
#include "kernels/pool.cu"
#include "kernels/lrn.cu"
#include "kernels/batchnorm.cu"
#include "kernels/conv2d.cu"
#include "kernels/conv2d_wmma.cu"
#include "kernels/cast.cu"
#include "kernels/wmma_gemm.cu"
#include "kernels/selftest.cu"
#include "kernels/device.cu"
#include "kernels/random.cu"
#include "kernels/optim.cu"
