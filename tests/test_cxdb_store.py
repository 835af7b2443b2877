"""The CXDB store beyond the shared conformance suite: URLs, faults (dropped connections,
a restarted server, corrupt frames, hash mismatches), pipelining, and whole runs."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
import pytest

from orchestra.engine.session import load_session
from orchestra.errors import StoreError
from orchestra.events import Event, StageStarted
from orchestra.interviewer.base import (
    Answer,
    AutoApproveInterviewer,
    CallbackInterviewer,
    Question,
)
from orchestra.pipeline import Pipeline, resume
from orchestra.store.base import content_hash, pack, unpack
from orchestra.store.cxdb import protocol as p
from orchestra.store.cxdb.bundle import BUNDLE_ID, bundle_bytes
from orchestra.store.cxdb.fake import FakeCxdb
from orchestra.store.cxdb.store import CxdbAddress, CxdbStore, parse_cxdb_url
from orchestra.store.location import open_store, resolve_store


@pytest.fixture
async def cxdb(cxdb_server: FakeCxdb) -> AsyncIterator[CxdbStore]:
    """A CXDB store on a fresh fake server."""
    store = await CxdbStore.open(cxdb_server.url)
    yield store
    await store.close()


async def append(store: CxdbStore, context_id: int, value: object) -> int:
    turn = await store.append_turn(context_id, "test.Turn", 1, pack({1: value}))
    return turn.turn_id


class TestUrls:
    def test_full_url(self) -> None:
        """Host, binary port and the HTTP address all come from the URL."""
        assert parse_cxdb_url("cxdb://db.internal:7000?http=web.internal:7001") == CxdbAddress(
            "db.internal", 7000, "web.internal", 7001
        )

    def test_defaults_are_cxdbs_ports_on_the_same_host(self) -> None:
        """Without ports the binary port is 9009 and HTTP is port 9010 of the same host."""
        assert parse_cxdb_url("cxdb://db") == CxdbAddress("db", 9009, "db", 9010)

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("http://db:9009", "not a CXDB URL"),
            ("cxdb://db:port", "port is not a number"),
            ("cxdb://db?grpc=1", "unknown option 'grpc'"),
        ],
    )
    def test_bad_urls_say_what_is_wrong(self, url: str, problem: str) -> None:
        """A malformed URL is a StoreError naming it and the problem."""
        with pytest.raises(StoreError, match=problem):
            parse_cxdb_url(url)

    def test_store_choice_follows_flag_then_environment_then_config(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--store wins over CXDB_URL, which wins over orchestra.yaml's cxdb.url, which wins
        over the default path."""
        (tmp_path / "orchestra.yaml").write_text("cxdb:\n  url: cxdb://from-config\n")
        nested = tmp_path / "pipelines"
        nested.mkdir()
        monkeypatch.delenv("CXDB_URL", raising=False)
        assert resolve_store(None, nested) == "cxdb://from-config"
        monkeypatch.setenv("CXDB_URL", "cxdb://from-env")
        assert resolve_store(None, nested) == "cxdb://from-env"
        assert resolve_store("local.db", nested) == "local.db"

    def test_broken_config_names_the_place_not_the_text(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An orchestra.yaml that does not parse is a StoreError with its file, line and
        column, without quoting the file (it may hold secrets)."""
        monkeypatch.delenv("CXDB_URL", raising=False)
        (tmp_path / "orchestra.yaml").write_text('cxdb:\n  url: "cxdb://x\n  token: sk-hush\n')
        with pytest.raises(StoreError, match=r"orchestra\.yaml:4:1: ") as caught:
            resolve_store(None, tmp_path)
        assert "sk-hush" not in str(caught.value)

    async def test_unreachable_server_is_a_clear_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Nothing listening at the URL: a StoreError naming the address, no traceback."""
        monkeypatch.setattr("orchestra.store.cxdb.client.ATTEMPTS", 1)  # no backoff to sit out
        with anyio.fail_after(30):
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            await listener.aclose()  # a port that was free a moment ago
            with pytest.raises(StoreError, match=f"127.0.0.1:{port}: cannot reach the CXDB server"):
                await open_store(f"cxdb://127.0.0.1:{port}")


class TestFaults:
    async def test_connection_dropped_before_an_append_lands(
        self, cxdb: CxdbStore, cxdb_server: FakeCxdb
    ) -> None:
        """The server closes the connection without taking the append: the client sends it
        again on a new connection, and the turn is written once."""
        context = (await cxdb.create_context()).context_id
        first = await append(cxdb, context, "one")
        cxdb_server.drop_before(p.MsgType.APPEND_TURN)
        second = await append(cxdb, context, "two")
        turns = await cxdb.get_last(context)
        assert [t.turn_id for t in turns] == [first, second]
        assert [unpack(t.payload) for t in turns] == [{1: "one"}, {1: "two"}]

    async def test_connection_dropped_after_an_append_lands(
        self, cxdb: CxdbStore, cxdb_server: FakeCxdb
    ) -> None:
        """The append lands but the acknowledgement never comes: the client finds the turn
        at the head and does not write it twice."""
        context = (await cxdb.create_context()).context_id
        await append(cxdb, context, "one")
        cxdb_server.drop_after(p.MsgType.APPEND_TURN)
        second = await append(cxdb, context, "two")
        turns = await cxdb.get_last(context)
        assert [unpack(t.payload) for t in turns] == [{1: "one"}, {1: "two"}]
        assert turns[-1].turn_id == second
        assert len(cxdb_server.turns) == 2

    @pytest.mark.parametrize("when", ["before", "after"])
    async def test_connection_dropped_mid_read(
        self, cxdb: CxdbStore, cxdb_server: FakeCxdb, when: str
    ) -> None:
        """A read whose connection closes is sent again and returns the full history."""
        context = (await cxdb.create_context()).context_id
        ids = [await append(cxdb, context, n) for n in range(3)]
        drop = cxdb_server.drop_before if when == "before" else cxdb_server.drop_after
        drop(p.MsgType.GET_LAST)
        assert [t.turn_id for t in await cxdb.get_last(context)] == ids

    async def test_server_restarted_between_two_appends(
        self,
        cxdb: CxdbStore,
        cxdb_server: FakeCxdb,
        cxdb_portal: anyio.from_thread.BlockingPortal,
    ) -> None:
        """A restart closes every connection; the next append reconnects and lands once."""
        context = (await cxdb.create_context()).context_id
        await append(cxdb, context, "before")
        await anyio.to_thread.run_sync(cxdb_portal.call, cxdb_server.restart)
        await append(cxdb, context, "after")
        turns = await cxdb.get_last(context)
        assert [unpack(t.payload) for t in turns] == [{1: "before"}, {1: "after"}]
        assert len(cxdb_server.turns) == 2

    async def test_corrupt_reply_to_an_append_is_checked_not_repeated(
        self, cxdb: CxdbStore, cxdb_server: FakeCxdb
    ) -> None:
        """A malformed acknowledgement (the append did land) is treated like a lost one:
        the client finds the turn and the history has it once."""
        context = (await cxdb.create_context()).context_id
        cxdb_server.corrupt_reply(p.MsgType.APPEND_TURN)
        turn = await append(cxdb, context, "once")
        assert [t.turn_id for t in await cxdb.get_last(context)] == [turn]

    async def test_corrupt_reply_to_a_read_is_read_again(
        self, cxdb: CxdbStore, cxdb_server: FakeCxdb
    ) -> None:
        """A malformed reply puts the connection out of step: the client drops it, reads
        again on a new one, and gets the right answer."""
        context = (await cxdb.create_context()).context_id
        turn = await append(cxdb, context, "x")
        cxdb_server.corrupt_reply(p.MsgType.GET_HEAD)
        assert (await cxdb.get_head(context)).head_turn_id == turn
        assert cxdb_server.requests[p.MsgType.GET_HEAD] >= 2

    def test_hash_mismatch_is_refused_before_sending(self) -> None:
        """A payload whose hash does not match is refused by the encoder (the server would
        close the connection without a word)."""
        with pytest.raises(ValueError, match="content_hash"):
            p.encode_append_turn(1, 0, "t", 1, b"\x91\x01", content_hash=b"\0" * 32)

    async def test_blob_with_the_wrong_content_is_refused(
        self, cxdb: CxdbStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """get_blob checks the bytes that come back against the hash asked for: different
        bytes are a StoreError saying so, not data."""
        digest = await cxdb.put_blob(b"right")
        assert await cxdb.get_blob(digest) == b"right"

        async def tampered(blob_hash: bytes) -> bytes:
            return b"wrong"

        monkeypatch.setattr(cxdb.client, "get_blob", tampered)
        with pytest.raises(StoreError, match="hash mismatch"):
            await cxdb.get_blob(digest)

    async def test_blob_the_server_lacks_is_not_found(self, cxdb: CxdbStore) -> None:
        """A blob CXDB does not have (it closes the connection on it) is a LookupError."""
        with pytest.raises(LookupError):
            await cxdb.get_blob(content_hash(b"never stored"))


class TestPipelining:
    async def test_concurrent_requests_share_one_connection_in_flight(
        self, cxdb: CxdbStore, cxdb_server: FakeCxdb
    ) -> None:
        """Appends to twenty contexts at once are written before earlier replies are read:
        the server sees several requests in flight on one connection."""
        contexts = [(await cxdb.create_context()).context_id for _ in range(20)]
        async with anyio.create_task_group() as group:
            for context in contexts:
                group.start_soon(append, cxdb, context, context)
        assert cxdb_server.max_in_flight > 1
        for context in contexts:
            assert [unpack(t.payload) for t in await cxdb.get_last(context)] == [{1: context}]

    @pytest.mark.parametrize("reply_bytes", [16 * 1024 * 1024, 1000])
    async def test_long_history_reads_whole_in_order(
        self,
        cxdb: CxdbStore,
        cxdb_server: FakeCxdb,
        monkeypatch: pytest.MonkeyPatch,
        reply_bytes: int,
    ) -> None:
        """A 600-turn history comes back whole and in order: in one reply when its payloads
        fit, else as blobs pipelined over the one connection."""
        monkeypatch.setattr("orchestra.store.cxdb.store._INLINE_REPLY_BYTES", reply_bytes)
        context = (await cxdb.create_context()).context_id
        ids = [await append(cxdb, context, n) for n in range(600)]
        before = cxdb_server.requests.get(p.MsgType.GET_BLOB, 0)
        turns = await cxdb.get_last(context, limit=600)
        assert [t.turn_id for t in turns] == ids
        assert [unpack(t.payload)[1] for t in turns] == list(range(600))
        blobs = cxdb_server.requests.get(p.MsgType.GET_BLOB, 0) - before
        if reply_bytes > 1000:
            assert blobs == 0
        else:
            assert blobs == 600
            assert cxdb_server.max_in_flight > 1


class TestOtherRequests:
    async def test_session_provenance_reaches_cxdbs_http_api(
        self, cxdb: CxdbStore, tmp_path: Path
    ) -> None:
        """A session's first turn carries CXDB's provenance (integer keys), which the server
        serves for the context: the writing program, its process and host."""
        source = "digraph p { start [shape=Mdiamond]; exit [shape=Msquare]; start -> exit }"
        result = await Pipeline.load(source, store=cxdb, logs_root=tmp_path).run()
        data = await cxdb._get_json(f"/v1/contexts/{result.session_id}/provenance", {})
        provenance = data["provenance"]
        assert provenance["service_name"] == "orchestra"
        assert provenance["process_pid"] == os.getpid()
        assert provenance["host_name"] == socket.gethostname()

    async def test_turns_page_back_over_http(self, cxdb: CxdbStore) -> None:
        """The HTTP reader pages from the head back to the first turn, each page oldest
        first, with the payload bytes the binary port gave."""
        context = (await cxdb.create_context()).context_id
        ids = [await append(cxdb, context, n) for n in range(10)]
        pages = [page async for page in cxdb.http_turns(context, page=4)]
        assert [[int(t["turn_id"]) for t in page] for page in pages] == [
            ids[6:],
            ids[2:6],
            ids[:2],
        ]
        first = base64.b64decode(pages[-1][0]["bytes_b64"])
        assert unpack(first) == {1: 0}

    async def test_snapshot_attaches_to_a_turn(
        self, cxdb: CxdbStore, cxdb_server: FakeCxdb
    ) -> None:
        """attach_fs ties a stored tree blob to a turn; a tree the server lacks is refused."""
        context = (await cxdb.create_context()).context_id
        turn = await append(cxdb, context, "snap")
        root = await cxdb.put_blob(pack([]))
        attached = await cxdb.client.attach_fs(turn, root)
        assert (attached.turn_id, attached.root_hash) == (turn, root)
        assert cxdb_server.fs_roots[turn] == root
        with pytest.raises(LookupError):
            await cxdb.client.attach_fs(turn, content_hash(b"no such tree"))


class TestRegistry:
    async def test_bundle_is_published_at_open_and_again_identically(
        self, cxdb: CxdbStore, cxdb_server: FakeCxdb
    ) -> None:
        """Opening a store publishes Orchestra's bundle; a second open re-publishes the same
        bytes (204), so the bundle never conflicts with itself."""
        assert cxdb_server.bundles[BUNDLE_ID] == bundle_bytes()
        again = await CxdbStore.open(cxdb_server.url)
        assert again.bundle_problem == ""
        await again.close()

    def test_bundle_bytes_are_stable(self) -> None:
        """The published bytes are pinned: a schema change must come with a new BUNDLE_ID
        (the server refuses the same id with different bytes)."""
        assert content_hash(bundle_bytes()).hex()[:16] == BUNDLE_HASH


BUNDLE_HASH = "c0c558d76be68591"


class TestRuns:
    async def test_pipeline_runs_lists_and_resumes_on_cxdb(
        self, cxdb: CxdbStore, tmp_path: Path
    ) -> None:
        """A run on CXDB is listed with its title, folds back into its state, and a session
        stopped after a node resumes there without running it again."""
        source = """
            digraph on_cxdb {
                graph [goal="ship"]
                start [shape=Mdiamond]
                a [shape=parallelogram, tool_command="echo a >> ran.txt"]
                b [shape=parallelogram, tool_command="echo b >> ran.txt"]
                exit [shape=Msquare]
                start -> a -> b -> exit
            }
        """
        work = tmp_path / "work"
        work.mkdir()
        ran = work / "ran.txt"
        source = source.replace("ran.txt", str(ran))
        pipeline = Pipeline.load(source, store=cxdb, logs_root=tmp_path / "run")
        result = await pipeline.run()
        assert result.succeeded
        [summary] = await cxdb.list_contexts()
        assert summary.title == "on_cxdb: ship"
        assert "pipeline:on_cxdb" in summary.labels
        assert summary.client_tag == "orchestra"
        state = await load_session(cxdb, result.session_id)
        assert state.completed_nodes == ["start", "a", "b", "exit"]
        assert state.ended == "success"
        # CXDB's reads carry no turn time: the session's times come from its payloads
        assert 0 < state.started_ms <= state.updated_ms < state.started_ms + 60_000

        # a second session, stopped while a human gate waits (as Ctrl-C would), resumed
        ran.unlink()
        gated = source.replace("a -> b", "a -> gate -> b").replace(
            "exit [shape=Msquare]", 'exit [shape=Msquare]\n gate [shape=hexagon, label="Go on?"]'
        )

        async def never(question: Question) -> Answer:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        second = Pipeline.load(
            gated,
            store=cxdb,
            logs_root=tmp_path / "run2",
            interviewer=CallbackInterviewer(never),
        )
        with anyio.CancelScope() as scope:

            def stop_at_the_gate(event: Event) -> None:
                if isinstance(event, StageStarted) and event.node_id == "gate":
                    scope.cancel()

            await second.run(on_event=stop_at_the_gate)
        assert second.session_id is not None
        assert ran.read_text() == "a\n"
        resumed = await resume(second.session_id, store=cxdb, interviewer=AutoApproveInterviewer())
        assert resumed.succeeded
        assert ran.read_text() == "a\nb\n"


class TestQuickAcks:
    """CXDB writes each reply in several small pieces with Nagle's algorithm on; a client
    whose delayed ACK holds the next piece waits ~40 ms per request (22 appends/s against
    the real server). The client asks Linux for quick ACKs before every read."""

    @pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
    async def test_the_clients_socket_takes_quick_acks(self, cxdb_server: FakeCxdb) -> None:
        """The socket anyio gives the client (asyncio's TransportSocket) is found and takes
        the option."""
        from orchestra.store.cxdb.client import _quickack_socket

        host, port = cxdb_server.url.removeprefix("cxdb://").split("?")[0].rsplit(":", 1)
        stream = await anyio.connect_tcp(host, int(port))
        try:
            found = _quickack_socket(stream)
            assert found is not None
            raw, option = found
            raw.setsockopt(socket.IPPROTO_TCP, option, 1)
        finally:
            await stream.aclose()

    @pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
    async def test_quick_acks_are_asked_for_before_each_read(
        self, cxdb_server: FakeCxdb, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every reply read is preceded by a request for quick ACKs (Linux turns them off
        again by itself)."""
        from orchestra.store.cxdb import client

        asked: list[int] = []
        real = client._quickack_socket

        class Recording:
            def __init__(self, raw: Any) -> None:
                self.raw = raw

            def setsockopt(self, level: int, option: int, value: int) -> None:
                asked.append(option)
                self.raw.setsockopt(level, option, value)

        def recording(stream: Any) -> Any:
            found = real(stream)
            return None if found is None else (Recording(found[0]), found[1])

        monkeypatch.setattr(client, "_quickack_socket", recording)
        store = await CxdbStore.open(cxdb_server.url)
        try:
            head = await store.create_context()
            before = len(asked)
            for n in range(3):
                await store.append_turn(head.context_id, "t", 1, pack({1: n}))
            assert len(asked) - before >= 3
            assert set(asked) == {socket.TCP_QUICKACK}
        finally:
            await store.close()
