"""A static performance report of our CUDA kernels, compiled for an H100/H200 (sm_90); no GPU
needed.

    python benchmarks/bench_sass.py [--arch 90] [--match conv2d] [--json out.json] [--check]

For every kernel of csrc/kernels/*.cu: registers, spills and stack (``nvcc -Xptxas -v``), shared
memory (static, plus the dynamic amount its launcher asks for), and from those the theoretical
blocks per SM and occupancy on an H100/H200 (65536 registers, 228 KB shared memory of which 1 KB is
reserved per block, 2048 threads and 32 blocks per SM; registers are allocated per warp in units of
256). The launchers start 256 threads a block (the tensor-core NHWC kernels 128).

For the conv GEMM kernels (versions 2 and 3) also the main loop's instruction mix, read from the
SASS (``cuobjdump -sass``), per iteration of the main loop: the loop (a backward branch and the
code it jumps back over) that issues the most FFMA (DFMA for double) per iteration, the smallest
where several tie. Every instruction in it counts once, taken paths or not (so a rarely taken path
counts against it), except a nested loop that has FFMA itself (version 2's 8 k-steps of a slice,
not unrolled), which counts 8 times. Reported: FFMA share, LDS.128 and LDS, LDG, LDL/STL counts.

For the tensor-core conv (version 4: conv2d_wmma_kernel, the NCHW gather, and
conv2d_wmma_nhwc_kernel / conv2d_wmma_nhwc_bw_kernel, the NHWC path) the same, with HMMA
(the tensor-core instruction; one m16n16k16 wmma::mma_sync is two HMMA.16816 on sm_90) in place of
FFMA: the loop with the most HMMA per iteration, and its HMMA share. The NHWC kernels' main loop
is unrolled by 2 (two slices, one per shared buffer, per iteration), and they start 128 threads a
block.

--loop REGEX prints the main loop's SASS of the kernels whose demangled name matches REGEX
(e.g. --loop 'nhwc_kernel<__half, .*Forward'), to see where the non-HMMA instructions go.

--check exits 1 unless the static targets of issue 11 hold for the float 128 tile of version 3 in
all three passes: main loop >= 75% FFMA, no spills, >= 2 blocks per SM.

cuobjdump comes with the CUDA toolkit or from PyPI (``pip install nvidia-cuda-cuobjdump
nvidia-cuda-nvdisasm``: it runs nvdisasm); this script looks on PATH, beside nvcc, and in that
package.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SM = dict(regs=65536, smem=228 * 1024, smem_reserved=1024, threads=2048, blocks=32, reg_unit=256)
THREADS = 256


@dataclass
class Kernel:
    name: str  # demangled
    mangled: str
    regs: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    smem: int = 0  # static + dynamic bytes per block
    blocks_per_sm: int = 0
    occupancy: float = 0.0
    loop: dict = field(default_factory=dict)


# ---- parsing -------------------------------------------------------------------------------------
PROPS = re.compile(r"Function properties for (\S+)")
SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers(?:.*?, (\d+) bytes smem)?")


def parse_ptxas(text: str) -> dict[str, dict]:
    """{mangled name: {regs, spill_stores, spill_loads, stack, smem}} from ``ptxas -v`` output."""
    out, current = {}, None
    for line in text.splitlines():
        if m := PROPS.search(line):
            current = out.setdefault(
                m.group(1), dict(regs=0, spill_stores=0, spill_loads=0, stack=0, smem=0)
            )
        elif current is not None and (m := SPILLS.search(line)):
            current.update(
                stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3))
            )
        elif current is not None and (m := USED.search(line)):
            current.update(regs=int(m.group(1)), smem=int(m.group(2) or 0))
    return out


FUNCTION = re.compile(r"^\s*Function : (\S+)")
INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def parse_sass(text: str) -> dict[str, list[tuple[int, str, str]]]:
    """{mangled name: [(address, opcode, operands)]} from ``cuobjdump -sass``."""
    out, current = {}, None
    for line in text.splitlines():
        if m := FUNCTION.match(line):
            current = out.setdefault(m.group(1), [])
        elif current is not None and (m := INSTRUCTION.search(line)):
            current.append((int(m.group(1), 16), m.group(3), m.group(4).strip()))
    return out


def loops(code: list[tuple[int, str, str]]) -> list[tuple[int, int]]:
    """(first, last) addresses of every loop: a branch back to an address at or before it."""
    found = []
    for address, op, operands in code:
        if op.startswith("BRA") and (m := re.search(r"0x([0-9a-f]+)\s*$", operands)):
            target = int(m.group(1), 16)
            if target <= address:
                found.append((target, address))
    return found


INNER_TRIPS = 8  # a nested loop with FFMA inside the main loop: the k-steps of a slice (BK = 8)


def instruction_mix(code: list[tuple[int, str, str]], first: int, last: int, weights=None) -> dict:
    """Counts over the instructions at [first, last], each times its weight (default 1)."""
    counts = dict(instructions=0, ffma=0, hmma=0, lds128=0, lds=0, ldg=0, local=0, bar=0)
    for address, op, _ in code:
        if not first <= address <= last or op == "NOP":
            continue
        w = weights.get(address, 1) if weights else 1
        counts["instructions"] += w
        counts["ffma"] += w * (op in ("FFMA", "DFMA"))
        counts["hmma"] += w * op.startswith("HMMA")
        counts["lds128"] += w * (op == "LDS.128")
        counts["lds"] += w * op.startswith("LDS")
        counts["ldg"] += w * op.startswith("LDG")
        counts["local"] += w * op.startswith(("LDL", "STL"))
        counts["bar"] += w * op.startswith("BAR")
    counts["ffma_share"] = round(counts["ffma"] / max(counts["instructions"], 1), 3)
    counts["hmma_share"] = round(counts["hmma"] / max(counts["instructions"], 1), 3)
    counts["span"] = f"{first:#x}-{last:#x}"
    return counts


def main_loop(code: list[tuple[int, str, str]], math: str = "ffma") -> dict:
    """The per-iteration instruction mix of the loop that issues the most FFMA/DFMA per iteration
    (math="hmma": HMMA).

    Every instruction of the loop counts once (taken paths or not), except that a loop nested in it
    that has FFMA itself (version 2's k-steps, not unrolled) counts INNER_TRIPS times."""
    all_loops = loops(code)
    has_ffma = {
        lp
        for lp in all_loops
        if any(lp[0] <= a <= lp[1] and op in ("FFMA", "DFMA") for a, op, _ in code)
    }
    best = None
    for first, last in all_loops:
        weights = {}
        for inner in has_ffma:
            if first <= inner[0] and inner[1] <= last and inner != (first, last):
                for a, _, _ in code:
                    if inner[0] <= a <= inner[1]:
                        weights[a] = INNER_TRIPS
        mix = instruction_mix(code, first, last, weights)
        key = (mix[math], -mix["instructions"])
        if mix[math] and (best is None or key > best[0]):
            best = (key, mix)
    return best[1] if best else {}


# ---- occupancy -----------------------------------------------------------------------------------
def blocks_per_sm(regs: int, smem: int, threads: int = THREADS) -> int:
    """Theoretical resident blocks per SM of an H100/H200."""
    warps = -(-threads // 32)
    regs_per_warp = -(-max(regs, 1) * 32 // SM["reg_unit"]) * SM["reg_unit"]
    by_regs = (SM["regs"] // regs_per_warp) // warps
    by_smem = SM["smem"] // (smem + SM["smem_reserved"]) if smem else SM["blocks"]
    return min(by_regs, by_smem, SM["threads"] // threads, SM["blocks"])


def threads_of(name: str) -> int:
    """Threads a block the launchers start for a kernel (demangled name)."""
    return 128 if "conv2d_wmma_nhwc" in name else THREADS


def dynamic_smem(name: str) -> int:
    """The dynamic shared memory the launchers give a kernel (demangled name), in bytes."""
    size = 8 if "double" in name else 4
    if m := re.search(r"conv2d_implicit_gemm_v3_kernel<.*, (\d+)>", name):
        return (
            2 * 2 * 8 * (int(m.group(1)) + 4) * size
        )  # 2 stages of A and B, BK = 8, rows padded by 4
    if name.startswith("minicnn::kernels::batch_norm"):
        return 32 * size  # block_sum's scratch
    if "conv2d_wmma_kernel" in name:  # 2 slices of A (128, 16 + 8) and B (16, 128 + 8), 2 tables
        return 2 * (128 * 24 + 16 * 136) * (4 if "<float" in name else 2) + 2 * 128 * 16
    if m := re.search(r"conv2d_wmma_nhwc_kernel<.*, (\d)>\(", name):
        # 2 slices of A and B, (128, depth + 16 bytes) each: 128-byte slices for kTpr 2, else 64
        return 2 * 2 * 128 * ((128 if m.group(1) == "2" else 64) + 16)
    if "conv2d_wmma_nhwc_bw_kernel" in name:  # 2 slices of A and B, (64 bytes, 128 + 16 bytes)
        size = 4 if "<float" in name else 2
        return 2 * 2 * (64 // size) * (128 + 16 // size) * size
    return 0


# ---- compiling -----------------------------------------------------------------------------------
def tool(name: str) -> str:
    found = shutil.which(name)
    nvcc = shutil.which("nvcc")
    candidates = [found] if found else []
    if nvcc:
        candidates.append(os.path.join(os.path.dirname(os.path.realpath(nvcc)), name))
    try:
        import nvidia.cu13 as pkg  # nvidia-cuda-cuobjdump

        candidates.append(os.path.join(list(pkg.__path__)[0], "bin", name))
    except ImportError:
        pass
    for path in candidates:
        if path and os.path.exists(path):
            return path
    sys.exit(
        f"bench_sass.py: {name} not found "
        f"(pip install nvidia-cuda-{name}, or put the CUDA toolkit on PATH)"
    )


def tool_env(cuobjdump: str) -> dict:
    """The environment for cuobjdump: its own folder on PATH too, where pip's
    nvidia-cuda-nvdisasm puts the nvdisasm it runs."""
    path = os.path.dirname(cuobjdump) + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "PATH": path}


def compile_one(source: str, arch: str, out_dir: str) -> tuple[str, str]:
    """(cubin path, ptxas -v output) of one kernel file."""
    cubin = os.path.join(out_dir, os.path.basename(source) + ".cubin")
    cmd = [
        "nvcc",
        "-cubin",
        "-std=c++17",
        f"-arch=sm_{arch}",
        "-Icsrc",
        "-Xptxas",
        "-v",
        source,
        "-o",
        cubin,
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"bench_sass.py: nvcc failed on {source}:\n{run.stderr[-3000:]}")
    return cubin, run.stderr


def demangle(names: list[str]) -> dict[str, str]:
    out = subprocess.run(
        ["c++filt"], input="\n".join(names), capture_output=True, text=True
    ).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def print_loop(label: str, code: list[tuple[int, str, str]], loop: dict) -> None:
    """The main loop's SASS, one instruction a line, under the kernel's label."""
    first, last = (int(a, 16) for a in loop["span"].split("-"))
    print(f"--- {label}: main loop {loop['span']}")
    for address, op, operands in code:
        if first <= address <= last:
            print(f"  {address:05x}  {op} {operands}")


def analyse(arch: str, sources: list[str], jobs: int, show_loop: str = "") -> list[Kernel]:
    cuobjdump = tool("cuobjdump")
    if not shutil.which("nvcc"):
        sys.exit("bench_sass.py: nvcc not found")
    kernels = []
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for cubin, log in pool.map(lambda s: compile_one(s, arch, tmp), sources):
            sass = parse_sass(
                subprocess.run(
                    [cuobjdump, "-sass", cubin], capture_output=True, text=True, check=True,
                    env=tool_env(cuobjdump),
                ).stdout
            )  # fmt: skip
            resources = parse_ptxas(log)
            names = demangle(sorted(resources))
            for mangled, res in sorted(resources.items(), key=lambda kv: names[kv[0]]):
                k = Kernel(names[mangled], mangled, **res)
                k.smem += dynamic_smem(k.name)
                threads = threads_of(k.name)
                k.blocks_per_sm = blocks_per_sm(k.regs, k.smem, threads)
                k.occupancy = round(k.blocks_per_sm * threads / SM["threads"], 3)
                if "implicit_gemm" in k.name:
                    k.loop = main_loop(sass.get(mangled, []))
                if "wmma" in k.name:
                    k.loop = main_loop(sass.get(mangled, []), "hmma")
                if show_loop and re.search(show_loop, k.name) and k.loop:
                    print_loop(short(k.name), sass.get(mangled, []), k.loop)
                kernels.append(k)
    return kernels


# ---- report --------------------------------------------------------------------------------------
def short(name: str) -> str:
    """'v3 fwd f32 t128' style labels for the conv GEMM kernels, the plain name for the rest."""
    name = name.replace("minicnn::kernels::", "").replace("v3::", "")
    pass_ = next(
        (
            p
            for key, p in [
                ("Forward", "fwd"),
                ("BackwardData", "bwd-data"),
                ("BackwardWeight", "bwd-weight"),
            ]
            if key in name
        ),
        None,
    )
    dtype = "f64" if "double" in name else "f32"
    halves = {"__half": "f16", "__nv_bfloat16": "bf16", "float": "tf32"}
    if m := re.search(r"conv2d_wmma_nhwc_kernel<(\w+), tc::(\w+)<[\w, ]+>, (\w+), (\d)>", name):
        step = {"Forward": "fwd", "BackwardData": "bwd-data"}[m.group(2)]
        strided = " strided" if m.group(3) == "false" else ""
        # kTpr 2: channels a multiple of the slice depth (one tap a slice); 4: any multiple of 8/4
        any_c = " (any C/G)" if m.group(4) == "4" else ""
        return f"conv v4 (wmma) NHWC {step}{strided} {halves[m.group(1)]}{any_c}"
    if m := re.search(r"conv2d_wmma_nhwc_bw_kernel<(\w+), (\d)>", name):
        # kVpt 2: K/G and C/G multiples of 2 vectors (32 bytes a copy); 1: of one vector
        any_c = " (any C/G)" if m.group(2) == "1" else ""
        return f"conv v4 (wmma) NHWC bwd-weight {halves[m.group(1)]}{any_c}"
    if m := re.search(r"conv2d_wmma_kernel<(\w+), tc::(\w+)<", name):
        half = {"__half": "f16", "__nv_bfloat16": "bf16", "float": "tf32"}[m.group(1)]
        step = {"Forward": "fwd", "BackwardData": "bwd-data", "BackwardWeight": "bwd-weight"}
        strided = " strided" if re.search(r"BackwardData<\w+, false>", name) else ""
        return f"conv v4 (wmma) {step[m.group(2)]}{strided} {half}"
    if pass_ and (m := re.search(r"conv2d_implicit_gemm_v3_kernel<.*?(true|false)>, (\d+)>", name)):
        return f"conv v3 {pass_} {dtype} tile {m.group(2)}" + (
            "" if m.group(1) == "true" else " (1-by-1 loads)"
        )
    if pass_ and (
        m := re.search(r"conv2d_implicit_gemm_kernel<.*, (\d+), \d+, \d+, \d+, \d+>", name)
    ):
        return f"conv v2 {pass_} {dtype} tile {m.group(1)}"
    return re.sub(r"\(.*", "", name).replace("<float>", " f32").replace("<double>", " f64")


def table(kernels: list[Kernel]) -> str:
    head = (
        "kernel",
        "regs",
        "spill B",
        "smem B",
        "blocks/SM",
        "occupancy",
        "loop FFMA",
        "FFMA",
        "loop HMMA",
        "HMMA",
        "instr",
        "LDS.128",
        "LDS",
        "LDG",
        "LDL/STL",
    )
    rows = []
    for k in kernels:
        lp = k.loop
        rows.append(
            (
                short(k.name),
                k.regs,
                k.spill_stores + k.spill_loads,
                k.smem,
                k.blocks_per_sm,
                f"{k.occupancy:.0%}",
                f"{lp['ffma_share']:.0%}" if lp else "",
                lp.get("ffma", ""),
                f"{lp['hmma_share']:.0%}" if lp.get("hmma") else "",
                lp.get("hmma", "") or "",
                lp.get("instructions", ""),
                lp.get("lds128", ""),
                lp.get("lds", ""),
                lp.get("ldg", ""),
                lp.get("local", ""),
            )
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def targets(kernels: list[Kernel]) -> list[str]:
    """The issue's static targets for the float 128 tile of version 3 (fast path); failures as
    text."""
    failed, seen = [], set()
    for k in kernels:
        label = short(k.name)
        if not re.fullmatch(r"conv v3 (fwd|bwd-data|bwd-weight) f32 tile 128", label):
            continue
        seen.add(label)
        share = k.loop.get("ffma_share", 0)
        if share < 0.75:
            failed.append(f"{label}: main loop {share:.0%} FFMA < 75%")
        if k.spill_stores or k.spill_loads:
            failed.append(f"{label}: spills {k.spill_stores + k.spill_loads} bytes")
        if k.blocks_per_sm < 2:
            failed.append(f"{label}: {k.blocks_per_sm} block(s)/SM < 2")
    return failed + [
        f"missing: {p}"
        for p in ("fwd", "bwd-data", "bwd-weight")
        if f"conv v3 {p} f32 tile 128" not in seen
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="90", help="compute capability to compile for (default 90)")
    ap.add_argument("--match", default="", help="only kernel files whose name contains this")
    ap.add_argument(
        "--conv-only", action="store_true", help="only the conv GEMM kernels in the table"
    )
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the static targets hold")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--loop", default="", metavar="REGEX", help="print the main loop's SASS of these kernels"
    )
    args = ap.parse_args(argv)
    sources = [
        s
        for s in sorted(glob.glob(os.path.join(ROOT, "csrc/kernels/*.cu")))
        if args.match in os.path.basename(s) and not s.endswith("selftest.cu")
    ]
    kernels = analyse(args.arch, sources, args.jobs, args.loop)
    conv = ("implicit_gemm", "wmma_kernel", "wmma_nhwc")
    shown = [k for k in kernels if any(c in k.name for c in conv)] if args.conv_only else kernels
    print(
        f"sm_{args.arch}: {len(kernels)} kernels; blocks/SM and occupancy for an H100/H200 at "
        f"{THREADS} threads a block (NHWC tensor-core kernels: 128)\n"
    )
    print(table(shown))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump([asdict(k) for k in kernels], f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    failed = targets(kernels) if any("conv2d" in s for s in sources) else []
    print(
        "\nstatic targets (v3 f32 tile 128: loop >= 75% FFMA, no spills, >= 2 blocks/SM): "
        + ("met" if not failed else "MISSED\n  " + "\n  ".join(failed))
    )
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
