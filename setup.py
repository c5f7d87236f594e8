"""Build the minicnn C++ extensions.

- ``minicnn._C_cpu``: C++ helpers for the "cpu" device (csrc/cpu), always built.
- ``minicnn._C_emu`` / ``minicnn._C_cuda``: the CUDA kernels of csrc/kernels, compiled for the CPU
  under the emulation header and by nvcc; they slot into ``extensions()`` with the kernel issues.
"""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup


def cpu_extension():
    return Pybind11Extension(
        "minicnn._C_cpu",
        ["csrc/cpu/module.cpp", "csrc/cpu/im2col.cpp"],
        include_dirs=["csrc/cpu"],
        cxx_std=17,
        extra_compile_args=["-O3", "-fopenmp"],
        extra_link_args=["-fopenmp"],
    )


def extensions():
    return [cpu_extension()]


setup(ext_modules=extensions(), cmdclass={"build_ext": build_ext})
