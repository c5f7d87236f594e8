"""benchmarks/bench_sass.py's parsing and occupancy arithmetic on small hand-made samples (no
nvcc needed)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import bench_sass as b  # noqa: E402

PTXAS = """ptxas info    : Compiling entry function '_Z1kPf' for 'sm_90'
ptxas info    : Function properties for _Z1kPf
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 130 registers, used 1 barriers, 4608 bytes smem, 380 bytes cmem[0]
"""
SASS = """        Function : _Z1kPf
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   LDG.E R2, desc[UR4][R4.64] ;
        /*0020*/                   LDS.128 R8, [R3] ;
        /*0030*/                   FFMA R10, R8, R9, R10 ;
        /*0040*/                   FFMA R11, R8, R9, R11 ;
        /*0050*/              @P0 BRA 0x20 ;
        /*0060*/                   NOP ;
        /*0070*/                   FFMA R12, R8, R9, R12 ;
        /*0080*/              @P1 BRA 0x70 ;
        /*0090*/              @!P2 BRA 0x10 ;
        /*00a0*/                   EXIT ;
"""


def test_ptxas_resources():
    assert b.parse_ptxas(PTXAS) == {
        "_Z1kPf": dict(regs=130, spill_stores=4, spill_loads=12, stack=8, smem=4608)
    }


def test_main_loop_weights_nested_ffma_loops_by_the_slice_depth():
    code = b.parse_sass(SASS)["_Z1kPf"]
    assert b.loops(code) == [(0x20, 0x50), (0x70, 0x80), (0x10, 0x90)]
    mix = b.main_loop(code)
    # the outer loop 0x10-0x90: its two FFMA loops count 8 times each, everything else once
    assert mix["span"] == "0x10-0x90"
    assert mix["ffma"] == 8 * 3 and mix["lds128"] == 8 and mix["ldg"] == 1
    assert mix["instructions"] == 1 + 8 * 4 + 8 * 2 + 1


def test_blocks_per_sm():
    assert b.blocks_per_sm(128, 16896) == 2  # 128 regs x 256 threads: half the register file
    assert b.blocks_per_sm(174, 8448) == 1
    assert b.blocks_per_sm(32, 0) == 8  # the 2048-thread limit
    assert b.blocks_per_sm(32, 100 * 1024) == 2  # shared memory (+1 KB reserved per block)


def test_labels():
    name = (
        "void minicnn::kernels::v3::conv2d_implicit_gemm_v3_kernel<"
        "minicnn::kernels::v3::ForwardV3<float, 4, true>, 128>"
        "(minicnn::kernels::v3::ForwardV3<float, 4, true>, long)"
    )
    assert b.short(name) == "conv v3 fwd f32 tile 128"
    assert b.dynamic_smem(name) == 2 * 2 * 8 * 132 * 4
