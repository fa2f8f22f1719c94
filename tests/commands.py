"""The `donet` command run as a user runs it: a new interpreter, its output and exit code."""

import subprocess
import sys


def donet(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "donet", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The command failed with one line on stderr, starting "error:", holding each fragment."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
