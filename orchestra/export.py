"""Copying a session from one store to another: a local run shared on a CXDB server, or a
server's session brought back into an embedded store.

The copy is turn for turn: the same type ids, versions and payload bytes, in the same
order, each turn the parent of the next, in a new context of the target store. A forked
session (``orchestra replay``) arrives as one straight history, its ancestors' turns
included. The blobs its turns name (the DOT source ``SessionStarted`` keeps) are copied
first, so the copy can be resumed on the target like the original.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestra.engine.session import SESSION_STARTED, decode, session_history
from orchestra.errors import StoreError
from orchestra.store.base import Store, TurnRecord

__all__ = ["export_session"]


async def export_session(source: Store, session_id: str, target: Store) -> str:
    """Copy ``session_id`` of ``source`` into ``target``; returns the copy's session id.

    Everything is read before anything is written, so an unknown session or an unreadable
    one leaves the target untouched. Raises ``StoreError`` (``ContextNotFound`` for an
    unknown session); if writing fails part way, the message names the incomplete copy."""
    turns = await _history(source, session_id)
    blobs = {digest: await source.get_blob(digest) for digest in _referenced_blobs(turns)}
    for digest, data in blobs.items():
        if await target.put_blob(data) != digest:
            raise StoreError(
                f"{target.location}: stored blob {digest.hex()} under another hash; "
                "the session was not copied"
            )
    head = await target.create_context()
    parent = 0
    for count, turn in enumerate(turns):
        try:
            copied = await target.append_turn(
                head.context_id,
                turn.type_id,
                turn.type_version,
                turn.payload,
                parent_turn_id=parent,
            )
        except StoreError as err:
            raise StoreError(
                f"{err}; the copy stopped after {count} of {len(turns)} turns: session "
                f"{head.context_id} on {target.location} is incomplete, export again"
            ) from err
        parent = copied.turn_id
    return str(head.context_id)


async def _history(store: Store, session_id: str) -> Sequence[TurnRecord]:
    """Every turn of the session, oldest first, checked to be the whole chain."""
    turns = await session_history(store, session_id)
    if not turns:
        raise StoreError(
            f"session {session_id} in {store.location} has no turns yet; nothing to export"
        )
    if turns[0].depth != 0 or len(turns) != turns[-1].depth + 1:
        raise StoreError(
            f"session {session_id} in {store.location}: read {len(turns)} turns of "
            f"{turns[-1].depth + 1}; its history is incomplete"
        )
    return turns


def _referenced_blobs(turns: Sequence[TurnRecord]) -> list[bytes]:
    """The hashes of the blobs the turns name, in the order they are named."""
    hashes: list[bytes] = []
    for turn in turns:
        if turn.type_id == SESSION_STARTED:
            blob = decode(turn).get("dot_blob")
            if blob and bytes(blob) not in hashes:
                hashes.append(bytes(blob))
    return hashes
