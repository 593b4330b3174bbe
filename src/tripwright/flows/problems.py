"""Findings of definition checks, shared by every flow model's validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    """A finding of a definition check: an ``error`` makes the definition unrunnable or
    certainly wrong, a ``warning`` is a risk. ``element`` names the step, state or
    transition; ``line`` is its source line for definitions read from a document."""

    severity: Literal["error", "warning"]
    element: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.element} (line {self.line})" if self.line is not None else self.element
        return f"{self.severity}: {where}: {self.message}"
