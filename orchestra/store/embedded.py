"""The embedded store: CXDB's model in one SQLite file (WAL), no server needed.

Turns and contexts are rows; payloads are blobs keyed by their BLAKE3 hash and stored once.
One process writes while any number read (``orchestra status`` and ``attach`` read while
``run`` writes). Commits use WAL with ``synchronous=NORMAL``: a committed turn survives the
process being killed (not necessarily a power cut), and a torn write is rolled back by SQLite.

Blocking work runs in a worker thread, with one exception measured to matter: a small write
(a checkpoint turn, a few hundred bytes) takes 30-50 µs, less than the hop to a worker thread
and back (about 90 µs on a 2-core VM), and the engine waits for it after every node. So a
small write runs on the caller's thread, on a connection of its own whose busy timeout is
zero: if anything would make it wait (another connection or process holding SQLite's write
lock, the connection in use), it goes to the worker thread instead, where waiting is
harmless. That connection never checkpoints the WAL itself (a checkpoint syncs the disk);
every few hundred writes a passive checkpoint runs in the worker thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio.lowlevel
import anyio.to_thread

from orchestra.errors import ContextNotFound, HeadMoved, StoreError
from orchestra.store.base import (
    ContextHead,
    ContextSummary,
    TurnRecord,
    content_hash,
    unpack,
)

__all__ = ["EmbeddedStore"]

T = TypeVar("T")

SCHEMA_ID = "orchestra-store"
SCHEMA_VERSION = "1"
_METADATA_KEY = 30  # CXDB: the depth-0 turn's map key 30 holds title, labels, client tag

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (hash BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS turns (
    turn_id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    root_id INTEGER NOT NULL,
    type_id TEXT NOT NULL,
    type_version INTEGER NOT NULL,
    hash BLOB NOT NULL REFERENCES blobs(hash),
    created_ms INTEGER NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '',
    client_tag TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS contexts (
    context_id INTEGER PRIMARY KEY AUTOINCREMENT,
    head_turn_id INTEGER NOT NULL,
    head_depth INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _metadata(payload: bytes) -> tuple[str, str, str]:
    """(title, labels joined by newlines, client tag) from a depth-0 turn's payload."""
    try:
        data = unpack(payload)
    except Exception:  # a foreign payload simply has no metadata
        return "", "", ""
    meta = data.get(_METADATA_KEY) if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        return "", "", ""
    labels = meta.get(3) or []
    return (
        str(meta.get(2) or ""),
        "\n".join(str(label) for label in labels) if isinstance(labels, list) else "",
        str(meta.get(1) or ""),
    )


#: a write of at most this many payload bytes may run on the caller's thread
_INLINE_BYTES = 64 * 1024
#: inline writes between two WAL checkpoints (SQLite's own default is about 1,000 pages)
_CHECKPOINT_EVERY = 256


class _Busy(Exception):
    """The inline attempt would have had to wait."""


