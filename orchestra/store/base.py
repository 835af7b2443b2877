"""The ``Store`` protocol: durable state in CXDB's model (DESIGN.md §3).

A **context** is a mutable head pointer; a **turn** is an immutable record with a parent, a
depth, a declared type and a msgpack payload; payloads live in a content-addressed blob
store keyed by BLAKE3. A session is a context. Appending moves the head; forking makes a new
context whose head is an existing turn (O(1), nothing copied). The history of a context is
the chain of parents from its head, so a fork shares its ancestors' turns.

Both the embedded SQLite store and the CXDB client implement this protocol and pass one
conformance suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs
import blake3
import msgpack

__all__ = ["ContextHead", "ContextSummary", "Store", "TurnRecord", "content_hash", "pack", "unpack"]


def content_hash(data: bytes) -> bytes:
    """BLAKE3-256 of ``data``: the key of a blob and of a turn's payload."""
    return blake3.blake3(data).digest()


def pack(value: Any) -> bytes:
    # default=str: a context value msgpack cannot hold is kept as its text, not lost
    return msgpack.packb(value, use_bin_type=True, default=str)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


@attrs.frozen
class ContextHead:
    context_id: int
    head_turn_id: int
    head_depth: int


@attrs.frozen
class TurnRecord:
    turn_id: int
    parent_turn_id: int
    depth: int
    type_id: str
    type_version: int
    payload: bytes = attrs.field(repr=False)
    content_hash: bytes = attrs.field(repr=False)
    created_at_ms: int

    def decode(self) -> Any:
        return unpack(self.payload)


@attrs.frozen
class ContextSummary:
    context_id: int
    head_turn_id: int
    head_depth: int
    #: last activity (CXDB rewrites a context's time on every append)
    updated_at_ms: int
    title: str = ""
    labels: tuple[str, ...] = ()
    client_tag: str = ""


@runtime_checkable
class Store(Protocol):
    """Durable, append-only session state. Every method is async and safe to call from
    one task at a time per store object."""

    @property
    def location(self) -> str:
        """Where the state lives: a file path or a URL, for messages."""
        ...

    async def create_context(self, base_turn_id: int = 0) -> ContextHead: ...

    async def fork_context(self, base_turn_id: int) -> ContextHead: ...

    async def get_head(self, context_id: int) -> ContextHead: ...

    async def append_turn(
        self,
        context_id: int,
        type_id: str,
        type_version: int,
        payload: bytes,
        *,
        parent_turn_id: int = 0,
        expect_head: int | None = None,
    ) -> TurnRecord:
        """Append a turn after ``parent_turn_id`` (default: the head) and make it the head.
        With ``expect_head``, only if the head is that turn, else ``HeadMoved``: atomically
        on the embedded store, checked just before the append on CXDB (whose protocol has
        no compare-and-append)."""
        ...

    async def get_last(self, context_id: int, limit: int = 64) -> Sequence[TurnRecord]:
        """The last ``limit`` turns of the context's history, oldest first."""
        ...

    async def put_blob(self, data: bytes) -> bytes: ...

    async def get_blob(self, blob_hash: bytes) -> bytes: ...

    async def list_contexts(self) -> Sequence[ContextSummary]:
        """Every context, most recently active first."""
        ...

    async def close(self) -> None: ...
