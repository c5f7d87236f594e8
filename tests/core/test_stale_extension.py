"""conftest's stale-extension check: a module older than a source it is built from is reported."""

import os

from conftest import stale_extensions


def make_tree(tmp_path, so_time, source_time):
    (tmp_path / "minicnn").mkdir()
    (tmp_path / "csrc" / "cpu").mkdir(parents=True)
    so = tmp_path / "minicnn" / "_C_cpu.cpython-311-x86_64-linux-gnu.so"
    src = tmp_path / "csrc" / "cpu" / "pool.h"
    so.write_bytes(b"")
    src.write_text("// x")
    os.utime(so, (so_time, so_time))
    os.utime(src, (source_time, source_time))
    return tmp_path


def test_an_extension_older_than_a_header_is_stale(tmp_path):
    root = make_tree(tmp_path, so_time=1000, source_time=2000)
    assert stale_extensions(str(root)) == [("_C_cpu", os.path.join("csrc", "cpu", "pool.h"))]


def test_a_fresh_extension_is_not_stale(tmp_path):
    assert stale_extensions(str(make_tree(tmp_path, so_time=3000, source_time=2000))) == []


def test_this_checkout_is_not_stale():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert stale_extensions(root) == []
