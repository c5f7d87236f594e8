"""Evidence that the emulator's race checker works: plant ordering bugs in copies of our kernels.

For each planted bug: copy the sources to a temporary directory, apply the one edit, build
minicnn._C_emu with the race checker (MINICNN_EMU_CHECK=1) from the copy, run the kernel tests on it
and print whether the checker (or the emulator's deadlock/mask checks) caught the bug:

    .venv/bin/python scripts/mutate_kernels.py            # every mutation (~1 min each on 2 cores)
    .venv/bin/python scripts/mutate_kernels.py --list
    .venv/bin/python scripts/mutate_kernels.py syncthreads-conv2d-1 shuffle-partial-mask

Nothing in the repository is modified; the copies live in a temporary directory.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_TESTS = [
    "tests/kernels/test_kernels_emu.py",
    "tests/kernels/test_kernels_ops.py",
    "tests/kernels/test_kernels_conv.py",
]
# What a caught bug looks like in the test output.
CAUGHT = re.compile(
    r"race checker: \d+ finding|divergent barrier|deadlock|does not include the calling lane"
    r"|names lane"
)


def syncthreads_mutations():
    """One mutation per __syncthreads() in the files the issue names (and block_sum, which batchnorm
    and the conv bias use)."""
    out = []
    for rel in [
        "csrc/kernels/conv2d.cu",
        "csrc/kernels/pool.cu",
        "csrc/kernels/batchnorm.cu",
        "csrc/kernels/common.cuh",
    ]:
        text = open(os.path.join(ROOT, rel)).read()
        count = len(re.findall(r"__syncthreads\(\);", text))
        if count == 0:
            out.append(
                (
                    f"syncthreads-{os.path.basename(rel).split('.')[0]}",
                    rel,
                    None,
                    None,
                    f"remove each __syncthreads() in {rel}: it has none",
                )
            )
        for k in range(count):
            out.append(
                (
                    f"syncthreads-{os.path.basename(rel).split('.')[0]}-{k + 1}",
                    rel,
                    r"__syncthreads\(\);",
                    k,
                    f"remove __syncthreads() #{k + 1} of {rel}",
                )
            )
    return out


# name, file, pattern, occurrence (None: the only one), description, replacement
OTHER = [
    (
        "two-blocks-same-output",
        "csrc/kernels/batchnorm.cu",
        r"out\[i\] = y;",
        0,
        "batch_norm_forward_inference_kernel: every block writes out[threadIdx.x]",
        "out[threadIdx.x] = y;",
    ),
    (
        "uninitialised-shared-read",
        "csrc/kernels/common.cuh",
        r"w < warps;",
        0,
        "block_sum reads all 32 scratch slots, not just the warps' (unwritten shared memory)",
        "w < kWarpSize;",
    ),
    (
        "shuffle-partial-mask",
        "csrc/kernels/common.cuh",
        r"__shfl_down_sync\(0xffffffffu",
        0,
        "warp_sum shuffles with mask 0x0000ffff while all 32 lanes call it",
        "__shfl_down_sync(0x0000ffffu",
    ),
    (
        "depends-on-block-0",
        "csrc/kernels/conv2d.cu",
        r"dbias\[k\] = sum;",
        0,
        "conv2d_backward_bias_kernel: block k > 0 reads dbias[0], written by block 0",
        "dbias[k] = k > 0 ? sum + T(0) * dbias[0] : sum;",
    ),
    (
        "drop-syncwarp",
        "csrc/emu/selftest.h",
        r"if \(kSyncwarp\) __syncwarp\(\);\n  \}",
        0,
        "no kernel of ours has a __syncwarp: drop the one after each step of selftest.h's "
        "warp_tree_sum<true>",
        "\n  }",
    ),
]


def mutations():
    out = []
    for name, rel, pattern, k, what in syncthreads_mutations():
        out.append(
            dict(name=name, file=rel, pattern=pattern, occurrence=k, what=what, replacement="")
        )
    for name, rel, pattern, k, what, replacement in OTHER:
        out.append(
            dict(
                name=name,
                file=rel,
                pattern=pattern,
                occurrence=k,
                what=what,
                replacement=replacement,
            )
        )
    return out


def plant(tree, m):
    """Apply mutation m in the copy at `tree`; False when the pattern is missing."""
    path = os.path.join(tree, m["file"])
    text = open(path).read()
    matches = list(re.finditer(m["pattern"], text))
    if len(matches) <= m["occurrence"]:
        return False
    hit = matches[m["occurrence"]]
    with open(path, "w") as f:
        f.write(text[: hit.start()] + m["replacement"] + text[hit.end() :])
    return True


def run(m, python):
    """(verdict, evidence) for mutation m."""
    if m["pattern"] is None:
        return "n/a", m["what"]
    with tempfile.TemporaryDirectory(prefix="minicnn-mutant-") as tree:
        for item in ["setup.py", "pyproject.toml"]:
            shutil.copy(os.path.join(ROOT, item), tree)
        for item in ["csrc", "minicnn", "tests"]:
            shutil.copytree(
                os.path.join(ROOT, item),
                os.path.join(tree, item),
                ignore=shutil.ignore_patterns("*.so", "__pycache__"),
            )
        if not plant(tree, m):
            return "n/a", f"pattern {m['pattern']!r} not found in {m['file']}"
        env = dict(os.environ, MINICNN_EMU_CHECK="1", MINICNN_CUDA="0")
        build = subprocess.run(
            [
                python,
                "setup.py",
                "-q",
                "build_ext",
                "--build-lib",
                "build/check",
                "--build-temp",
                "build/check-temp",
            ],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
        if build.returncode != 0:
            return "build failed", build.stderr.strip().splitlines()[-1:]
        ext = [
            f
            for f in os.listdir(os.path.join(tree, "build/check/minicnn"))
            if f.startswith("_C_emu")
        ][0]
        env = dict(
            os.environ,
            MINICNN_EMU_EXTENSION=os.path.join(tree, "build/check/minicnn", ext),
            MINICNN_KERNEL_DEVICES="emu",
            MINICNN_HYPOTHESIS_EXAMPLES="3",
            PYTHONPATH=tree,
        )
        if m["file"].endswith("selftest.h"):
            command = [python, "-c", "import minicnn.emu as e; e.selftest('warp_tree_sum')"]
        else:
            command = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *KERNEL_TESTS]
        result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
        output = result.stdout + result.stderr
        found = CAUGHT.search(output)
        if result.returncode != 0 and found:
            lines = [
                l.strip()
                for l in output.splitlines()
                if "race on" in l or "uninitialised read" in l or CAUGHT.search(l)
            ]
            return "caught", lines[1] if len(lines) > 1 and "race checker" in lines[0] else lines[0]
        return (
            "missed" if result.returncode == 0 else "failed otherwise"
        ), output.strip().splitlines()[-1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    todo = mutations()
    if args.list:
        for m in todo:
            print(f"{m['name']:28} {m['what']}")
        return 0
    unknown = set(args.names) - {m["name"] for m in todo}
    if unknown:
        print(
            f"mutate_kernels: unknown mutation(s): {', '.join(sorted(unknown))} (see --list)",
            file=sys.stderr,
        )
        return 2
    if args.names:
        todo = [m for m in todo if m["name"] in args.names]
    missed = 0
    print("| planted bug | verdict | first report |\n| --- | --- | --- |", flush=True)
    for m in todo:
        verdict, evidence = run(m, args.python)
        evidence = evidence if isinstance(evidence, str) else " ".join(evidence)
        missed += verdict not in ("caught", "n/a")
        print(f"| {m['name']}: {m['what']} | {verdict} | {evidence[:300]} |", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
