"""Numerical checks of the papers' theoretical statements.

Each check returns a :class:`Check`: measured values, the bound or prediction, and pass/fail with the
tolerance used. Modules: ``sgd`` (SGD-IE / ACC-SGD-IE error orders), ``diffin`` (Diff-In error growth,
finite-difference HVPs), ``lai`` (Ghost vs LAI Cauchy–Schwarz bound), ``cgscore`` (NTK movement
identity).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Check"]


@dataclass
class Check:
    """Outcome of one theory check: ``measured`` vs ``predicted`` (bound), ``passed`` under ``criterion``."""

    name: str
    passed: bool
    criterion: str
    measured: dict[str, Any] = field(default_factory=dict)
    predicted: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
