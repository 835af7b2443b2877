"""Orchestra's type bundle for CXDB's registry, so CXDB's UI renders Orchestra's turns.

Built from ``orchestra.engine.session.SCHEMAS`` (tag = position + 1). A bundle id is
immutable on the server: publishing the same id with different bytes is refused (422), so
any change to a schema must come with a new ``BUNDLE_ID`` (a test pins the bytes). A tag's
field type is fixed forever across versions (``cxdb.md`` §4.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orchestra.engine.session import SCHEMAS

__all__ = ["BUNDLE_ID", "bundle_bytes", "bundle_json"]

BUNDLE_ID = "orchestra-v2"

#: field types where the generic renderer would be wrong: times render as RFC 3339, small
#: counts as JSON numbers (u64 and generic ints render as strings), flags as booleans
_TYPES: Mapping[str, str] = {
    "time_ms": "unix_ms",
    "started_ms": "unix_ms",
    "pid": "u32",
    "restarts": "u32",
    "reset": "bool",
    "dot_blob": "bytes",
    "update_keys": "array",
}
_MAPS = frozenset(
    {
        "variables",
        "outcome",
        "context_set",
        "retries",
        "visits",
        "executions",
        "entries",
        "workspace",
    }
)


def _field_type(name: str) -> str:
    if name in _TYPES:
        return _TYPES[name]
    return "map" if name in _MAPS else "string"


def bundle_json() -> dict[str, Any]:
    types: dict[str, Any] = {}
    for type_id, names in SCHEMAS.items():
        fields = {
            str(tag): {"name": name, "type": _field_type(name), "optional": True}
            for tag, name in enumerate(names, 1)
        }
        fields["30"] = {"name": "context_metadata", "type": "map", "optional": True}
        types[type_id] = {"versions": {"1": {"fields": fields}}}
    return {"registry_version": 1, "bundle_id": BUNDLE_ID, "types": types}


def bundle_bytes() -> bytes:
    """The bundle as published: canonical JSON, so re-publishing is byte-identical (204)."""
    return json.dumps(bundle_json(), sort_keys=True, separators=(",", ":")).encode()
