"""A fake CXDB server in-process, for tests and benchmarks of the CXDB store.

``FakeCxdb`` speaks CXDB's binary protocol (``reference/cxdb.md`` §2) on one port and the
HTTP routes Orchestra reads (§3, §4) on another, both on 127.0.0.1. It was written from the
reference alone, independently of ``protocol.py``, so that a misreading of the spec on
either side shows up as a failing test instead of cancelling out.

It behaves as the real server does, traps included:

- A failed request closes the connection without a reply (unknown context, missing base or
  parent turn, missing blob, hash or length mismatch, unsupported compression, missing fs
  root, truncated payload, a payload over 64 MiB); only an unknown ``msg_type`` gets an
  ERROR frame (422 ``unknown msg_type``), and the connection stays usable. After such a
  close the session stays "live", as on the real server.
- Turn and context ids are global counters from 1; the first turn has depth 0; an append
  with an explicit parent re-points the head even outside the context's history (and, with
  an unknown context, creates it); a context's time is rewritten on every append.
- Idempotency keys are parsed and ignored. With flags bit 0 the turn is written first, then
  a missing fs root closes the connection.
- Context metadata (key 30 of the depth-0 turn's payload) is read from integer keys only,
  as at the commit the reference describes: digit-string keys are invisible.
- ``GET /v1/contexts`` takes the ``limit`` most recent contexts and then filters them by
  ``tag``, as the server's source does, so a filter can return fewer than ``limit``.
- Provenance JSON has every field, null when absent, and a live session's peer address
  fills a missing ``client_address``. Bundle ids and type ids in paths are compared
  percent-encoded.

Left out: zstd (compression 1 closes the connection, like a frame the server cannot
decode), SSE, the fs-tree and metrics routes, renderers, and CQL beyond ``tag = "x"`` and
``title = "x"`` joined by ``AND`` (anything else is a 400). One way it is stricter than the
real server: bytes left over after a request's fields close the connection.

Fault injection (``drop_before``, ``drop_after``, ``corrupt_reply``, ``restart``) and
read-only views of the state (``turns``, ``contexts``, ``blobs``, ``bundles``, ``requests``,
``max_in_flight``) are for tests.

Run as a process for tests that start ``orchestra`` in a subprocess::

    python -m orchestra.store.cxdb.fake --ports-file PATH [--data DIR]
        [--binary-port N] [--http-port N]

It writes ``{"binary_port", "http_port", "url"}`` as JSON to PATH once listening (and the
same line to stdout), and serves until SIGTERM or SIGINT. With ``--data DIR`` it loads
``DIR/cxdb-fake.msgpack`` at start if it exists and writes it on a clean shutdown, so a test
can stop the process and start it again (on the same ports with ``--binary-port`` and
``--http-port``) and keep its turns, contexts, blobs and bundles. A killed process saves
nothing.
"""

from __future__ import annotations

import argparse
import base64
import enum
import json
import math
import os
import re
import signal
import struct
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, TypeGuard

import anyio
import anyio.abc
import anyio.to_thread
import attrs
import msgpack
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestra.store.base import content_hash

__all__ = ["FakeContext", "FakeCxdb", "FakeTurn", "main"]

_HOST = "127.0.0.1"
_HEADER = struct.Struct("<IHHQ")
_MAX_PAYLOAD = 64 * 1024 * 1024
_FS_ROOT_FLAG = 1
_DATA_FILE = "cxdb-fake.msgpack"


class _MsgType(enum.IntEnum):
    HELLO = 1
    CTX_CREATE = 2
    CTX_FORK = 3
    GET_HEAD = 4
    APPEND_TURN = 5
    GET_LAST = 6
    GET_BLOB = 9
    ATTACH_FS = 10
    PUT_BLOB = 11
    ERROR = 255


_METADATA_KEY = 30
_PROVENANCE_KEY = 10
# key → (JSON name, kind); the server serialises every field, absent ones as null
_PROVENANCE_FIELDS: dict[int, tuple[str, str]] = {
    1: ("parent_context_id", "u64"),
    2: ("spawn_reason", "str"),
    3: ("root_context_id", "u64"),
    10: ("trace_id", "str"),
    11: ("span_id", "str"),
    12: ("correlation_id", "str"),
    20: ("on_behalf_of", "str"),
    21: ("on_behalf_of_source", "str"),
    22: ("on_behalf_of_email", "str"),
    30: ("writer_method", "str"),
    31: ("writer_subject", "str"),
    32: ("writer_issuer", "str"),
    40: ("service_name", "str"),
    41: ("service_version", "str"),
    42: ("service_instance_id", "str"),
    43: ("process_pid", "i64"),
    44: ("process_owner", "str"),
    45: ("host_name", "str"),
    46: ("host_arch", "str"),
    50: ("client_address", "str"),
    51: ("client_port", "i64"),
    60: ("env", "env"),
    70: ("sdk_name", "str"),
    71: ("sdk_version", "str"),
    80: ("captured_at", "i64"),
}

_U64_TYPES = frozenset({"u64", "uint64", "int64"})
_NUMBER_TYPES = frozenset({"u32", "uint32", "u8", "uint8", "int32"})
_BYTES_TYPES = frozenset({"bytes", "typed_blob"})
_TIME_TYPES = frozenset({"unix_ms", "time_ms", "timestamp_ms"})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@attrs.frozen
class FakeTurn:
    """A turn as the server keeps it; the payload is ``blobs[content_hash]``."""

    turn_id: int
    parent_turn_id: int
    depth: int
    type_id: str
    type_version: int
    encoding: int
    compression: int
    uncompressed_len: int
    content_hash: bytes = attrs.field(repr=False)
    created_at_ms: int


@attrs.frozen
class FakeContext:
    """A context's head record; the server replaces it, time included, on every append."""

    context_id: int
    head_turn_id: int
    head_depth: int
    created_at_ms: int


@attrs.frozen
class _Metadata:
    """What the server reads from key 30 of a lineage's depth-0 turn."""

    client_tag: str | None
    title: str | None
    labels: tuple[str, ...] | None
    provenance: Mapping[str, Any] | None


@attrs.define
class _Session:
    session_id: int
    peer_addr: str
    connected_at: int
    last_activity_at: int
    client_tag: str = ""
    contexts: list[int] = attrs.Factory(list)


@attrs.frozen
class _Frame:
    msg_type: int
    flags: int
    req_id: int
    payload: bytes = attrs.field(repr=False)


@attrs.define
class _Connection:
    """Requests read from one connection and replies sent on it, for ``max_in_flight``."""

    received: int = 0
    answered: int = 0


@attrs.frozen
class _Serving:
    scope: anyio.CancelScope
    stopped: anyio.Event


