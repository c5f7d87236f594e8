"""docs/tour.md and the README's "Command line" section: run every command, check every excerpt.

A ```sh block's ``minicnn …`` lines run in-process (``cli.main``) in a scratch folder, with
``~/.cache/minicnn`` pointing at a scratch cache; a ```python block runs with ``exec``. The ```text
block right after a command block is its excerpt: every line of it must appear in what the block
printed (whitespace runs compared as one space; ``…`` matches any text; a line of just ``…`` is
skipped). A command line marked ``# not run in tests`` is only parsed. The README's other sections
(training on ImageNet-sized data, GPUs) are parsed, not run. One fast variant: ``minicnn models``
runs as ``minicnn models --family alexnet`` (the whole table takes ~10 s), and its excerpt shows
only AlexNet's rows.
"""

import contextlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from minicnn.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
FAST = {("models",): ["models", "--family", "alexnet"]}
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


def blocks(text):
    """[(language, body, excerpt or None, heading)] in document order."""
    found = [(m.start(), m.end(), m.group(1), m.group(2)) for m in BLOCK.finditer(text)]
    out = []
    for i, (start, end, lang, body) in enumerate(found):
        if lang not in ("sh", "python"):
            continue
        nxt = found[i + 1] if i + 1 < len(found) else None
        excerpt = nxt[3] if nxt and nxt[2] == "text" and not text[end : nxt[0]].strip() else None
        headings = re.findall(r"^## (.*)$", text[:start], re.M)
        out.append((lang, body, excerpt, headings[-1] if headings else ""))
    return out


def command_lines(body):
    return [line for line in body.splitlines() if line.strip().startswith("minicnn ")]


def argv_of(line, cache):
    line = line.replace("~/.cache/minicnn", str(cache))
    skip = "# not run in tests" in line
    argv = shlex.split(line.split("#")[0])[1:]
    return FAST.get(tuple(argv), argv), skip


def missing_lines(excerpt, output):
    """Excerpt lines that appear in no line of ``output``."""
    lines = [" ".join(line.split()) for line in output.splitlines()]
    missing = []
    for want in excerpt.splitlines():
        want = " ".join(want.split())
        if not want or want == "…":
            continue
        pattern = re.compile(".*?".join(re.escape(p.strip()) for p in want.split("…")))
        if not any(pattern.search(line) for line in lines):
            missing.append(want)
    return missing


def run_block(lang, body, cache):
    """(what the block printed, [problems])."""
    out, problems = io.StringIO(), []
    with contextlib.redirect_stdout(out), np.errstate(all="ignore"):
        if lang == "python":
            exec(compile(body, "<docs>", "exec"), {"__name__": "__docs__"})
        for line in command_lines(body) if lang == "sh" else ():
            argv, skip = argv_of(line, cache)
            if skip:
                build_parser().parse_args(argv)
            elif main(argv) != 0:
                problems.append(f"{line!r} exited non-zero")
    return out.getvalue(), problems


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MINICNN_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    return cache


@pytest.mark.parametrize("doc,section", [("docs/tour.md", None), ("README.md", "Command line")])
def test_every_command_runs_and_prints_its_excerpt(doc, section, workspace):
    problems, ran = [], 0
    for lang, body, excerpt, heading in blocks((ROOT / doc).read_text()):
        if section is not None and heading != section:
            continue
        output, errors = run_block(lang, body, workspace)
        ran += 1
        problems += errors
        if excerpt is not None:
            problems += [
                f"{body.strip()[:60]!r}: missing {line!r}"
                for line in missing_lines(excerpt, output)
            ]
    assert ran >= 8 and not problems, "\n".join(problems)


def test_the_readmes_other_commands_parse():
    parser = build_parser()
    lines = [
        line
        for lang, body, _, heading in blocks((ROOT / "README.md").read_text())
        if lang == "sh" and heading != "Command line"
        for line in command_lines(body)
    ]
    assert lines
    for line in lines:
        parser.parse_args(argv_of(line, "/tmp")[0])


def test_every_subcommand_is_in_the_readme():
    text = (ROOT / "README.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert re.search(rf"^```sh\nminicnn {name}\b", text, re.M), name


def test_excerpt_matching():
    out = "a  b   c\nloss 1.23, top-1 45.6%\n"
    assert missing_lines("a b c\n…\nloss …, top-1 …%", out) == []
    assert missing_lines("loss …, top-5 …%\nd", out) == ["loss …, top-5 …%", "d"]
