"""Build the minicnn C++ extensions.

- ``minicnn._C_cpu``: C++ helpers for the "cpu" device (csrc/cpu), always built.
- ``minicnn._C_emu``: the CUDA kernels of csrc/kernels compiled by the host C++ compiler on the CUDA
  emulator (csrc/emu), for the "emu" device; always built.
- ``minicnn._C_cuda``: the same kernels compiled by nvcc, for the "cuda" device; built when nvcc is
  found. The .cu files are compiled by nvcc (setuptools knows no .cu), the bindings by the host
  compiler, and the CUDA runtime is linked statically, so the extension needs only the driver.

Environment variables:

    MINICNN_CUDA=0 | 1          never build _C_cuda | build it or fail (default: when nvcc is found,
                                and a failed CUDA build then only warns)
    MINICNN_CUDA_ARCHS=75,90+PTX  compute capabilities to compile for; "+PTX" adds PTX of the last
                                one, which newer GPUs JIT-compile (default 75,80,86,89,90+PTX, minus
                                what this nvcc can't target)
    NVCC=/path/to/nvcc          the compiler (default: nvcc on PATH, else $CUDA_HOME/bin/nvcc)
    MINICNN_EMU_ASAN=1          build _C_emu with AddressSanitizer (load it with
                                LD_PRELOAD=$(g++ -print-file-name=libasan.so)
                                ASAN_OPTIONS=detect_leaks=0)
    MINICNN_EMU_DEBUG=1         build _C_emu with -O0 -g, to step through kernels in gdb
    MINICNN_EMU_CHECK=1         build _C_emu with the race checker (csrc/emu/check.h; no preload;
                                scripts/emu_check.sh builds it aside and runs the kernel tests on
                                it)
"""

import glob
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

KERNEL_SOURCES = sorted(glob.glob("csrc/kernels/*.cu"))
GEOMETRY_HEADERS = ["csrc/geometry.h", "csrc/geometry_py.h"]  # shared by _C_cpu and the kernels
KERNEL_HEADERS = (
    sorted(
        glob.glob("csrc/kernels/*.h")
        + glob.glob("csrc/kernels/*.cuh")
        + glob.glob("csrc/emu/*.h")
        + ["csrc/cuda_compat.h"]
    )
    + GEOMETRY_HEADERS
)
DEFAULT_CUDA_ARCHS = "75,80,86,89,90+PTX"
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def local_includes(sources, include_dirs):
    """Every file that ``sources`` include with ``#include "…"``, recursively (whatever the #if
    around it: a superset is safe). An edit of any of them rebuilds the extension: setuptools
    rebuilds when a source or a ``depends`` entry is newer than the built module."""
    seen, todo = set(), list(sources)
    while todo:
        path = os.path.normpath(todo.pop())
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            for name in INCLUDE.findall(f.read()):
                for base in [os.path.dirname(path)] + list(include_dirs):
                    candidate = os.path.join(base, name)
                    if os.path.isfile(candidate):
                        todo.append(candidate)
                        break
    return sorted(seen - {os.path.normpath(s) for s in sources})


def cpu_extension():
    sources = ["csrc/cpu/module.cpp", "csrc/cpu/im2col.cpp"]
    return Pybind11Extension(
        "minicnn._C_cpu",
        sources,
        include_dirs=["csrc/cpu"],
        depends=sorted(
            set(
                glob.glob("csrc/cpu/*.h")
                + GEOMETRY_HEADERS
                + local_includes(sources, ["csrc/cpu", "csrc"])
            )
        ),
        cxx_std=17,
        extra_compile_args=["-O3", "-pthread"],  # our own thread pool (parallel.h), no OpenMP
        extra_link_args=["-pthread"],
    )


def _env_flag(name):
    """True / False for "1" / "0" (and yes/no, on/off), None when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    sys.exit(f"setup.py: {name}={os.environ[name]!r}: expected 1 or 0")


def emu_extension():
    compile_args, link_args = ["-O2"], []
    if _env_flag("MINICNN_EMU_DEBUG"):
        compile_args = ["-O0", "-g"]
    if _env_flag("MINICNN_EMU_ASAN"):
        compile_args = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
        link_args = ["-fsanitize=address"]
    if _env_flag(
        "MINICNN_EMU_CHECK"
    ):  # instrumented by -fsanitize=thread, but no libtsan: see check.h
        compile_args = [
            "-O1",
            "-g",
            "-fsanitize=thread",
            "--param=tsan-instrument-func-entry-exit=0",
            "-DMINICNN_EMU_CHECK=1",
        ]
    sources = ["csrc/bindings.cpp", "csrc/emu_kernels.cpp"]
    return Pybind11Extension(
        "minicnn._C_emu",
        sources,
        include_dirs=["csrc"],
        depends=sorted(set(KERNEL_SOURCES + KERNEL_HEADERS + local_includes(sources, ["csrc"]))),
        cxx_std=17,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )


# ---- CUDA ---------------------------------------------------------------------------------------
def find_nvcc():
    """Path of nvcc, or None."""
    if os.environ.get("NVCC"):
        return shutil.which(os.environ["NVCC"])
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return None


def cuda_home(nvcc):
    """The toolkit's root: nvcc may be a wrapper script, so ask nvcc itself (its TOP variable)."""
    try:
        out = subprocess.run(
            [nvcc, "--dryrun", "-c", "minicnn_probe.cu", "-o", os.devnull],
            capture_output=True,
            text=True,
        ).stderr
        top = re.search(r"^#\$ TOP=(.*)$", out, re.M)
        if top:
            return os.path.normpath(top.group(1).strip())
    except OSError:
        pass
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def cuda_library_dir(home):
    for sub in (
        "lib64",
        os.path.join("targets", "x86_64-linux", "lib"),
        os.path.join("targets", "sbsa-linux", "lib"),
        "lib",
    ):
        if os.path.exists(os.path.join(home, sub, "libcudart_static.a")):
            return os.path.join(home, sub)
    return None


