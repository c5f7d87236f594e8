"""The README's commands, .ci/run and the gradcheck command line."""

import re
import subprocess
import sys
from pathlib import Path


from minicnn.cli import main

ROOT = Path(__file__).resolve().parents[2]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2
    assert "pytest" in commands[1]
    ci_lines = [
        l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l and not l.startswith("#")
    ]
    assert commands[1] in ci_lines


def test_gradcheck_command_prints_a_table(capsys):
    assert main(["gradcheck", "--op", "relu", "--op", "cat"]) == 0
    out = capsys.readouterr().out
    assert "relu" in out and "cat" in out and "2 passed, 0 failed" in out


def test_gradcheck_command_fails_on_a_tolerance_no_case_can_meet(capsys):
    assert main(["gradcheck", "--op", "softmax", "--tol", "1e-30"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_unknown_op_is_a_usage_error(capsys):
    assert main(["gradcheck", "--op", "nope"]) == 2
    assert "unknown op(s) nope" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    r = subprocess.run(
        [sys.executable, "-m", "minicnn", "gradcheck", "--op", "relu"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "1 passed, 0 failed" in r.stdout