class _Hangup(Exception):
    """The request failed: the server closes the connection without replying."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parse_uint(text: str, bits: int) -> int | None:
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value < 1 << bits else None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class _Fields:
    """Reads a request payload's little-endian fields; running short closes the connection."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._at

    def take(self, size: int) -> bytes:
        if size > self.remaining:
            raise _Hangup("truncated payload")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk

    def u16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.take(8))[0]
        return value

    def text(self, size: int) -> str:
        try:
            return self.take(size).decode()
        except UnicodeDecodeError:
            raise _Hangup("invalid UTF-8") from None

    def end(self) -> None:
        if self.remaining:
            raise _Hangup(f"{self.remaining} bytes after the request's fields")


# --- context metadata ---------------------------------------------------------------------


def _int_keyed(value: object) -> dict[int, Any] | None:
    """A msgpack map's integer-keyed entries; other keys are not read for metadata."""
    if not isinstance(value, dict):
        return None
    return {key: item for key, item in value.items() if _is_int(key) and key >= 0}


def _provenance_value(kind: str, value: object) -> Any:
    """A provenance field's value if it has the field's kind, else None."""
    if kind == "env":
        if not isinstance(value, dict):
            return None
        env = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
        return env or None
    if kind == "str":
        return value if isinstance(value, str) else None
    low, high = (0, 1 << 64) if kind == "u64" else (-(1 << 63), 1 << 63)
    return value if _is_int(value) and low <= value < high else None


def _provenance(entries: dict[int, Any]) -> dict[str, Any]:
    provenance: dict[str, Any] = {name: None for name, _ in _PROVENANCE_FIELDS.values()}
    for key, value in entries.items():
        if key in _PROVENANCE_FIELDS:
            name, kind = _PROVENANCE_FIELDS[key]
            provenance[name] = _provenance_value(kind, value)
    return provenance


def _metadata(payload: bytes) -> _Metadata | None:
    try:
        decoded = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:
        return None
    top = _int_keyed(decoded)
    section = _int_keyed(top.get(_METADATA_KEY)) if top is not None else None
    if section is None:
        return None
    client_tag = section.get(1)
    title = section.get(2)
    labels = section.get(3)
    if isinstance(labels, list):
        labels = tuple(label for label in labels if isinstance(label, str)) or None
    provenance = _int_keyed(section.get(_PROVENANCE_KEY))
    found = _Metadata(
        client_tag=client_tag if isinstance(client_tag, str) else None,
        title=title if isinstance(title, str) else None,
        labels=labels if isinstance(labels, tuple) else None,
        provenance=_provenance(provenance) if provenance is not None else None,
    )
    return None if found == _Metadata(None, None, None, None) else found


# --- type registry --------------------------------------------------------------------------


@attrs.frozen
class _Field:
    name: str
    type: str
    optional: bool
    enum: str | None
    ref: str | None
    #: ("ref", type_id) or (simple type, None)
    items: tuple[str, str | None] | None

    @property
    def signature(self) -> tuple[str, str | None]:
        return (self.type, self.enum)

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.enum is not None:
            shown["enum"] = self.enum
        if self.ref is not None:
            shown["ref"] = self.ref
        if self.items is not None:
            kind, ref = self.items
            shown["items"] = {"type": "ref", "ref": ref} if kind == "ref" else kind
        if self.optional:
            shown["optional"] = True
        return shown


@attrs.frozen
class _TypeVersion:
    fields: Mapping[int, _Field]
    renderer: Mapping[str, str] | None


@attrs.frozen
class _Bundle:
    bundle_id: str
    types: Mapping[str, Mapping[int, _TypeVersion]]
    enums: Mapping[str, Mapping[int, str]]


def _invalid(message: str) -> _HttpError:
    return _HttpError(422, message)


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"invalid type: {what} must be a map")
    return value


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"invalid type: {what} must be a string")
    return value


def _optional_string(value: object, what: str) -> str | None:
    return None if value is None else _string(value, what)


def _parse_field(value: object, where: str) -> _Field:
    spec = _object(value, where)
    optional = spec.get("optional", False)
    if not isinstance(optional, bool):
        raise _invalid(f"invalid type: {where}.optional must be a bool")
    items = spec.get("items")
    parsed_items: tuple[str, str | None] | None = None
    if isinstance(items, str):
        parsed_items = (items, None)
    elif items is not None:
        items_spec = _object(items, f"{where}.items")
        kind = _string(items_spec.get("type"), f"{where}.items.type")
        ref = _optional_string(items_spec.get("ref"), f"{where}.items.ref")
        if kind == "ref" and ref is None:
            raise _invalid(f"{where}.items: a ref needs a type id")
        parsed_items = (kind, ref if kind == "ref" else None)
    return _Field(
        name=_string(spec.get("name"), f"{where}.name"),
        type=_string(spec.get("type"), f"{where}.type"),
        optional=optional,
        enum=_optional_string(spec.get("enum"), f"{where}.enum"),
        ref=_optional_string(spec.get("ref"), f"{where}.ref"),
        items=parsed_items,
    )


def _parse_type_version(value: object, where: str) -> _TypeVersion:
    spec = _object(value, where)
    fields: dict[int, _Field] = {}
    for tag_text, field in _object(spec.get("fields"), f"{where}.fields").items():
        tag = _parse_uint(tag_text, 64)
        if tag is None:
            raise _invalid(f"{where}: field tag {tag_text!r} is not a u64")
        fields[tag] = _parse_field(field, f"{where}.fields.{tag_text}")
    renderer = spec.get("renderer")
    parsed_renderer: dict[str, str] | None = None
    if renderer is not None:
        renderer_spec = _object(renderer, f"{where}.renderer")
        parsed_renderer = {"esm_url": _string(renderer_spec.get("esm_url"), "esm_url")}
        for key in ("component", "integrity"):
            if renderer_spec.get(key) is not None:
                parsed_renderer[key] = _string(renderer_spec[key], key)
    return _TypeVersion(fields=MappingProxyType(fields), renderer=parsed_renderer)


