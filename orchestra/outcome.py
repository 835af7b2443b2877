"""What a handler returns (spec §5.2) and how it reads and writes ``status.json`` (Appendix C)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["Outcome", "StageStatus"]


class StageStatus(enum.Enum):
    SUCCESS = "success"
    PARTIAL_SUCCESS = "partial_success"
    RETRY = "retry"
    FAIL = "fail"
    SKIPPED = "skipped"

    @property
    def is_success(self) -> bool:
        """SUCCESS or PARTIAL_SUCCESS: what satisfies a goal gate."""
        return self in (StageStatus.SUCCESS, StageStatus.PARTIAL_SUCCESS)

    @classmethod
    def parse(cls, text: str) -> StageStatus:
        """A status from its name in any case (``SUCCESS``, ``partial_success``, ``Fail``)."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown outcome {text!r}; expected one of {valid}") from None

    def __str__(self) -> str:
        return self.value


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


def _ids(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class Outcome:
    """The result of running a node: drives routing and updates the context."""

    status: StageStatus
    preferred_label: str = ""
    suggested_next_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    context_updates: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen)
    notes: str = ""
    failure_reason: str = ""

    @classmethod
    def success(cls, notes: str = "", **kwargs: Any) -> Outcome:
        return cls(StageStatus.SUCCESS, notes=notes, **kwargs)

    @classmethod
    def fail(cls, reason: str, **kwargs: Any) -> Outcome:
        return cls(StageStatus.FAIL, failure_reason=reason, **kwargs)

    def to_json(self) -> dict[str, Any]:
        """The status-file form of Appendix C (plus ``failure_reason`` when there is one)."""
        data: dict[str, Any] = {
            "outcome": self.status.value,
            "preferred_label": self.preferred_label,
            "suggested_next_ids": list(self.suggested_next_ids),
            "context_updates": dict(self.context_updates),
            "notes": self.notes,
        }
        if self.failure_reason:
            data["failure_reason"] = self.failure_reason
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        """Read a status file's object; raises ``ValueError`` saying which field is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("expected a JSON object")
        if "outcome" not in data:
            raise ValueError("missing the required field 'outcome'")
        status = StageStatus.parse(str(data["outcome"]))
        suggested = data.get("suggested_next_ids") or []
        if not isinstance(suggested, list) or not all(isinstance(s, str) for s in suggested):
            raise ValueError("'suggested_next_ids' must be a list of strings")
        updates = data.get("context_updates") or {}
        if not isinstance(updates, Mapping):
            raise ValueError("'context_updates' must be an object")
        notes = data.get("notes") or ""
        if isinstance(notes, list):  # some tools write notes as a list of log lines
            notes = "\n".join(str(n) for n in notes)
        return cls(
            status=status,
            preferred_label=str(data.get("preferred_label") or ""),
            suggested_next_ids=tuple(suggested),
            context_updates=dict(updates),
            notes=str(notes),
            failure_reason=str(data.get("failure_reason") or ""),
        )
