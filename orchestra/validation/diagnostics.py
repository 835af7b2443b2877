"""The diagnostic model of spec §7.1: what a lint rule found, how bad it is, where."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from orchestra.graph import SourceLocation

__all__ = ["Diagnostic", "Severity"]


class Severity(enum.Enum):
    ERROR = "error"  # the pipeline will not run
    WARNING = "warning"  # it runs, but may not do what was meant
    INFO = "info"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Diagnostic:
    rule: str
    severity: Severity
    message: str
    node_id: str | None = None
    edge: tuple[str, str] | None = None
    fix: str | None = None
    location: SourceLocation | None = attrs.field(default=None, eq=False)

    @property
    def line(self) -> int | None:
        return self.location.line if self.location else None

    def render(self, file: str | None = None) -> str:
        """``FILE:LINE: severity rule: message (fix)``, as compilers print it."""
        where = file or (self.location.file if self.location else None) or "<string>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.severity} {self.rule}: {self.message}"
        if self.fix:
            text += f" ({self.fix})"
        return text

    def to_json(self, file: str | None = None) -> dict[str, Any]:
        return {
            "file": file or (self.location.file if self.location else None),
            "line": self.line,
            "column": self.location.column if self.location else None,
            "severity": self.severity.value,
            "rule": self.rule,
            "message": self.message,
            "node_id": self.node_id,
            "edge": list(self.edge) if self.edge else None,
            "fix": self.fix,
        }
