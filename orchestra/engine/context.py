"""The run context (spec §5.1): the key-value state stages share.

The engine runs on one event loop, so the context needs no lock; parallel branches each get
their own deep copy (``clone``) and never share one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Context"]


class Context:
    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(values or {})
        self._changed: set[str] = set(self._values)
        self.logs: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def get_string(self, key: str, default: str = "") -> str:
        value = self._values.get(key)
        return default if value is None else str(value)

    def set(self, key: str, value: Any) -> None:
        self._values[key] = value
        self._changed.add(key)

    def apply_updates(self, updates: Mapping[str, Any]) -> None:
        self._values.update(updates)
        self._changed.update(updates)

    def take_changes(self) -> dict[str, Any]:
        """The keys written since the last call, with their values: what a checkpoint
        records. (A value changed in place, without ``set``, is not seen.)"""
        changes = {key: self._values[key] for key in self._changed}
        self._changed.clear()
        return changes

    def append_log(self, entry: str) -> None:
        self.logs.append(entry)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the values, safe to serialise or keep."""
        return copy.deepcopy(self._values)

    def clone(self) -> Context:
        """An independent copy for a parallel branch."""
        twin = Context(self.snapshot())
        twin.logs = list(self.logs)
        return twin

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def as_mapping(self) -> Mapping[str, Any]:
        """A read-only view of the current values (for conditions and templates)."""
        return self._values

    def __repr__(self) -> str:
        return f"Context({self._values!r})"