def _parse_bundle(body: bytes) -> _Bundle:
    try:
        document = json.loads(body)
    except ValueError as error:
        raise _invalid(f"invalid json: {error}") from None
    bundle = _object(document, "bundle")
    version = bundle.get("registry_version")
    if not (_is_int(version) and 0 < version < 1 << 32):
        raise _invalid("registry_version must be a u32 above 0")
    bundle_id = _string(bundle.get("bundle_id"), "bundle_id")
    if not bundle_id:
        raise _invalid("bundle_id is empty")
    types: dict[str, dict[int, _TypeVersion]] = {}
    for type_id, type_spec in _object(bundle.get("types") or {}, "types").items():
        versions = _object(_object(type_spec, type_id).get("versions"), f"{type_id}.versions")
        types[type_id] = {}
        for version_text, version_spec in versions.items():
            number = _parse_uint(version_text, 32)
            if number is None:
                raise _invalid(f"{type_id}: version {version_text!r} is not a u32")
            where = f"{type_id} v{number}"
            types[type_id][number] = _parse_type_version(version_spec, where)
    enums: dict[str, dict[int, str]] = {}
    for enum_id, labels in _object(bundle.get("enums") or {}, "enums").items():
        enums[enum_id] = {}
        for number_text, label in _object(labels, enum_id).items():
            number = _parse_uint(number_text, 64)
            if number is None:
                raise _invalid(f"enum {enum_id}: {number_text!r} is not a number")
            enums[enum_id][number] = _string(label, f"enum {enum_id} label")
    return _Bundle(bundle_id=bundle_id, types=types, enums=enums)


class _Registry:
    """Bundles, and the type versions and enums they define (reference/cxdb.md §4.2)."""

    def __init__(self) -> None:
        self.bundles: dict[str, bytes] = {}
        self.types: dict[str, dict[int, _TypeVersion]] = {}
        self.enums: dict[str, Mapping[int, str]] = {}
        self.last_bundle_id: str | None = None

    def put(self, body: bytes) -> tuple[str, bool]:
        """Ingest a bundle: its id, and whether it is new (False for an identical re-PUT)."""
        bundle = _parse_bundle(body)
        known = self.bundles.get(bundle.bundle_id)
        if known is not None:
            if known == body:
                return bundle.bundle_id, False
            raise _invalid(f"bundle {bundle.bundle_id} already exists with different content")
        enums = dict(self.enums)
        for enum_id, labels in bundle.enums.items():
            if enum_id in enums and enums[enum_id] != labels:
                raise _invalid(f"enum {enum_id} is immutable")
            enums[enum_id] = labels
        types = {type_id: dict(versions) for type_id, versions in self.types.items()}
        for type_id, versions in bundle.types.items():
            registered = types.setdefault(type_id, {})
            for number, spec in versions.items():
                self._check_version(type_id, number, spec, registered, enums)
                previous = registered.get(number)
                if previous is None or spec.renderer is not None:
                    registered[number] = spec
        self.types = types
        self.enums = enums
        self.bundles[bundle.bundle_id] = body
        self.last_bundle_id = bundle.bundle_id
        return bundle.bundle_id, True

    @staticmethod
    def _check_version(
        type_id: str,
        number: int,
        spec: _TypeVersion,
        registered: Mapping[int, _TypeVersion],
        enums: Mapping[str, Mapping[int, str]],
    ) -> None:
        previous = registered.get(number)
        if previous is not None and previous.fields != spec.fields:
            raise _invalid(f"type {type_id} v{number} already exists with different fields")
        for tag, field in spec.fields.items():
            for other in registered.values():
                earlier = other.fields.get(tag)
                if earlier is not None and earlier.signature != field.signature:
                    raise _invalid(
                        f"tag reuse conflict: {type_id} tag {tag} was {earlier.type}, "
                        f"now {field.type}"
                    )
            if field.enum is not None and field.enum not in enums:
                raise _invalid(f"{type_id} v{number} tag {tag}: unknown enum {field.enum}")

    def descriptor(self, type_id: str, version: int) -> _TypeVersion | None:
        return self.types.get(type_id, {}).get(version)

    def latest_version(self, type_id: str) -> int | None:
        versions = self.types.get(type_id)
        return max(versions) if versions else None

    def latest(self, type_id: str) -> _TypeVersion | None:
        version = self.latest_version(type_id)
        return None if version is None else self.types[type_id][version]


# --- typed projection -----------------------------------------------------------------------


@attrs.frozen
class _RenderOptions:
    """The ``/turns`` query's rendering options; an unknown value means the default."""

    bytes_render: str
    u64_as_string: bool
    enum_render: str
    time_as_ms: bool

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> _RenderOptions:
        bytes_render = query.get("bytes_render", "")
        enum_render = query.get("enum_render", "")
        return cls(
            bytes_render=bytes_render if bytes_render in ("hex", "len_only") else "base64",
            u64_as_string=query.get("u64_format") != "number",
            enum_render=enum_render if enum_render in ("number", "both") else "label",
            time_as_ms=query.get("time_render") == "unix_ms",
        )


def _tag(key: object) -> int | None:
    if _is_int(key):
        return key if key >= 0 else None
    if isinstance(key, str):
        return _parse_uint(key, 64)
    return None


def _rfc3339(ms: int) -> str | None:
    try:
        moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if ms % 1000:
        return moment.replace(microsecond=ms % 1000 * 1000).isoformat(timespec="milliseconds")
    return moment.isoformat()