class EmbeddedStore:
    """A ``Store`` in an SQLite file; ``EmbeddedStore.open(path)`` creates it if needed."""

    def __init__(
        self, path: Path, connection: sqlite3.Connection, inline: sqlite3.Connection | None = None
    ) -> None:
        self._path = path
        self._db = connection  # used in worker threads, under _lock
        self._lock = threading.Lock()
        self._inline = inline  # small writes on the caller's thread, never waiting
        self._inline_lock = threading.Lock()
        self._since_checkpoint = 0

    @property
    def location(self) -> str:
        return str(self._path)

    @classmethod
    def open_sync(cls, path: str | os.PathLike[str]) -> EmbeddedStore:
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{target}: cannot open the state database: {err}") from None
        try:
            db.execute("PRAGMA busy_timeout=5000")  # first: another process may be creating it
            _use_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            _check_or_create_schema(db, target)
        except sqlite3.OperationalError as err:
            db.close()
            if "readonly" in str(err).lower() or "read-only" in str(err).lower():
                raise StoreError(
                    f"{target}: the state database cannot be written ({err}): make it, and "
                    "its directory, writable, or point --store at another path"
                ) from None
            raise StoreError(
                f"{target}: is not an Orchestra state database ({err}); move it aside, "
                "or point --store at another path"
            ) from None
        except (sqlite3.DatabaseError, UnicodeDecodeError) as err:
            db.close()
            raise StoreError(
                f"{target}: is not an Orchestra state database, or is damaged ({err}); move "
                "it aside, or point --store at another path"
            ) from None
        except StoreError:
            db.close()
            raise
        try:
            # Waits while it is set up (another process may be creating the store), then
            # never: the inline path gives way to the writer thread instead of waiting.
            inline = sqlite3.connect(
                target, check_same_thread=False, isolation_level=None, timeout=5.0
            )
            inline.execute("PRAGMA synchronous=NORMAL")
            inline.execute("PRAGMA foreign_keys=ON")
            inline.execute("PRAGMA wal_autocheckpoint=0")
            inline.execute("PRAGMA busy_timeout=0")
        except sqlite3.Error as err:
            db.close()
            raise StoreError(f"{target}: cannot open the state database: {err}") from None
        return cls(target, db, inline)

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> EmbeddedStore:
        return await anyio.to_thread.run_sync(cls.open_sync, path)

    # plumbing ------------------------------------------------------------------------------

    def _guarded(self, action: Callable[[sqlite3.Connection], T], db: sqlite3.Connection) -> T:
        try:
            return action(db)
        except sqlite3.OperationalError as err:
            if db is self._inline and err.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                raise _Busy from None
            if "full" in str(err).lower():
                raise StoreError(
                    f"{self._path}: the disk is full; nothing after the last checkpoint "
                    "was lost: free some space and resume"
                ) from None
            raise StoreError(f"{self._path}: {err}") from None
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self._path}: the state database is damaged: {err}") from None

    def _locked(self, action: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return self._guarded(action, self._db)

    async def _run(self, action: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._locked, action)

    async def _write(self, action: Callable[[sqlite3.Connection], T], size: int = 0) -> T:
        """Run ``action`` in a write transaction: inline when it is small and nothing would
        make it wait, otherwise in the worker thread (see the module's docstring)."""
        transaction = self._transaction(action)
        await anyio.lowlevel.checkpoint_if_cancelled()
        done, result = self._try_inline(transaction, size)
        if not done:
            return await self._run(transaction)
        self._since_checkpoint += 1
        if self._since_checkpoint >= _CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            await self._run(_checkpoint_wal)
        else:
            # Let other tasks run, as the hop to a thread would have: a run of fast nodes
            # must not starve its neighbours on the event loop.
            await anyio.lowlevel.cancel_shielded_checkpoint()
        return cast(T, result)

    def _try_inline(
        self, transaction: Callable[[sqlite3.Connection], T], size: int
    ) -> tuple[bool, T | None]:
        """(True, result) if the write ran here; (False, None) if it would have waited."""
        inline = self._inline
        if inline is None or size > _INLINE_BYTES or not self._inline_lock.acquire(blocking=False):
            return False, None
        try:
            return True, self._guarded(transaction, inline)
        except _Busy:
            return False, None
        finally:
            self._inline_lock.release()

    def _transaction(
        self, action: Callable[[sqlite3.Connection], T]
    ) -> Callable[[sqlite3.Connection], T]:
        def run(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = action(db)
            except BaseException:
                # SQLite has already rolled back after some errors (SQLITE_FULL among them);
                # rolling back again would hide the real error behind "no transaction".
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return run

    # contexts ------------------------------------------------------------------------------

    async def create_context(self, base_turn_id: int = 0) -> ContextHead:
        def create(db: sqlite3.Connection) -> ContextHead:
            depth = 0
            if base_turn_id:
                _check_id(base_turn_id, f"turn {base_turn_id}", self._path)
                row = db.execute(
                    "SELECT depth FROM turns WHERE turn_id = ?", (base_turn_id,)
                ).fetchone()
                if row is None:
                    raise ContextNotFound(f"turn {base_turn_id} does not exist in {self._path}")
                depth = row[0]
            cursor = db.execute(
                "INSERT INTO contexts (head_turn_id, head_depth, updated_ms) VALUES (?, ?, ?)",
                (base_turn_id, depth, _now_ms()),
            )
            return ContextHead(int(cursor.lastrowid or 0), base_turn_id, depth)

        return await self._write(create)

    async def fork_context(self, base_turn_id: int) -> ContextHead:
        return await self.create_context(base_turn_id)

    def _head(self, db: sqlite3.Connection, context_id: int) -> ContextHead:
        _check_id(context_id, f"session {context_id}", self._path)
        row = db.execute(
            "SELECT head_turn_id, head_depth FROM contexts WHERE context_id = ?", (context_id,)
        ).fetchone()
        if row is None:
            raise ContextNotFound(f"session {context_id} does not exist in {self._path}")
        return ContextHead(context_id, row[0], row[1])

    async def get_head(self, context_id: int) -> ContextHead:
        return await self._run(lambda db: self._head(db, context_id))

    # turns ---------------------------------------------------------------------------------

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
        digest = content_hash(payload)

        def append(db: sqlite3.Connection) -> TurnRecord:
            head = self._head(db, context_id)
            if expect_head is not None and head.head_turn_id != expect_head:
                raise HeadMoved(
                    f"context {context_id}: head is turn {head.head_turn_id}, not {expect_head}",
                    head.head_turn_id,
                )
            parent = parent_turn_id or head.head_turn_id
            if parent:
                _check_id(parent, f"parent turn {parent}", self._path)
                row = db.execute(
                    "SELECT depth, root_id FROM turns WHERE turn_id = ?", (parent,)
                ).fetchone()
                if row is None:
                    raise ContextNotFound(f"parent turn {parent} does not exist in {self._path}")
                depth, root = row[0] + 1, row[1]
            else:
                depth, root = 0, 0
            title, labels, tag = _metadata(payload) if depth == 0 else ("", "", "")
            db.execute("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", (digest, payload))
            created = _now_ms()
            cursor = db.execute(
                "INSERT INTO turns (parent_id, depth, root_id, type_id, type_version, hash,"
                " created_ms, title, labels, client_tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (parent, depth, root, type_id, type_version, digest, created, title, labels, tag),
            )
            turn_id = int(cursor.lastrowid or 0)
            if depth == 0:
                db.execute("UPDATE turns SET root_id = ? WHERE turn_id = ?", (turn_id, turn_id))
            db.execute(
                "UPDATE contexts SET head_turn_id = ?, head_depth = ?, updated_ms = ?"
                " WHERE context_id = ?",
                (turn_id, depth, created, context_id),
            )
            return TurnRecord(
                turn_id, parent, depth, type_id, type_version, payload, digest, created
            )

        return await self._write(append, len(payload))

    async def get_last(self, context_id: int, limit: int = 64) -> Sequence[TurnRecord]:
        def last(db: sqlite3.Connection) -> list[TurnRecord]:
            head = self._head(db, context_id)
            if not head.head_turn_id or limit <= 0:
                return []
            rows = db.execute(
                """
                WITH RECURSIVE chain(turn_id, n) AS (
                    SELECT ?, 1
                    UNION ALL
                    SELECT t.parent_id, c.n + 1 FROM turns t JOIN chain c ON t.turn_id = c.turn_id
                    WHERE t.parent_id != 0 AND c.n < ?
                )
                SELECT t.turn_id, t.parent_id, t.depth, t.type_id, t.type_version, b.data,
                       t.hash, t.created_ms
                FROM chain JOIN turns t ON t.turn_id = chain.turn_id
                JOIN blobs b ON b.hash = t.hash
                ORDER BY t.depth
                """,
                (head.head_turn_id, limit),
            ).fetchall()
            return [TurnRecord(*row) for row in rows]

        return await self._run(last)

    # blobs ---------------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> bytes:
        digest = content_hash(data)

        def put(db: sqlite3.Connection) -> bytes:
            db.execute("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", (digest, data))
            return digest

        return await self._write(put, len(data))

    async def get_blob(self, blob_hash: bytes) -> bytes:
        def get(db: sqlite3.Connection) -> bytes:
            row = db.execute("SELECT data FROM blobs WHERE hash = ?", (blob_hash,)).fetchone()
            if row is None:
                raise ContextNotFound(f"blob {blob_hash.hex()} does not exist in {self._path}")
            return bytes(row[0])

        return await self._run(get)

    # listing -------------------------------------------------------------------------------

    async def list_contexts(self) -> Sequence[ContextSummary]:
        def listing(db: sqlite3.Connection) -> list[ContextSummary]:
            rows = db.execute(
                """
                SELECT c.context_id, c.head_turn_id, c.head_depth, c.updated_ms,
                       COALESCE(r.title, ''), COALESCE(r.labels, ''), COALESCE(r.client_tag, '')
                FROM contexts c
                LEFT JOIN turns h ON h.turn_id = c.head_turn_id
                LEFT JOIN turns r ON r.turn_id = h.root_id
                ORDER BY c.updated_ms DESC, c.context_id DESC
                """
            ).fetchall()
            return [
                ContextSummary(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    tuple(label for label in row[5].split("\n") if label),
                    row[6],
                )
                for row in rows
            ]

        return await self._run(listing)

    async def close(self) -> None:
        if self._inline is not None:
            with self._inline_lock:
                self._inline.close()
            self._inline = None
        await self._run(lambda db: db.close())


def _checkpoint_wal(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _check_or_create_schema(db: sqlite3.Connection, path: Path) -> None:
    tables = _tables(db)
    if not tables:
        # In one write transaction, so that processes creating the same new store at once
        # take turns: the second finds the tables and the marker the first made.
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('version', ?)",
                (SCHEMA_ID, SCHEMA_VERSION),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        tables = _tables(db)
    marker: dict[str, Any] = {}
    if "meta" in tables:
        marker = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if marker.get("schema") != SCHEMA_ID:
        raise StoreError(
            f"{path}: is an SQLite database but not Orchestra's state (it has tables "
            f"{', '.join(sorted(tables))}); point --store at another path"
        )
    if marker.get("version") != SCHEMA_VERSION:
        raise StoreError(
            f"{path}: holds Orchestra state version {marker.get('version')}, "
            f"this Orchestra reads version {SCHEMA_VERSION}"
        )


def _use_wal(db: sqlite3.Connection) -> None:
    """WAL mode. Switching a new file to it takes a lock that SQLite does not wait for,
    so when several processes open a new store at once the losers try again a moment later
    (for up to the busy timeout)."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _check_id(value: int, what: str, path: object) -> None:
    """Ids are SQLite integers: one out of their range names nothing this store holds."""
    if not -(2**63) <= value < 2**63:
        raise ContextNotFound(f"{what} does not exist in {path}")
