"""The project's user-facing error: one line that names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class DonetError(Exception):
    """Bad input or a refused operation; the CLI prints it as one line and exits non-zero."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class ProcessLost(DonetError):
    """Another process of a torchrun group stopped (killed, crashed, out of memory): the
    run cannot finish, so every process stops and leaves nothing behind."""