class _Projection:
    """msgpack → JSON by a type descriptor, as the server's ``view=typed`` (§4.3)."""

    def __init__(self, registry: _Registry, options: _RenderOptions) -> None:
        self._registry = registry
        self._options = options

    def project(
        self, value: dict[Any, Any], fields: Mapping[int, _Field]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        data: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        for key, item in value.items():
            tag = _tag(key)
            if tag is None:
                continue
            field = fields.get(tag)
            if field is None:
                unknown[str(tag)] = self.generic(item)
            else:
                data[field.name] = self.field(field, item)
        return data, unknown

    def field(self, field: _Field, value: Any) -> Any:
        if field.enum is not None and _is_int(value):
            label = self._registry.enums.get(field.enum, {}).get(value)
            if label is not None:
                if self._options.enum_render == "number":
                    return value
                if self._options.enum_render == "both":
                    return {"label": label, "value": value}
                return label
        if field.type == "array" and field.items is not None:
            if not isinstance(value, list):
                return None
            kind, ref = field.items
            return [self.typed(kind, ref, item) for item in value]
        return self.typed(field.type, field.ref, value)

    def typed(self, type_name: str, ref: str | None, value: Any) -> Any:
        if type_name == "ref" and ref is not None:
            return self.nested(ref, value)
        if type_name in _U64_TYPES:
            return self.u64(value) if _is_int(value) and value >= 0 else None
        if type_name in _NUMBER_TYPES:
            return value if _is_int(value) else None
        if type_name == "string":
            return value if isinstance(value, str) else None
        if type_name == "bool":
            return value if isinstance(value, bool) else None
        if type_name in _BYTES_TYPES:
            return self.render_bytes(value) if isinstance(value, bytes) else None
        if type_name in _TIME_TYPES:
            if not _is_int(value):
                return None
            return value if self._options.time_as_ms else _rfc3339(value)
        return self.generic(value)

    def nested(self, type_id: str, value: Any) -> Any:
        descriptor = self._registry.latest(type_id)
        if descriptor is None:
            return self.generic(value)
        if not isinstance(value, dict):
            return None
        return self.project(value, descriptor.fields)[0]

    def u64(self, value: int) -> Any:
        return str(value) if self._options.u64_as_string else value

    def render_bytes(self, value: bytes) -> Any:
        if self._options.bytes_render == "hex":
            return value.hex()
        if self._options.bytes_render == "len_only":
            return len(value)
        return base64.b64encode(value).decode()

    def generic(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return self.u64(value) if value >= 0 else value
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, bytes):
            return self.render_bytes(value)
        if isinstance(value, list):
            return [self.generic(item) for item in value]
        if isinstance(value, dict):
            return {self._generic_key(key): self.generic(item) for key, item in value.items()}
        return None

    @staticmethod
    def _generic_key(key: object) -> str:
        if isinstance(key, str):
            return key
        if _is_int(key):
            return str(key) if key >= 0 else ""
        return ""


# --- CQL, the little the fake knows ----------------------------------------------------------

_CQL_TOKEN = re.compile(
    r'\s*(?:(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[=!^~<>]+)|"(?P<string>(?:[^"\\]|\\.)*)"'
    r"|(?P<other>\S))"
)
_CQL_FIELDS = frozenset({"tag", "title"})


class _SearchError(Exception):
    def __init__(self, message: str, position: int, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.field = field


def _parse_search(query: str) -> list[tuple[str, str]]:
    """``tag = "x"`` and ``title = "x"`` clauses joined by ``AND``, as (field, value)."""
    tokens = []
    for match in _CQL_TOKEN.finditer(query):
        kind = match.lastgroup or "other"
        tokens.append((kind, match.group(kind), match.start(kind)))
    clauses: list[tuple[str, str]] = []
    at = 0
    while True:
        if len(tokens) < at + 3:
            position = tokens[at][2] if at < len(tokens) else len(query)
            raise _SearchError("incomplete condition", position)
        (field_kind, field, field_at), (op_kind, op, op_at), (value_kind, value, value_at) = tokens[
            at : at + 3
        ]
        if field_kind != "word" or field not in _CQL_FIELDS:
            raise _SearchError(f"the fake supports only tag and title, not {field}", field_at)
        if op_kind != "op" or op != "=":
            raise _SearchError(f"the fake supports only =, not {op}", op_at, field)
        if value_kind != "string":
            raise _SearchError("expected a quoted string", value_at, field)
        clauses.append((field, re.sub(r"\\(.)", r"\1", value)))
        at += 3
        if at == len(tokens):
            return clauses
        kind, word, word_at = tokens[at]
        if kind != "word" or word.upper() != "AND":
            raise _SearchError(f"the fake supports only AND, not {word}", word_at)
        at += 1


# --- HTTP -------------------------------------------------------------------------------------


@attrs.frozen
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}"]
        if self.status not in (204, 304):
            lines += [f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _json_response(document: object, status: int = 200) -> _Response:
    # like serde_json: compact, and object keys in order
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _Response(status, body.encode())


def _u32_param(query: Mapping[str, str], name: str, default: int) -> int:
    # the server falls back to the default for anything that is not a number
    value = _parse_uint(query.get(name, ""), 32)
    return default if value is None else value


def _path_id(segment: str, what: str) -> int:
    value = _parse_uint(segment, 64)
    if value is None:
        raise _invalid(f"invalid {what}")
    return value


@attrs.frozen
class _Request:
    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


async def _read_request(stream: anyio.abc.SocketStream) -> _Request | None:
    """One HTTP/1.1 request, or None if the client went away or sent something else."""
    buffered = BufferedByteReceiveStream(stream)
    try:
        head = await buffered.receive_until(b"\r\n\r\n", 65536)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = _parse_uint(headers.get("content-length", "0"), 32)
        if length is None or "transfer-encoding" in headers:
            return None
        body = await buffered.receive_exactly(length) if length else b""
    except (ValueError, anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
        return None
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return None
    return _Request(method, target, headers, body)


# --- the server -------------------------------------------------------------------------------


class FakeCxdb:
    """A CXDB server in this process: ``async with FakeCxdb() as server: ...``.

    It serves in a task group until the ``async with`` block exits, so enter and exit it in
    one task: not in a pytest-asyncio async fixture, whose setup and teardown run in
    different tasks. Ports 0 take any free port; the chosen ones are in ``binary_port`` and
    ``http_port`` once entered. With ``data_dir`` the state is loaded from, and saved to,
    ``data_dir/cxdb-fake.msgpack``.
    """

    def __init__(
        self, *, binary_port: int = 0, http_port: int = 0, data_dir: Path | None = None
    ) -> None:
        self.binary_port = binary_port
        self.http_port = http_port
        self._data_file = data_dir / _DATA_FILE if data_dir is not None else None
        self._turns: dict[int, FakeTurn] = {}
        # in order of last activity: the listing's tie-break within one millisecond
        self._contexts: dict[int, FakeContext] = {}
        self._blobs: dict[bytes, bytes] = {}
        self._fs_roots: dict[int, bytes] = {}
        self._registry = _Registry()
        self._next_turn_id = 1
        self._next_context_id = 1
        self._lineage_roots: dict[int, int] = {}
        self._root_metadata: dict[int, _Metadata] = {}
        self._sessions: dict[int, _Session] = {}
        self._context_sessions: dict[int, int] = {}
        self._next_session_id = 1
        self._requests: Counter[int] = Counter()
        self._max_in_flight = 0
        self._connection_errors: list[str] = []
        self._drop_before: set[int] = set()
        self._drop_after: set[int] = set()
        self._corrupt_reply: set[int] = set()
        self._exit_stack: AsyncExitStack | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._serving: _Serving | None = None

    @property
    def url(self) -> str:
        return f"cxdb://{_HOST}:{self.binary_port}?http={_HOST}:{self.http_port}"

    # -- introspection

    @property
    def turns(self) -> Mapping[int, FakeTurn]:
        return MappingProxyType(self._turns)

    @property
    def contexts(self) -> Mapping[int, FakeContext]:
        return MappingProxyType(self._contexts)

    @property
    def blobs(self) -> Mapping[bytes, bytes]:
        return MappingProxyType(self._blobs)

    @property
    def fs_roots(self) -> Mapping[int, bytes]:
        """The fs root hash attached directly to each turn (no inheritance)."""
        return MappingProxyType(self._fs_roots)

    @property
    def bundles(self) -> Mapping[str, bytes]:
        return MappingProxyType(self._registry.bundles)

    @property
    def requests(self) -> Mapping[int, int]:
        """Binary requests received, per msg_type, including those a fault dropped."""
        return MappingProxyType(self._requests)

    @property
    def max_in_flight(self) -> int:
        """The most requests read from one connection and not yet answered (pipelining)."""
        return self._max_in_flight

    @property
    def connection_errors(self) -> Sequence[str]:
        """Why the server closed each connection it closed, in order (the server's log)."""
        return tuple(self._connection_errors)

    # -- fault injection

    def drop_before(self, msg_type: int) -> None:
        """Close the connection on the next request of this type, before processing it."""
        self._drop_before.add(msg_type)

    def drop_after(self, msg_type: int) -> None:
        """Process the next request of this type, then close the connection without a reply."""
        self._drop_after.add(msg_type)

    def corrupt_reply(self, msg_type: int) -> None:
        """Process the next request of this type, and answer it with the right header and a
        payload of 0xFF bytes one longer than the true reply."""
        self._corrupt_reply.add(msg_type)

    async def restart(self) -> None:
        """Close every connection and both listeners, keep the data, and listen again on the
        same ports: a patched server restarting. Sessions start again from 1."""
        assert self._serving is not None, "restart() needs a running server"
        self._serving.scope.cancel()
        await self._serving.stopped.wait()
        self._sessions.clear()
        self._context_sessions.clear()
        self._next_session_id = 1
        await self._listen()

    # -- lifecycle

    async def __aenter__(self) -> FakeCxdb:
        if self._data_file is not None and await anyio.Path(self._data_file).exists():
            self._load(await anyio.Path(self._data_file).read_bytes())
        async with AsyncExitStack() as stack:
            self._tasks = await stack.enter_async_context(anyio.create_task_group())
            await self._listen()
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        assert self._exit_stack is not None
        self._tasks.cancel_scope.cancel()
        # The block's own exception is not handed to the task group, which would wrap it in
        # an ExceptionGroup: a failing assertion in a test stays a plain AssertionError.
        await self._exit_stack.aclose()
        if self._data_file is not None:
            state = self._dump()
            await anyio.to_thread.run_sync(_write_atomically, self._data_file, state)

    async def _listen(self) -> None:
        assert self._tasks is not None
        async with AsyncExitStack() as stack:
            binary = await anyio.create_tcp_listener(local_host=_HOST, local_port=self.binary_port)
            stack.push_async_callback(binary.aclose)
            http = await anyio.create_tcp_listener(local_host=_HOST, local_port=self.http_port)
            stack.pop_all()
        self.binary_port = binary.extra(SocketAttribute.local_port)
        self.http_port = http.extra(SocketAttribute.local_port)
        self._serving = await self._tasks.start(self._serve, binary, http)

    async def _serve(
        self,
        binary: anyio.abc.Listener[anyio.abc.SocketStream],
        http: anyio.abc.Listener[anyio.abc.SocketStream],
        *,
        task_status: anyio.abc.TaskStatus[_Serving],
    ) -> None:
        serving = _Serving(anyio.CancelScope(), anyio.Event())
        task_status.started(serving)
        try:
            with serving.scope:
                async with binary, http, anyio.create_task_group() as connections:
                    connections.start_soon(binary.serve, self._serve_binary, connections)
                    connections.start_soon(http.serve, self._serve_http, connections)
        finally:
            serving.stopped.set()

    # -- binary protocol: connections

    async def _serve_binary(self, stream: anyio.abc.SocketStream) -> None:
        address = stream.extra(SocketAttribute.remote_address)
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else address
        now = _now_ms()
        session = _Session(self._next_session_id, peer, now, now)
        self._next_session_id += 1
        self._sessions[session.session_id] = session
        connection = _Connection()
        frames_in, frames_out = anyio.create_memory_object_stream[_Frame | str](math.inf)
        async with stream, anyio.create_task_group() as tasks:
            tasks.start_soon(self._receive_frames, stream, frames_in, connection)
            with frames_out:
                hangup = await self._answer_frames(stream, frames_out, session, connection)
                tasks.cancel_scope.cancel()
        if hangup is None:
            self._end_session(session)
        else:
            # as the real server: a session closed on an error is never unregistered
            self._connection_errors.append(hangup)

    async def _receive_frames(
        self,
        stream: anyio.abc.SocketStream,
        frames: MemoryObjectSendStream[_Frame | str],
        connection: _Connection,
    ) -> None:
        # Every complete frame in a chunk is queued before reading again, so requests the
        # client wrote together count as in flight together.
        buffer = bytearray()
        with frames:
            while True:
                try:
                    buffer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    if buffer:
                        frames.send_nowait("truncated frame")
                    return
                while len(buffer) >= _HEADER.size:
                    length, msg_type, flags, req_id = _HEADER.unpack_from(buffer)
                    if length > _MAX_PAYLOAD:
                        frames.send_nowait(f"payload length {length} over 64 MiB")
                        return
                    end = _HEADER.size + length
                    if len(buffer) < end:
                        break
                    frame = _Frame(msg_type, flags, req_id, bytes(buffer[_HEADER.size : end]))
                    del buffer[:end]
                    connection.received += 1
                    in_flight = connection.received - connection.answered
                    self._max_in_flight = max(self._max_in_flight, in_flight)
                    frames.send_nowait(frame)

    async def _answer_frames(
        self,
        stream: anyio.abc.SocketStream,
        frames: MemoryObjectReceiveStream[_Frame | str],
        session: _Session,
        connection: _Connection,
    ) -> str | None:
        """Answer requests in order; the reason the server hangs up, or None if the client
        closed the connection."""
        async for frame in frames:
            if isinstance(frame, str):
                return frame
            self._requests[frame.msg_type] += 1
            session.last_activity_at = _now_ms()
            if _take_fault(self._drop_before, frame.msg_type):
                return f"fault: drop before msg_type {frame.msg_type}"
            try:
                reply_type, reply = self._answer(session, frame)
            except _Hangup as hangup:
                return hangup.reason
            if _take_fault(self._drop_after, frame.msg_type):
                return f"fault: drop after msg_type {frame.msg_type}"
            if _take_fault(self._corrupt_reply, frame.msg_type):
                reply = b"\xff" * (len(reply) + 1)
            try:
                await stream.send(_HEADER.pack(len(reply), reply_type, 0, frame.req_id) + reply)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            connection.answered += 1
        return None

    def _end_session(self, session: _Session) -> None:
        self._sessions.pop(session.session_id, None)
        for context_id in session.contexts:
            self._context_sessions.pop(context_id, None)

    def _touch_context(self, session: _Session, context_id: int) -> None:
        self._context_sessions[context_id] = session.session_id
        if context_id not in session.contexts:
            session.contexts.append(context_id)

    # -- binary protocol: messages

    def _answer(self, session: _Session, frame: _Frame) -> tuple[int, bytes]:
        fields = _Fields(frame.payload)
        match frame.msg_type:
            case _MsgType.HELLO:
                reply = self._hello(session, fields)
            case _MsgType.CTX_CREATE | _MsgType.CTX_FORK:  # the server does the same for both
                reply = self._create_context(session, fields)
            case _MsgType.GET_HEAD:
                reply = self._get_head(fields)
            case _MsgType.APPEND_TURN:
                reply = self._append(session, frame.flags, fields)
            case _MsgType.GET_LAST:
                reply = self._get_last(fields)
            case _MsgType.GET_BLOB:
                reply = self._get_blob(fields)
            case _MsgType.ATTACH_FS:
                reply = self._attach_fs(fields)
            case _MsgType.PUT_BLOB:
                reply = self._put_blob(fields)
            case _:
                detail = b"unknown msg_type"
                return _MsgType.ERROR, struct.pack("<II", 422, len(detail)) + detail
        return frame.msg_type, reply

    def _hello(self, session: _Session, fields: _Fields) -> bytes:
        if fields.remaining:
            fields.u16()  # protocol version: not checked
            tag = fields.text(fields.u16())
            fields.text(fields.u32())  # metadata JSON: must be UTF-8, otherwise unused
            fields.end()
            session.client_tag = tag
        return struct.pack("<QH", session.session_id, 1)

    def _create_context(self, session: _Session, fields: _Fields) -> bytes:
        base = fields.u64()
        fields.end()
        depth = 0
        if base:
            turn = self._turns.get(base)
            if turn is None:
                raise _Hangup(f"base turn {base} not found")
            depth = turn.depth
        context = FakeContext(self._next_context_id, base, depth, _now_ms())
        self._next_context_id += 1
        self._contexts[context.context_id] = context
        self._touch_context(session, context.context_id)
        return struct.pack("<QQI", context.context_id, base, depth)

    def _context(self, context_id: int) -> FakeContext:
        context = self._contexts.get(context_id)
        if context is None:
            raise _Hangup(f"context {context_id} not found")
        return context

    def _get_head(self, fields: _Fields) -> bytes:
        context = self._context(fields.u64())
        fields.end()
        return struct.pack("<QQI", context.context_id, context.head_turn_id, context.head_depth)

    def _append(self, session: _Session, flags: int, fields: _Fields) -> bytes:
        context_id = fields.u64()
        parent_id = fields.u64()
        type_id = fields.text(fields.u32())
        type_version = fields.u32()
        encoding = fields.u32()
        compression = fields.u32()
        uncompressed_len = fields.u32()
        declared_hash = fields.take(32)
        data = fields.take(fields.u32())
        fields.take(fields.u32())  # idempotency key: parsed and ignored, as the server does
        fs_root = fields.take(32) if flags & _FS_ROOT_FLAG else None
        fields.end()
        if compression == 1:
            raise _Hangup("zstd payloads are not supported by the fake")
        if compression != 0:
            raise _Hangup(f"unsupported compression: {compression}")
        if len(data) != uncompressed_len:
            raise _Hangup("uncompressed length mismatch")
        if content_hash(data) != declared_hash:
            raise _Hangup("content hash mismatch")
        self._blobs.setdefault(declared_hash, data)
        if parent_id == 0:
            parent_id = self._context(context_id).head_turn_id
        depth = 0
        if parent_id:
            parent = self._turns.get(parent_id)
            if parent is None:
                raise _Hangup(f"parent turn {parent_id} not found")
            depth = parent.depth + 1
        now = _now_ms()
        turn = FakeTurn(
            turn_id=self._next_turn_id,
            parent_turn_id=parent_id,
            depth=depth,
            type_id=type_id,
            type_version=type_version,
            encoding=encoding,
            compression=compression,
            uncompressed_len=uncompressed_len,
            content_hash=declared_hash,
            created_at_ms=now,
        )
        self._add_turn(turn, data)
        # the head record is replaced, so the context's time becomes this append's
        self._contexts.pop(context_id, None)
        self._contexts[context_id] = FakeContext(context_id, turn.turn_id, depth, now)
        self._next_context_id = max(self._next_context_id, context_id + 1)
        self._touch_context(session, context_id)
        if fs_root is not None:
            self._attach(turn.turn_id, fs_root)
        return struct.pack("<QQI", context_id, turn.turn_id, depth) + declared_hash

    def _add_turn(self, turn: FakeTurn, payload: bytes) -> None:
        self._turns[turn.turn_id] = turn
        self._next_turn_id = max(self._next_turn_id, turn.turn_id + 1)
        if turn.depth == 0:
            self._lineage_roots[turn.turn_id] = turn.turn_id
            metadata = _metadata(payload)
            if metadata is not None:
                self._root_metadata[turn.turn_id] = metadata
        else:
            self._lineage_roots[turn.turn_id] = self._lineage_roots[turn.parent_turn_id]

    def _get_last(self, fields: _Fields) -> bytes:
        context = self._context(fields.u64())
        limit = fields.u32()
        include_payload = fields.u32() != 0
        fields.end()
        items = [struct.pack("<I", 0)]
        count = 0
        for turn in self._history(context.head_turn_id, limit):
            type_id = turn.type_id.encode()
            compression, uncompressed_len = turn.compression, turn.uncompressed_len
            payload = b""
            if include_payload:
                data = self._blobs[turn.content_hash]
                compression, uncompressed_len = 0, len(data)
                payload = struct.pack("<I", len(data)) + data
            items.append(
                struct.pack("<QQII", turn.turn_id, turn.parent_turn_id, turn.depth, len(type_id))
                + type_id
                + struct.pack(
                    "<IIII", turn.type_version, turn.encoding, compression, uncompressed_len
                )
                + turn.content_hash
                + payload
            )
            count += 1
        items[0] = struct.pack("<I", count)
        return b"".join(items)

    def _history(self, turn_id: int, limit: int) -> list[FakeTurn]:
        """Up to ``limit`` turns ending at ``turn_id``, oldest first."""
        chain: list[FakeTurn] = []
        while turn_id and len(chain) < limit:
            turn = self._turns[turn_id]
            chain.append(turn)
            turn_id = turn.parent_turn_id
        chain.reverse()
        return chain

    def _get_blob(self, fields: _Fields) -> bytes:
        if fields.remaining != 32:
            raise _Hangup(f"GET_BLOB needs 32 bytes, got {fields.remaining}")
        data = self._blobs.get(fields.take(32))
        if data is None:
            raise _Hangup("blob not found")
        return struct.pack("<I", len(data)) + data

    def _put_blob(self, fields: _Fields) -> bytes:
        declared_hash = fields.take(32)
        data = fields.take(fields.u32())
        fields.end()
        if content_hash(data) != declared_hash:
            raise _Hangup("blob hash mismatch")
        was_new = declared_hash not in self._blobs
        self._blobs.setdefault(declared_hash, data)
        return declared_hash + bytes([was_new])

    def _attach_fs(self, fields: _Fields) -> bytes:
        turn_id = fields.u64()
        root = fields.take(32)
        fields.end()
        if turn_id not in self._turns:
            raise _Hangup(f"turn {turn_id} not found")
        self._attach(turn_id, root)
        return struct.pack("<Q", turn_id) + root

    def _attach(self, turn_id: int, root: bytes) -> None:
        if root not in self._blobs:
            raise _Hangup("fs root tree blob not found")
        self._fs_roots[turn_id] = root

    # -- HTTP

    async def _serve_http(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = await _read_request(stream)
            if request is None:
                response = _json_response({"error": {"code": 400, "message": "bad request"}}, 400)
            else:
                response = self._respond(request)
            try:
                await stream.send(response.encode())
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    def _respond(self, request: _Request) -> _Response:
        target = urllib.parse.urlsplit(request.target)
        # segments stay percent-encoded, as the server compares them (reference §0 #9)
        segments = target.path.removeprefix("/").split("/")
        query = dict(urllib.parse.parse_qsl(target.query, keep_blank_values=True))
        try:
            match (request.method, segments):
                case ("GET", ["healthz"]):
                    return _Response(200, b"ok", "text/plain")
                case ("GET", ["v1", "contexts"]):
                    return self._list_contexts(query)
                case ("GET", ["v1", "contexts", "search"]):
                    return self._search(query)
                case ("GET", ["v1", "contexts", context_id, "turns"]):
                    return self._list_turns(_path_id(context_id, "context_id"), query)
                case ("GET", ["v1", "contexts", context_id, "provenance"]):
                    return self._get_provenance(_path_id(context_id, "context_id"))
                case ("PUT", ["v1", "registry", "bundles", _]):
                    return self._put_bundle(request.body)
                case ("GET", ["v1", "registry", "bundles", bundle_id]):
                    return self._get_bundle(bundle_id, request.headers.get("if-none-match"))
                case ("GET", ["v1", "registry", "types", type_id, "versions", version]):
                    return self._get_type_version(type_id, version)
            raise _HttpError(404, "route")
        except _HttpError as error:
            return _json_response(
                {"error": {"code": error.status, "message": error.message}}, error.status
            )

    def _metadata_of(self, context: FakeContext) -> _Metadata | None:
        if not context.head_turn_id:
            return None
        return self._root_metadata.get(self._lineage_roots[context.head_turn_id])

    def _session_of(self, context_id: int) -> _Session | None:
        session_id = self._context_sessions.get(context_id)
        return self._sessions.get(session_id) if session_id is not None else None

    def _provenance_json(
        self, metadata: _Metadata | None, session: _Session | None
    ) -> dict[str, Any] | None:
        if metadata is None or metadata.provenance is None:
            return None
        provenance = dict(metadata.provenance)
        if provenance["client_address"] is None and session is not None:
            provenance["client_address"] = session.peer_addr
        return provenance

    def _context_json(self, context: FakeContext) -> dict[str, Any]:
        return {
            "context_id": str(context.context_id),
            "head_turn_id": str(context.head_turn_id),
            "head_depth": context.head_depth,
            "created_at_unix_ms": context.created_at_ms,
            "is_live": self._session_of(context.context_id) is not None,
        }

    def _list_contexts(self, query: Mapping[str, str]) -> _Response:
        limit = _u32_param(query, "limit", 20)
        tag_filter = query.get("tag")
        include_provenance = query.get("include_provenance") == "1"
        # newest activity first; within one millisecond, the later append first
        recent = sorted(
            reversed(self._contexts.values()), key=lambda c: c.created_at_ms, reverse=True
        )
        rows = []
        for context in recent[:limit]:
            session = self._session_of(context.context_id)
            metadata = self._metadata_of(context)
            client_tag = metadata.client_tag if metadata is not None else None
            if client_tag is None and session is not None:
                client_tag = session.client_tag
            if tag_filter is not None and (client_tag or "") != tag_filter:
                continue
            row = self._context_json(context)
            if client_tag:
                row["client_tag"] = client_tag
            if session is not None:
                row["session_id"] = str(session.session_id)
                row["last_activity_at"] = session.last_activity_at
            provenance = self._provenance_json(metadata, session) if include_provenance else None
            if provenance is not None:
                row["provenance"] = provenance
            rows.append(row)
        sessions = [
            {
                "session_id": str(session.session_id),
                "client_tag": session.client_tag,
                "connected_at": session.connected_at,
                "last_activity_at": session.last_activity_at,
                "context_count": len(session.contexts),
                "peer_addr": session.peer_addr,
            }
            for session in self._sessions.values()
        ]
        tags = sorted({session.client_tag for session in self._sessions.values()} - {""})
        return _json_response(
            {"contexts": rows, "count": len(rows), "active_sessions": sessions, "active_tags": tags}
        )

    def _search(self, query: Mapping[str, str]) -> _Response:
        started = time.perf_counter()
        text = query.get("q", "")
        if not text:
            return _json_response({"error": "Missing required 'q' parameter"}, 400)
        try:
            clauses = _parse_search(text)
        except _SearchError as error:
            return _json_response(
                {
                    "error": error.message,
                    "error_type": "Unsupported",
                    "position": error.position,
                    "field": error.field,
                },
                400,
            )
        matches = []
        for context_id in sorted(self._contexts, reverse=True):
            context = self._contexts[context_id]
            metadata = self._metadata_of(context)
            if metadata is not None and all(
                (metadata.client_tag if field == "tag" else metadata.title) == value
                for field, value in clauses
            ):
                matches.append((context, metadata))
        limit = _parse_uint(query.get("limit", ""), 32)
        rows = []
        for context, metadata in matches[:limit]:
            row = self._context_json(context)
            if metadata.client_tag is not None:
                row["client_tag"] = metadata.client_tag
            if metadata.title is not None:
                row["title"] = metadata.title
            rows.append(row)
        return _json_response(
            {
                "contexts": rows,
                "total_count": len(matches),
                "elapsed_ms": int((time.perf_counter() - started) * 1000),
                "query": text,
            }
        )

    def _get_provenance(self, context_id: int) -> _Response:
        context = self._contexts.get(context_id)
        metadata = self._metadata_of(context) if context is not None else None
        provenance = self._provenance_json(metadata, self._session_of(context_id))
        return _json_response({"context_id": str(context_id), "provenance": provenance})

    def _list_turns(self, context_id: int, query: Mapping[str, str]) -> _Response:
        limit = _u32_param(query, "limit", 64)
        before = _parse_uint(query.get("before_turn_id", ""), 64) or 0
        view = query.get("view", "typed")
        mode = query.get("type_hint_mode", "inherit")
        options = _RenderOptions.from_query(query)
        projection = _Projection(self._registry, options)
        context = self._contexts.get(context_id)
        if context is None:
            raise _HttpError(404, "context not found")
        start = context.head_turn_id
        if before:
            anchor = self._turns.get(before)
            if anchor is None:
                raise _HttpError(404, "turn not found")
            start = anchor.parent_turn_id
        turns = self._history(start, limit)
        rows = []
        for turn in turns:
            payload = self._blobs[turn.content_hash]
            row: dict[str, Any] = {
                "turn_id": str(turn.turn_id),
                "parent_turn_id": str(turn.parent_turn_id),
                "depth": turn.depth,
                "declared_type": {"type_id": turn.type_id, "type_version": turn.type_version},
            }
            if view in ("typed", "both"):
                row.update(self._typed(turn, payload, mode, query, projection))
            if view in ("raw", "both"):
                row.update(
                    {
                        "content_hash_b3": turn.content_hash.hex(),
                        "encoding": turn.encoding,
                        "compression": 0,
                        "uncompressed_len": len(payload),
                    }
                )
                key = {"hex": "bytes_hex", "len_only": "bytes_len"}.get(
                    options.bytes_render, "bytes_b64"
                )
                row[key] = projection.render_bytes(payload)
            rows.append(row)
        return _json_response(
            {
                "meta": {
                    "context_id": str(context_id),
                    "head_turn_id": str(context.head_turn_id),
                    "head_depth": context.head_depth,
                    "registry_bundle_id": self._registry.last_bundle_id,
                },
                "turns": rows,
                "next_before_turn_id": str(turns[0].turn_id) if turns else None,
            }
        )

    def _typed(
        self,
        turn: FakeTurn,
        payload: bytes,
        mode: str,
        query: Mapping[str, str],
        projection: _Projection,
    ) -> dict[str, Any]:
        type_id, version = turn.type_id, turn.type_version
        if mode == "explicit":
            as_version = _parse_uint(query.get("as_type_version", ""), 32)
            if "as_type_id" not in query:
                raise _invalid("as_type_id required")
            if as_version is None:
                raise _invalid("as_type_version required")
            type_id, version = query["as_type_id"], as_version
        elif mode == "latest":
            latest = self._registry.latest_version(type_id)
            if latest is None:
                raise _HttpError(424, "type descriptor")
            version = latest
        descriptor = self._registry.descriptor(type_id, version)
        if descriptor is None:
            raise _HttpError(424, "type descriptor")
        try:
            value = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception as error:
            raise _invalid(f"msgpack decode failed: {error}") from None
        if not isinstance(value, dict):
            raise _invalid("payload is not a msgpack map")
        data, unknown = projection.project(value, descriptor.fields)
        typed: dict[str, Any] = {
            "decoded_as": {"type_id": type_id, "type_version": version},
            "data": data,
        }
        if query.get("include_unknown") == "1":
            typed["unknown"] = unknown
        return typed

    def _put_bundle(self, body: bytes) -> _Response:
        bundle_id, created = self._registry.put(body)
        if created:
            return _json_response({"bundle_id": bundle_id}, 201)
        return _Response(204)

    def _get_bundle(self, bundle_id: str, if_none_match: str | None) -> _Response:
        body = self._registry.bundles.get(bundle_id)
        if body is None:
            raise _HttpError(404, "bundle")
        etag = f'"{content_hash(body).hex()}"'
        if if_none_match == etag:
            return _Response(304)
        return _Response(200, body, headers=(("ETag", etag),))

    def _get_type_version(self, type_id: str, version_text: str) -> _Response:
        version = _parse_uint(version_text, 32)
        if version is None:
            raise _invalid("invalid version")
        descriptor = self._registry.descriptor(type_id, version)
        if descriptor is None:
            raise _HttpError(404, "type version")
        shown: dict[str, Any] = {
            "fields": {str(tag): field.to_json() for tag, field in descriptor.fields.items()}
        }
        if descriptor.renderer is not None:
            shown["renderer"] = dict(descriptor.renderer)
        return _json_response(shown)

    # -- persistence (--data)

    def _dump(self) -> bytes:
        state = {
            "turns": [attrs.astuple(turn) for turn in self._turns.values()],
            "contexts": [attrs.astuple(context) for context in self._contexts.values()],
            "blobs": list(self._blobs.items()),
            "fs_roots": list(self._fs_roots.items()),
            "bundles": list(self._registry.bundles.values()),
        }
        packed: bytes = msgpack.packb(state, use_bin_type=True)
        return packed

    def _load(self, data: bytes) -> None:
        state = msgpack.unpackb(data, raw=False, strict_map_key=False)
        self._blobs = {bytes(key): bytes(value) for key, value in state["blobs"]}
        for row in sorted(state["turns"]):
            turn = FakeTurn(*row)
            self._add_turn(turn, self._blobs[turn.content_hash])
        for row in state["contexts"]:
            context = FakeContext(*row)
            self._contexts[context.context_id] = context
            self._next_context_id = max(self._next_context_id, context.context_id + 1)
        self._fs_roots = {turn_id: bytes(root) for turn_id, root in state["fs_roots"]}
        for bundle in state["bundles"]:
            self._registry.put(bundle)


def _take_fault(pending: set[int], msg_type: int) -> bool:
    if msg_type in pending:
        pending.discard(msg_type)
        return True
    return False


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


async def _serve_until_signalled(
    ports_file: Path, data_dir: Path | None, binary_port: int, http_port: int
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with FakeCxdb(
            binary_port=binary_port, http_port=http_port, data_dir=data_dir
        ) as server:
            ports = json.dumps(
                {
                    "binary_port": server.binary_port,
                    "http_port": server.http_port,
                    "url": server.url,
                }
            )
            await anyio.to_thread.run_sync(_write_atomically, ports_file, ports.encode())
            print(ports, flush=True)
            async for _ in signals:
                break


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m orchestra.store.cxdb.fake``: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m orchestra.store.cxdb.fake",
        description="A fake CXDB server for tests: binary protocol and HTTP on 127.0.0.1.",
    )
    parser.add_argument("--ports-file", type=Path, required=True, help="where to write the ports")
    parser.add_argument("--data", type=Path, help="keep the state in this directory")
    parser.add_argument("--binary-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    args = parser.parse_args(argv)
    anyio.run(_serve_until_signalled, args.ports_file, args.data, args.binary_port, args.http_port)


if __name__ == "__main__":
    main(sys.argv[1:])