def cuda_archs(nvcc):
    """(["75", "80", …], with_ptx) from MINICNN_CUDA_ARCHS, or the default minus unsupported
    ones."""
    spec = os.environ.get("MINICNN_CUDA_ARCHS", "").strip()
    explicit = bool(spec)
    spec = (spec or DEFAULT_CUDA_ARCHS).replace(";", ",").replace(" ", ",")
    with_ptx = spec.upper().endswith("+PTX")
    archs = [
        a.strip().replace(".", "")
        for a in re.sub(r"\+PTX$", "", spec, flags=re.I).split(",")
        if a.strip()
    ]
    if not explicit:
        try:
            listed = subprocess.run(
                [nvcc, "--list-gpu-code"], capture_output=True, text=True
            ).stdout
            supported = set(re.findall(r"sm_(\d+)", listed))
            if supported:
                archs = [a for a in archs if a in supported]
        except OSError:
            pass
    if not archs:
        sys.exit(f"setup.py: no CUDA architecture to build for (MINICNN_CUDA_ARCHS={spec!r})")
    return archs, with_ptx


def cuda_extension():
    """The _C_cuda extension, or None when it is not to be built (say why)."""
    wanted = _env_flag("MINICNN_CUDA")
    if wanted is False:
        return None
    nvcc = find_nvcc()
    lib_dir = cuda_library_dir(cuda_home(nvcc)) if nvcc else None
    if nvcc is None or lib_dir is None:
        why = "nvcc not found" if nvcc is None else f"no libcudart_static.a under {cuda_home(nvcc)}"
        if wanted:
            sys.exit(f"setup.py: MINICNN_CUDA=1 but {why}")
        print(
            f"minicnn: not building _C_cuda ({why}); the 'emu' device runs the same kernels",
            file=sys.stderr,
        )
        return None
    archs, with_ptx = cuda_archs(nvcc)
    arch_text = ",".join(archs) + ("+PTX" if with_ptx else "")
    ext = Pybind11Extension(
        "minicnn._C_cuda",
        ["csrc/bindings.cpp"],
        include_dirs=["csrc"],
        depends=sorted(
            set(
                KERNEL_SOURCES
                + KERNEL_HEADERS
                + local_includes(["csrc/bindings.cpp"] + KERNEL_SOURCES, ["csrc"])
            )
        ),
        cxx_std=17,
        define_macros=[("MINICNN_BUILD_CUDA", "1"), ("MINICNN_CUDA_ARCHS", f'"{arch_text}"')],
        extra_compile_args=["-O2"],
        library_dirs=[lib_dir],
        libraries=["cudart_static", "dl", "rt", "pthread"],
    )
    ext.cuda = dict(
        nvcc=nvcc, archs=archs, with_ptx=with_ptx, sources=KERNEL_SOURCES, required=bool(wanted)
    )
    return ext


def nvcc_command(cuda, source, obj):
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in cuda["archs"]]
    if cuda["with_ptx"]:
        last = cuda["archs"][-1]
        gencode.append(f"-gencode=arch=compute_{last},code=compute_{last}")
    return [
        cuda["nvcc"],
        "-c",
        source,
        "-o",
        obj,
        "-std=c++17",
        "-O3",
        "-lineinfo",
        "-Icsrc",
        "-Xcompiler",
        "-fPIC",
        *gencode,
    ]


class BuildExt(build_ext):
    """pybind11's build_ext, plus: nvcc compiles the .cu sources of an extension with ``.cuda``."""

    def build_extension(self, ext):
        forced, self.force = self.force, self.force or self._stale_in_source(ext)
        try:
            self._build_one(ext)
        finally:
            self.force = forced

    def _stale_in_source(self, ext):
        """Whether the module in the source tree (``--inplace`` / editable installs) is older than a
        file it is built from. setuptools only compares with its copy under build/, which can be
        newer than an edit that the copy in the source tree never got."""
        target = self.get_ext_filename(ext.name)
        if not os.path.exists(target):
            return False
        built = os.path.getmtime(target)
        return any(
            os.path.getmtime(f) > built
            for f in list(ext.sources) + list(ext.depends or [])
            if os.path.exists(f)
        )

    def _build_one(self, ext):
        cuda = getattr(ext, "cuda", None)
        if cuda is None:
            return super().build_extension(ext)
        try:
            ext.extra_objects = list(ext.extra_objects or []) + self._nvcc_compile(cuda)
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001  an optional extension must not break the install
            if cuda["required"]:
                raise
            print(
                f"minicnn: WARNING: building _C_cuda failed, continuing without the 'cuda' device "
                f"(set MINICNN_CUDA=1 to make this an error): {e}",
                file=sys.stderr,
            )

    def _nvcc_compile(self, cuda):
        out_dir = os.path.join(self.build_temp, "cuda")
        os.makedirs(out_dir, exist_ok=True)
        jobs = []
        for source in cuda["sources"]:
            obj = os.path.join(out_dir, os.path.basename(source).replace(".cu", ".o"))
            jobs.append((nvcc_command(cuda, source, obj), obj))

        def run(job):
            command, obj = job
            print(" ".join(command), file=sys.stderr)
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"nvcc failed on {command[2]}:\n{result.stdout}{result.stderr}")
            return obj

        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            return list(pool.map(run, jobs))


def extensions():
    exts = [cpu_extension(), emu_extension()]
    cuda = cuda_extension()
    return exts + ([cuda] if cuda is not None else [])


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
