"""User-facing errors.

Anything the user can fix (a bad file, a bad option, a missing model) raises a
`RagdistillError`. The CLI prints its message (no traceback) and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class RagdistillError(Exception):
    """An error whose message tells the user what went wrong and what to do."""

    exit_code = 2


class InputError(RagdistillError):
    """A malformed or unexpected input file; names the file and, when known, the line."""

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + problem)


class ConfigError(RagdistillError):
    """An invalid configuration key or value; names the key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        super().__init__(f"config key '{key}': {problem}")


class ModelError(RagdistillError):
    """A model that cannot be found, loaded or used for what was asked."""
