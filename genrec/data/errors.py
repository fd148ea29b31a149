"""The one exception type for bad dataset input; every message names the file and the problem."""

from __future__ import annotations

import os


class DataError(ValueError):
    """Raised for malformed or inconsistent dataset files."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
