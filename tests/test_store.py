"""The Store protocol on the embedded SQLite store: CXDB's model, and its faults.

The first class is written against the protocol only, so the CXDB client can be run through
it too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from orchestra.engine.session import load_session
from orchestra.errors import ContextNotFound, StoreError
from orchestra.pipeline import Pipeline, resume
from orchestra.store.base import Store, content_hash, pack, unpack
from orchestra.store.embedded import EmbeddedStore


async def append(store: Store, context_id: int, value: object, parent: int = 0) -> int:
    turn = await store.append_turn(
        context_id, "test.Turn", 1, pack({1: value}), parent_turn_id=parent
    )
    return turn.turn_id


class TestStoreProtocol:
    """The conformance suite: every test runs on each store implementation."""

    async def test_empty_context_has_no_head(self, any_store: Store) -> None:
        """A new context's head is turn 0 at depth 0, and it has no turns."""
        head = await any_store.create_context()
        assert (head.head_turn_id, head.head_depth) == (0, 0)
        assert await any_store.get_last(head.context_id) == []

    async def test_appends_chain_from_the_head(self, any_store: Store) -> None:
        """Each append's parent is the previous head; depth counts from 0 (CXDB)."""
        context = (await any_store.create_context()).context_id
        ids = [await append(any_store, context, n) for n in range(3)]
        turns = await any_store.get_last(context, limit=10)
        assert [t.turn_id for t in turns] == ids
        assert [t.depth for t in turns] == [0, 1, 2]
        assert [t.parent_turn_id for t in turns] == [0, ids[0], ids[1]]
        assert [unpack(t.payload) for t in turns] == [{1: 0}, {1: 1}, {1: 2}]
        assert turns[0].content_hash == content_hash(turns[0].payload)
        head = await any_store.get_head(context)
        assert (head.head_turn_id, head.head_depth) == (ids[-1], 2)

    async def test_get_last_returns_the_newest_oldest_first(self, any_store: Store) -> None:
        """limit=N gives the last N turns of the history, in order."""
        context = (await any_store.create_context()).context_id
        ids = [await append(any_store, context, n) for n in range(5)]
        assert [t.turn_id for t in await any_store.get_last(context, limit=2)] == ids[-2:]

    async def test_fork_shares_history_and_leaves_the_original(self, any_store: Store) -> None:
        """A fork at a turn sees that turn's ancestors; appends to it do not touch the
        original context."""
        original = (await any_store.create_context()).context_id
        ids = [await append(any_store, original, n) for n in range(3)]
        fork = await any_store.fork_context(ids[1])
        assert (fork.head_turn_id, fork.head_depth) == (ids[1], 1)
        forked = await append(any_store, fork.context_id, "fork")
        assert [t.turn_id for t in await any_store.get_last(fork.context_id)] == [
            ids[0],
            ids[1],
            forked,
        ]
        assert [t.turn_id for t in await any_store.get_last(original)] == ids

    async def test_blobs_are_content_addressed_and_stored_once(self, any_store: Store) -> None:
        """put_blob returns the BLAKE3 hash; the same bytes twice are one blob."""
        data = b"x" * 10_000
        first = await any_store.put_blob(data)
        assert first == content_hash(data)
        assert await any_store.put_blob(data) == first
        assert await any_store.get_blob(first) == data

    async def test_metadata_of_the_first_turn_names_the_context(self, any_store: Store) -> None:
        """Key 30 of the depth-0 turn (CXDB's convention) gives title, labels and tag."""
        context = (await any_store.create_context()).context_id
        await any_store.append_turn(
            context, "t", 1, pack({30: {1: "orchestra", 2: "My run", 3: ["a", "b"]}})
        )
        # (a real server shared by the run holds other contexts too)
        [summary] = [s for s in await any_store.list_contexts() if s.context_id == context]
        assert (summary.title, summary.labels, summary.client_tag) == (
            "My run",
            ("a", "b"),
            "orchestra",
        )

    async def test_unknown_ids_raise_context_not_found(self, any_store: Store) -> None:
        """An unknown context, turn or blob is ContextNotFound (a LookupError)."""
        with pytest.raises(ContextNotFound):
            await any_store.get_head(999)
        with pytest.raises(ContextNotFound):
            await any_store.fork_context(999)
        with pytest.raises(LookupError):
            await any_store.get_blob(b"\0" * 32)


