"""Running ``minicnn`` in-process in tests, and checking a one-line CLI error."""

import contextlib
import io

from minicnn.cli import main


def run_main(argv):
    """(exit code, stderr) of ``minicnn *argv``, stdout swallowed."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def one_line(err):
    """The one line of an error the CLI printed, asserting there is exactly one, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("minicnn: error: ") and "Traceback" not in err, (
        err
    )
    return lines[0]
