"""The one error type users see: a list of problems, each tied to a place in the input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input.

    ``where`` is either a JSON path (``$.hosts.lb.address``) or ``line:col`` for syntax errors.
    """

    where: str
    message: str

    def render(self, source: str) -> str:
        if self.where.startswith("$"):
            return f"{source}::{self.where}: {self.message}"
        if self.where:
            return f"{source}:{self.where}: {self.message}"
        return f"{source}: {self.message}"


class InputError(Exception):
    """The input is invalid; carries every problem found, in a stable order."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


class OutputError(Exception):
    """The output directory cannot be written the way lvsgen must write it."""