class TestWrites:
    """Small writes run on the event loop's thread unless something would make them wait."""

    async def test_append_waits_for_another_writer_off_the_event_loop(self, tmp_path: Path) -> None:
        """While another connection holds SQLite's write lock, an append waits in a worker
        thread: the event loop keeps running other tasks, and the turn lands once the lock
        is released."""
        store = await EmbeddedStore.open(tmp_path / "s.db")
        context = (await store.create_context()).context_id
        blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        landed = anyio.Event()

        async def write() -> None:
            await append(store, context, "after the lock")
            landed.set()

        async with anyio.create_task_group() as group:
            began = anyio.current_time()
            group.start_soon(write)
            await anyio.wait_all_tasks_blocked()
            # SQLite's default busy timeout is 5 s: an append that waited on the loop's
            # thread would have held this task back that long.
            assert anyio.current_time() - began < 1
            assert not landed.is_set()
            blocker.execute("COMMIT")
            await landed.wait()
        blocker.close()
        assert [unpack(t.payload) for t in await store.get_last(context)] == [{1: "after the lock"}]
        await store.close()

    async def test_write_ahead_log_is_checkpointed_as_it_grows(self, tmp_path: Path) -> None:
        """Inline writes never checkpoint the WAL themselves; the store does it every few
        hundred writes, so the WAL stays far smaller than the pages those writes made."""
        store = await EmbeddedStore.open(tmp_path / "s.db")
        context = (await store.create_context()).context_id
        appends = 1500
        for i in range(appends):
            await append(store, context, i)
        wal = (tmp_path / "s.db-wal").stat().st_size
        assert wal < appends * 4096  # each append commits three or more 4 KiB pages
        assert len(await store.get_last(context, limit=appends)) == appends
        await store.close()


class TestDatabaseFaults:
    async def test_reopening_keeps_every_turn(self, tmp_path: Path) -> None:
        """Turns written by one store object are there for the next one (a new process)."""
        first = await EmbeddedStore.open(tmp_path / "s.db")
        context = (await first.create_context()).context_id
        await append(first, context, "kept")
        await first.close()
        second = await EmbeddedStore.open(tmp_path / "s.db")
        assert [unpack(t.payload) for t in await second.get_last(context)] == [{1: "kept"}]
        await second.close()

    async def test_corrupt_file_is_refused_untouched(self, tmp_path: Path) -> None:
        """A file that is not SQLite gets a StoreError naming it; its bytes stay as they were."""
        path = tmp_path / "s.db"
        path.write_bytes(b"garbage" * 1000)
        with pytest.raises(StoreError, match="is not an Orchestra state database"):
            await EmbeddedStore.open(path)
        assert path.read_bytes() == b"garbage" * 1000

    async def test_disk_full_keeps_the_last_checkpoint_and_resumes(self, tmp_path: Path) -> None:
        """When the database cannot grow, the run stops with a 'disk is full' StoreError;
        the checkpoints before it are intact and the session resumes once there is room."""
        store = await EmbeddedStore.open(tmp_path / "s.db")
        nodes = "\n".join(
            f'n{i} [shape=parallelogram, tool_command="yes n{i} | head -c 200000"]'
            for i in range(6)
        )
        chain = " -> ".join(["start", *(f"n{i}" for i in range(6)), "exit"])
        dot = f"digraph full {{ start [shape=Mdiamond]; exit [shape=Msquare]\n{nodes}\n{chain} }}"
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        for connection in (store._db, store._inline):  # the limit is per connection
            assert connection is not None
            connection.execute(f"PRAGMA max_page_count = {pages + 40}")  # two 64 KB outputs
        pipeline = Pipeline.load(dot, store=store, logs_root=tmp_path / "run")
        with pytest.raises(StoreError, match="disk is full"):
            await pipeline.run()
        assert pipeline.session_id is not None
        state = await load_session(store, pipeline.session_id)
        assert state.completed_nodes[:2] == ["start", "n0"]
        assert len(state.completed_nodes) < 7

        for connection in (store._db, store._inline):
            assert connection is not None
            connection.execute("PRAGMA max_page_count = 1073741823")
        result = await resume(pipeline.session_id, store=store)
        assert result.succeeded
        assert result.completed_nodes[-1] == "exit"
        await store.close()

    def test_foreign_sqlite_database_is_refused(self, tmp_path: Path) -> None:
        """An SQLite database of another program is not Orchestra's state."""
        path = tmp_path / "s.db"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE invoices (id INTEGER)")
        db.commit()
        db.close()
        with pytest.raises(StoreError, match="not Orchestra's state"):
            EmbeddedStore.open_sync(path)


def test_processes_creating_one_new_store_at_once_all_open_it(tmp_path: Path) -> None:
    """Issue 15, fault 8: opening the same new state file from several connections at once
    (two pipelines started together in a fresh directory) never fails."""
    import threading

    from orchestra.store.embedded import EmbeddedStore

    for attempt in range(10):
        path = tmp_path / f"fresh-{attempt}" / "state.db"
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def open_one(
            path: Path = path,
            errors: list[BaseException] = errors,
            start: threading.Barrier = start,
        ) -> None:
            start.wait()
            try:
                EmbeddedStore.open_sync(path)._db.close()
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
