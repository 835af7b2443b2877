"""The fake CXDB server: its binary protocol, its HTTP routes and the faults it injects.

Frames are built by hand here, not with ``orchestra.store.cxdb.protocol``, so that the fake
and the client are each checked against the reference (``reference/cxdb.md``) rather than
against each other. The hex strings are copied from the reference's protocol fixtures.

``FakeCxdb`` is entered in each test body: pytest-asyncio runs an async fixture's setup and
teardown in different tasks, and the server's task group must exit in the task it entered.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import anyio.abc
import httpx
import msgpack
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestra.store.base import content_hash
from orchestra.store.cxdb.fake import FakeCxdb

HEADER = struct.Struct("<IHHQ")
HELLO, CTX_CREATE, CTX_FORK, GET_HEAD, APPEND_TURN, GET_LAST = 1, 2, 3, 4, 5, 6
GET_BLOB, ATTACH_FS, PUT_BLOB, ERROR = 9, 10, 11, 255

# reference/cxdb-fixtures/protocol/*.json: request payloads, byte for byte
HELLO_TAG = bytes.fromhex("01000b00746573742d636c69656e7400000000")  # tag "test-client"
CTX_CREATE_BASE0 = bytes.fromhex("0000000000000000")
CTX_FORK_BASE123 = bytes.fromhex("7b00000000000000")
GET_HEAD_CTX42 = bytes.fromhex("2a00000000000000")
APPEND_PARENT0 = bytes.fromhex(  # ctx 1, parent 0, cxdb.ConversationItem v3, payload 91 01
    "0100000000000000000000000000000015000000637864622e436f6e766572736174696f6e4974656d"
    "030000000100000000000000020000007d911c8b58f0ac3a109a19007f8dea0f023d55ce8698b94782"
    "8cb79b3ba0b7b602000000910100000000"
)
APPEND_PARENT7 = bytes.fromhex(  # same with parent 7, payload 91 02
    "0100000000000000070000000000000015000000637864622e436f6e766572736174696f6e4974656d"
    "030000000100000000000000020000003cb94a2ed1cdced03ed54d2afc31ca20bcc2b4ad613f4f7158"
    "a106f9adec9b3902000000910200000000"
)
APPEND_IDEMPOTENT = bytes.fromhex(  # payload 91 03, idempotency key "idem-1"
    "0100000000000000000000000000000015000000637864622e436f6e766572736174696f6e4974656d"
    "03000000010000000000000002000000c64508d46d75fdcd20f5c5914214bb5bc763052b90bc424fcc"
    "5383bd3262ce97020000009103060000006964656d2d31"
)
APPEND_WITH_FS = bytes.fromhex(  # flags 1: payload 91 04, then fs root 32 x BB
    "0100000000000000000000000000000015000000637864622e436f6e766572736174696f6e4974656d"
    "03000000010000000000000002000000b38abdb0c819bbff7dd7ea8a0d2d4f3858de2be18c7468df47"
    "b6f39a728e05cf02000000910400000000" + "bb" * 32
)
GET_LAST_DEFAULT = bytes.fromhex("01000000000000000a00000000000000")  # ctx 1, limit 10
GET_LAST_PAYLOAD = bytes.fromhex("01000000000000000500000001000000")  # limit 5, payloads
ATTACH_FS_TURN99 = bytes.fromhex("6300000000000000" + "aa" * 32)
PUT_BLOB_HELLO = bytes.fromhex(
    "0c82c44eaf4c3639df7c38503f60a5b609679ddc490c20ea74b4e514a4c25abf0a00000068656c6c6f20626c6f62"
)
HELLO_BLOB_HASH = PUT_BLOB_HELLO[:32]

CLOSED = (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError)


def append_request(
    context_id: int,
    payload: bytes,
    *,
    parent: int = 0,
    type_id: str = "test.Turn",
    version: int = 1,
    compression: int = 0,
    length: int | None = None,
    digest: bytes | None = None,
    idempotency_key: bytes = b"",
    fs_root: bytes = b"",
) -> bytes:
    """An APPEND_TURN payload laid out as reference/cxdb.md §2.3."""
    type_bytes = type_id.encode()
    return (
        struct.pack("<QQI", context_id, parent, len(type_bytes))
        + type_bytes
        + struct.pack("<IIII", version, 1, compression, len(payload) if length is None else length)
        + (content_hash(payload) if digest is None else digest)
        + struct.pack("<I", len(payload))
        + payload
        + struct.pack("<I", len(idempotency_key))
        + idempotency_key
        + fs_root
    )


def pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


class Head(NamedTuple):
    context_id: int
    head_turn_id: int
    head_depth: int


class Item(NamedTuple):
    turn_id: int
    parent_turn_id: int
    depth: int
    type_id: str
    type_version: int
    encoding: int
    compression: int
    uncompressed_len: int
    content_hash: bytes
    payload: bytes | None


def parse_head(reply: bytes) -> Head:
    assert len(reply) == 20
    return Head(*struct.unpack("<QQI", reply))


def parse_last(reply: bytes, *, with_payload: bool) -> list[Item]:
    """GET_LAST's reply (§2.4); the whole reply must be consumed."""
    (count,) = struct.unpack_from("<I", reply)
    at = 4
    items = []
    for _ in range(count):
        turn_id, parent, depth, type_len = struct.unpack_from("<QQII", reply, at)
        at += 24
        type_id = reply[at : at + type_len].decode()
        at += type_len
        version, encoding, compression, length = struct.unpack_from("<IIII", reply, at)
        at += 16
        digest = reply[at : at + 32]
        at += 32
        payload = None
        if with_payload:
            (size,) = struct.unpack_from("<I", reply, at)
            payload = reply[at + 4 : at + 4 + size]
            at += 4 + size
        items.append(
            Item(
                turn_id,
                parent,
                depth,
                type_id,
                version,
                encoding,
                compression,
                length,
                digest,
                payload,
            )
        )
    assert at == len(reply)
    return items


class Wire:
    """A raw binary-protocol connection: frames in, frames out, nothing interpreted."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self._incoming = BufferedByteReceiveStream(stream)
        self._next_req_id = 100

    def frame(self, msg_type: int, payload: bytes, flags: int = 0) -> tuple[int, bytes]:
        req_id = self._next_req_id
        self._next_req_id += 1
        return req_id, HEADER.pack(len(payload), msg_type, flags, req_id) + payload

    async def send(self, msg_type: int, payload: bytes, flags: int = 0) -> int:
        req_id, data = self.frame(msg_type, payload, flags)
        await self.stream.send(data)
        return req_id

    async def receive(self) -> tuple[int, int, int, bytes]:
        """The next reply as (msg_type, flags, req_id, payload)."""
        with anyio.fail_after(5):
            length, msg_type, flags, req_id = HEADER.unpack(
                await self._incoming.receive_exactly(HEADER.size)
            )
            return msg_type, flags, req_id, await self._incoming.receive_exactly(length)

    async def request(self, msg_type: int, payload: bytes, flags: int = 0) -> bytes:
        """Send one request and return its reply's payload, checking the reply's header."""
        req_id = await self.send(msg_type, payload, flags)
        reply_type, reply_flags, reply_id, reply = await self.receive()
        assert (reply_type, reply_flags, reply_id) == (msg_type, 0, req_id)
        return reply

    async def expect_closed(self) -> None:
        """The server closed the connection without replying."""
        with pytest.raises(CLOSED):
            await self.receive()


@asynccontextmanager
async def connect(server: FakeCxdb | Mapping[str, Any]) -> AsyncIterator[Wire]:
    """A connection to a fake in this process, or to one whose ports file says where."""
    port = server["binary_port"] if isinstance(server, Mapping) else server.binary_port
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        yield Wire(stream)


async def failed_request(server: FakeCxdb, msg_type: int, payload: bytes, flags: int = 0) -> None:
    """Send one request on a fresh connection and check the server hangs up on it."""
    async with connect(server) as wire:
        await wire.send(msg_type, payload, flags)
        await wire.expect_closed()


def http(server: FakeCxdb) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=5)


async def new_context(wire: Wire, base: int = 0) -> int:
    return parse_head(await wire.request(CTX_CREATE, struct.pack("<Q", base))).context_id


async def append(wire: Wire, context_id: int, value: object, **options: Any) -> tuple[int, int]:
    """Append ``value`` as a msgpack payload; the new turn's (id, depth)."""
    payload = pack(value)
    reply = await wire.request(APPEND_TURN, append_request(context_id, payload, **options))
    assert len(reply) == 52
    echoed, turn_id, depth = struct.unpack_from("<QQI", reply)
    assert (echoed, reply[20:]) == (context_id, content_hash(payload))
    return turn_id, depth


async def history(wire: Wire, context_id: int, limit: int = 100) -> list[int]:
    reply = await wire.request(GET_LAST, struct.pack("<QII", context_id, limit, 0))
    return [item.turn_id for item in parse_last(reply, with_payload=False)]


class TestHandshake:
    async def test_hello_reply_is_session_id_and_version(self) -> None:
        """HELLO gets 10 bytes, u64 session id then u16 version 1; sessions count from 1
        per connection, and an empty HELLO payload is accepted."""
        async with FakeCxdb() as server, connect(server) as first, connect(server) as second:
            assert await first.request(HELLO, HELLO_TAG) == struct.pack("<QH", 1, 1)
            assert await second.request(HELLO, b"") == struct.pack("<QH", 2, 1)
            assert await first.request(HELLO, HELLO_TAG) == struct.pack("<QH", 1, 1)

    async def test_test_encoder_matches_the_reference_fixture(self) -> None:
        """The append payloads these tests build are laid out as the reference's fixture."""
        assert append_request(1, b"\x91\x01", type_id="cxdb.ConversationItem", version=3) == (
            APPEND_PARENT0
        )
        assert append_request(
            1, b"\x91\x03", type_id="cxdb.ConversationItem", version=3, idempotency_key=b"idem-1"
        ) == (APPEND_IDEMPOTENT)


class TestContexts:
    async def test_create_then_three_appends_leave_the_head_at_depth_2(self) -> None:
        """Turns chain from the head: ids 1, 2, 3 at depths 0, 1, 2, and GET_HEAD says so."""
        async with FakeCxdb() as server, connect(server) as wire:
            assert parse_head(await wire.request(CTX_CREATE, CTX_CREATE_BASE0)) == (1, 0, 0)
            reply = await wire.request(APPEND_TURN, APPEND_PARENT0)
            assert reply == struct.pack("<QQI", 1, 1, 0) + content_hash(b"\x91\x01")
            assert await append(wire, 1, [2]) == (2, 1)
            assert await append(wire, 1, [3]) == (3, 2)
            assert parse_head(await wire.request(GET_HEAD, struct.pack("<Q", 1))) == (1, 3, 2)
            assert [turn.parent_turn_id for turn in server.turns.values()] == [0, 1, 2]

    async def test_ids_are_global_counters(self) -> None:
        """Context ids and turn ids each count from 1 across all contexts."""
        async with FakeCxdb() as server, connect(server) as wire:
            first, second = await new_context(wire), await new_context(wire)
            assert (first, second) == (1, 2)
            assert await append(wire, second, "a") == (1, 0)
            assert await append(wire, first, "b") == (2, 0)
            assert await append(wire, second, "c") == (3, 1)

    async def test_fork_shares_history_and_leaves_the_original(self) -> None:
        """A fork at turn 2 has head 2 at depth 1 and sees turns 1 and 2; appending to it
        does not move the original."""
        async with FakeCxdb() as server, connect(server) as wire:
            original = await new_context(wire)
            for value in range(3):
                await append(wire, original, value)
            fork = parse_head(await wire.request(CTX_FORK, struct.pack("<Q", 2)))
            assert fork == (2, 2, 1)
            assert await history(wire, fork.context_id) == [1, 2]
            assert await append(wire, fork.context_id, "fork") == (4, 2)
            assert await history(wire, fork.context_id) == [1, 2, 4]
            assert await history(wire, original) == [1, 2, 3]

    async def test_explicit_parent_repoints_the_head(self) -> None:
        """An append with parent 1 on head 3 makes the new turn the head at depth 1, and
        turns 2 and 3 leave the context's history."""
        async with FakeCxdb() as server, connect(server) as wire:
            context = await new_context(wire)
            for value in range(3):
                await append(wire, context, value)
            assert await append(wire, context, "branch", parent=1) == (4, 1)
            assert parse_head(await wire.request(GET_HEAD, struct.pack("<Q", context))) == (
                context,
                4,
                1,
            )
            assert await history(wire, context) == [1, 4]

    async def test_idempotency_key_is_ignored(self) -> None:
        """The same append with the same idempotency key twice makes two turns."""
        async with FakeCxdb() as server, connect(server) as wire:
            await new_context(wire)
            first = await wire.request(APPEND_TURN, APPEND_IDEMPOTENT)
            second = await wire.request(APPEND_TURN, APPEND_IDEMPOTENT)
            assert struct.unpack_from("<QQI", first) == (1, 1, 0)
            assert struct.unpack_from("<QQI", second) == (1, 2, 1)
            assert len(server.turns) == 2
            assert len(server.blobs) == 1

    async def test_fs_root_flag_attaches_an_existing_root(self) -> None:
        """With flags bit 0 and the root blob already stored, the turn gets that root."""
        async with FakeCxdb() as server, connect(server) as wire:
            await new_context(wire)
            await wire.request(PUT_BLOB, PUT_BLOB_HELLO)
            reply = await wire.request(
                APPEND_TURN, append_request(1, pack("x"), fs_root=HELLO_BLOB_HASH), flags=1
            )
            assert struct.unpack_from("<QQI", reply) == (1, 1, 0)
            assert server.fs_roots == {1: HELLO_BLOB_HASH}


class TestGetLast:
    async def test_without_payload_items_are_oldest_first_and_72_bytes_plus_type(self) -> None:
        """limit counts steps back from the head; items carry no payload_len at all."""
        async with FakeCxdb() as server, connect(server) as wire:
            context = await new_context(wire)
            for value in range(12):
                await append(wire, context, value, type_id="t.T", version=2)
            reply = await wire.request(GET_LAST, GET_LAST_DEFAULT)
            assert len(reply) == 4 + 10 * (72 + len("t.T"))
            items = parse_last(reply, with_payload=False)
            assert [item.turn_id for item in items] == list(range(3, 13))
            assert items[0] == Item(3, 2, 2, "t.T", 2, 1, 0, 1, content_hash(pack(2)), None)
            empty = await wire.request(GET_LAST, struct.pack("<QII", context, 0, 0))
            assert empty == struct.pack("<I", 0)

    async def test_with_payload_items_end_with_the_raw_bytes(self) -> None:
        """include_payload adds u32 length and the raw payload after the hash."""
        async with FakeCxdb() as server, connect(server) as wire:
            context = await new_context(wire)
            for value in range(6):
                await append(wire, context, {1: value})
            items = parse_last(await wire.request(GET_LAST, GET_LAST_PAYLOAD), with_payload=True)
            assert [item.turn_id for item in items] == [2, 3, 4, 5, 6]
            assert [item.payload for item in items] == [pack({1: n}) for n in range(1, 6)]
            assert all(item.compression == 0 for item in items)
            assert items[-1].uncompressed_len == len(pack({1: 5}))


class TestErrors:
    @pytest.mark.parametrize(
        ("msg_type", "payload", "flags"),
        [
            pytest.param(GET_HEAD, GET_HEAD_CTX42, 0, id="get-head-unknown-context"),
            pytest.param(CTX_FORK, CTX_FORK_BASE123, 0, id="fork-missing-base"),
            pytest.param(APPEND_TURN, append_request(2, b"\x91"), 0, id="append-no-context"),
            pytest.param(
                APPEND_TURN, append_request(1, b"\x91\x01", digest=bytes(32)), 0, id="hash"
            ),
            pytest.param(APPEND_TURN, append_request(1, b"\x91\x01", length=3), 0, id="length"),
            pytest.param(APPEND_TURN, append_request(1, b"\x91\x01", compression=1), 0, id="zstd"),
            pytest.param(APPEND_TURN, append_request(1, b"\x91", compression=2), 0, id="codec"),
            pytest.param(APPEND_TURN, APPEND_PARENT7, 0, id="append-missing-parent"),
            pytest.param(APPEND_TURN, APPEND_PARENT0[:-4], 0, id="append-truncated"),
            pytest.param(GET_BLOB, HELLO_BLOB_HASH, 0, id="get-blob-missing"),
            pytest.param(GET_BLOB, HELLO_BLOB_HASH[:31], 0, id="get-blob-31-bytes"),
            pytest.param(PUT_BLOB, bytes(32) + PUT_BLOB_HELLO[32:], 0, id="put-blob-hash"),
            pytest.param(ATTACH_FS, ATTACH_FS_TURN99, 0, id="attach-missing-turn"),
            pytest.param(CTX_CREATE, CTX_CREATE_BASE0[:4], 0, id="create-truncated"),
        ],
    )
    async def test_failed_request_closes_without_a_reply(
        self, msg_type: int, payload: bytes, flags: int
    ) -> None:
        """Every failure except an unknown msg_type closes the connection, unanswered."""
        async with FakeCxdb() as server:
            async with connect(server) as wire:
                await new_context(wire)  # context 1 exists, with no turns
            await failed_request(server, msg_type, payload, flags)
            assert len(server.connection_errors) == 1
            assert server.turns == {}

    async def test_missing_fs_root_closes_after_writing_the_turn(self) -> None:
        """Appending with a missing fs root writes the turn and moves the head, then closes."""
        async with FakeCxdb() as server:
            async with connect(server) as wire:
                await new_context(wire)
            await failed_request(server, APPEND_TURN, APPEND_WITH_FS, flags=1)
            async with connect(server) as wire:
                assert parse_head(await wire.request(GET_HEAD, struct.pack("<Q", 1))) == (1, 1, 0)
            assert server.fs_roots == {}

    async def test_unknown_msg_type_gets_a_422_error_frame_and_the_connection_stays(
        self,
    ) -> None:
        """msg_type 7 (reserved) gets ERROR 255: code 422, 'unknown msg_type'; the next
        request on the same connection is answered."""
        async with FakeCxdb() as server, connect(server) as wire:
            req_id = await wire.send(7, struct.pack("<QI", 1, 1))
            reply = await wire.receive()
            detail = b"unknown msg_type"
            assert reply == (ERROR, 0, req_id, struct.pack("<II", 422, len(detail)) + detail)
            assert await new_context(wire) == 1

    async def test_payload_over_64_mib_closes(self) -> None:
        """A header announcing more than 64 MiB closes the connection before any payload."""
        async with FakeCxdb() as server, connect(server) as wire:
            await wire.stream.send(HEADER.pack(64 * 1024 * 1024 + 1, PUT_BLOB, 0, 1))
            await wire.expect_closed()


class TestPipelining:
    async def test_frames_written_together_are_answered_in_order(self) -> None:
        """Five requests written before any reply is read are answered one by one, in
        order, and the server saw all five in flight at once."""
        async with FakeCxdb() as server, connect(server) as wire:
            await new_context(wire)
            frames = [wire.frame(APPEND_TURN, append_request(1, pack(n))) for n in range(5)]
            await wire.stream.send(b"".join(data for _, data in frames))
            for n, (req_id, _) in enumerate(frames):
                msg_type, _, reply_id, reply = await wire.receive()
                assert (msg_type, reply_id) == (APPEND_TURN, req_id)
                assert struct.unpack_from("<QQI", reply) == (1, n + 1, n)
            assert server.max_in_flight == 5
            assert server.requests[APPEND_TURN] == 5


class TestFaults:
    async def test_drop_before_closes_and_nothing_happens(self) -> None:
        """drop_before: the next append is not processed and gets no reply; the fault is
        then cleared."""
        async with FakeCxdb() as server:
            async with connect(server) as wire:
                await new_context(wire)
            server.drop_before(APPEND_TURN)
            await failed_request(server, APPEND_TURN, APPEND_PARENT0)
            assert server.turns == {}
            async with connect(server) as wire:
                assert await append(wire, 1, "again") == (1, 0)
            assert server.requests[APPEND_TURN] == 2

    async def test_drop_after_lands_the_append_without_a_reply(self) -> None:
        """drop_after: the turn is written and the head moves, but the connection closes."""
        async with FakeCxdb() as server:
            async with connect(server) as wire:
                await new_context(wire)
            server.drop_after(APPEND_TURN)
            await failed_request(server, APPEND_TURN, APPEND_PARENT0)
            async with connect(server) as wire:
                assert parse_head(await wire.request(GET_HEAD, struct.pack("<Q", 1))) == (1, 1, 0)

    async def test_corrupt_reply_keeps_the_header_and_garbles_the_payload(self) -> None:
        """corrupt_reply: the request is processed; its reply has the right header and a
        payload of the wrong length; the next reply is sound."""
        async with FakeCxdb() as server, connect(server) as wire:
            await new_context(wire)
            server.corrupt_reply(APPEND_TURN)
            assert await wire.request(APPEND_TURN, APPEND_PARENT0) == b"\xff" * 53
            assert len(server.turns) == 1
            assert await append(wire, 1, "next") == (2, 1)

    async def test_restart_closes_connections_and_keeps_data_on_the_same_ports(self) -> None:
        """restart: open connections see EOF; the same ports serve the same turns; session
        ids count from 1 again."""
        async with FakeCxdb() as server, connect(server) as wire:
            await wire.request(HELLO, HELLO_TAG)
            await new_context(wire)
            await append(wire, 1, "kept")
            ports = (server.binary_port, server.http_port)
            await server.restart()
            await wire.expect_closed()
            assert (server.binary_port, server.http_port) == ports
            async with connect(server) as again:
                assert await again.request(HELLO, b"") == struct.pack("<QH", 1, 1)
                assert await history(again, 1) == [1]
            async with http(server) as client:
                assert (await client.get("/healthz")).text == "ok"


METADATA_FIRST_TURN = {
    1: "first",
    30: {
        1: "orchestra",
        2: "Run A",
        3: ["nightly", 4],
        4: {"ignored": "custom"},
        10: {1: 7, 40: "orchestra-svc", 43: 4242, 60: {"ENV": "test"}},
    },
}
STRING_KEYS_FIRST_TURN = {"1": "first", "30": {"1": "go-client", "2": "Invisible"}}


async def contexts_with_metadata(server: FakeCxdb) -> None:
    """Context 1 carries key-30 metadata with integer keys; context 2 with string keys."""
    async with connect(server) as wire:
        for first_turn in (METADATA_FIRST_TURN, STRING_KEYS_FIRST_TURN):
            context = await new_context(wire)
            await append(wire, context, first_turn)
            await append(wire, context, {1: "second"})


class TestContextListing:
    async def test_metadata_comes_from_integer_key_30_only(self) -> None:
        """client_tag and provenance are read from the depth-0 turn's integer keys; the
        string-keyed context shows none."""
        async with FakeCxdb() as server:
            await contexts_with_metadata(server)
            async with http(server) as client:
                response = await client.get("/v1/contexts", params={"include_provenance": "1"})
            assert response.status_code == 200
            listing = response.json()
            by_id = {row["context_id"]: row for row in listing["contexts"]}
            assert by_id["1"]["client_tag"] == "orchestra"
            assert by_id["1"]["head_turn_id"] == "2"
            assert by_id["1"]["head_depth"] == 1
            provenance = by_id["1"]["provenance"]
            assert provenance["parent_context_id"] == 7
            assert provenance["service_name"] == "orchestra-svc"
            assert provenance["process_pid"] == 4242
            assert provenance["env"] == {"ENV": "test"}
            assert provenance["trace_id"] is None
            assert "client_tag" not in by_id["2"]
            assert "provenance" not in by_id["2"]
            assert listing["count"] == 2

    async def test_listing_is_newest_activity_first_with_a_limit(self) -> None:
        """An append makes its context the most recent; limit=1 keeps only that one."""
        async with FakeCxdb() as server, connect(server) as wire:
            await new_context(wire)
            await new_context(wire)
            await append(wire, 1, "activity")
            async with http(server) as client:
                everything = (await client.get("/v1/contexts")).json()
                newest = (await client.get("/v1/contexts", params={"limit": "1"})).json()
            assert [row["context_id"] for row in everything["contexts"]] == ["1", "2"]
            assert [row["context_id"] for row in newest["contexts"]] == ["1"]

    async def test_a_live_session_lends_its_hello_tag(self) -> None:
        """Without metadata, a context created on a live session shows that session's tag
        and id; the tag also filters."""
        async with FakeCxdb() as server, connect(server) as wire:
            await wire.request(HELLO, HELLO_TAG)
            await new_context(wire)
            async with http(server) as client:
                listing = (await client.get("/v1/contexts", params={"tag": "test-client"})).json()
                other = (await client.get("/v1/contexts", params={"tag": "nobody"})).json()
            [row] = listing["contexts"]
            assert (row["client_tag"], row["is_live"], row["session_id"]) == (
                "test-client",
                True,
                "1",
            )
            assert listing["active_tags"] == ["test-client"]
            assert other["contexts"] == []

    async def test_provenance_route(self) -> None:
        """/provenance gives the depth-0 turn's provenance, or null without one."""
        async with FakeCxdb() as server:
            await contexts_with_metadata(server)
            async with http(server) as client:
                first = (await client.get("/v1/contexts/1/provenance")).json()
                second = (await client.get("/v1/contexts/2/provenance")).json()
            assert first["context_id"] == "1"
            assert first["provenance"]["service_name"] == "orchestra-svc"
            assert second == {"context_id": "2", "provenance": None}

    async def test_search_by_tag_and_title(self) -> None:
        """CQL tag = and title = (and their AND) match integer-key metadata only."""
        async with FakeCxdb() as server:
            await contexts_with_metadata(server)
            async with http(server) as client:

                async def search(query: str) -> list[str]:
                    response = await client.get("/v1/contexts/search", params={"q": query})
                    assert response.status_code == 200
                    return [row["context_id"] for row in response.json()["contexts"]]

                assert await search('tag = "orchestra"') == ["1"]
                assert await search('tag = "orchestra" AND title = "Run A"') == ["1"]
                assert await search('tag = "orchestra" and title = "Run B"') == []
                assert await search('title = "Invisible"') == []
                found = await client.get("/v1/contexts/search", params={"q": 'title = "Run A"'})
                assert found.json()["contexts"][0]["title"] == "Run A"

    @pytest.mark.parametrize("query", ['label = "x"', 'tag != "x"', 'tag = "x" OR', "tag ="])
    async def test_search_outside_the_subset_is_400(self, query: str) -> None:
        """CQL the fake does not implement is a 400, never a silent empty result."""
        async with FakeCxdb() as server, http(server) as client:
            response = await client.get("/v1/contexts/search", params={"q": query})
            assert response.status_code == 400
            assert "error" in response.json()

    async def test_search_without_q_is_400(self) -> None:
        """A search without q is 400 with the server's bare error string."""
        async with FakeCxdb() as server, http(server) as client:
            response = await client.get("/v1/contexts/search")
            assert response.status_code == 400
            assert response.json() == {"error": "Missing required 'q' parameter"}


class TestRoutes:
    async def test_healthz(self) -> None:
        """/healthz answers ok as text/plain and closes the connection."""
        async with FakeCxdb() as server, http(server) as client:
            response = await client.get("/healthz")
            assert (response.status_code, response.text) == (200, "ok")
            assert response.headers["connection"] == "close"

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/v1/contexts/create"),
            ("GET", "/v1/contexts/1"),
            ("GET", "/health"),
            ("GET", "/v1/contexts/"),
        ],
    )
    async def test_routes_the_server_lacks_are_404_route(self, method: str, path: str) -> None:
        """The write routes the docs invent, and others, are 404 with message 'route'."""
        async with FakeCxdb() as server, http(server) as client:
            response = await client.request(method, path)
            assert response.status_code == 404
            assert response.json() == {"error": {"code": 404, "message": "route"}}

    async def test_non_numeric_context_id_is_422(self) -> None:
        """An id that is not a u64 is invalid input: 422."""
        async with FakeCxdb() as server, http(server) as client:
            response = await client.get("/v1/contexts/abc/turns")
            assert response.status_code == 422
            assert response.json()["error"]["code"] == 422


BUNDLE: dict[str, Any] = {
    "registry_version": 1,
    "bundle_id": "test-v1",
    "types": {
        "test.Turn": {
            "versions": {
                "1": {
                    "fields": {
                        "1": {"name": "run_seq", "type": "u64"},
                        "2": {"name": "attempts", "type": "u32"},
                        "3": {"name": "kind", "type": "string"},
                        "4": {"name": "ok", "type": "bool", "optional": True},
                        "5": {"name": "digest", "type": "bytes"},
                        "6": {"name": "ts", "type": "unix_ms", "semantic": "ignored"},
                        "7": {"name": "extra", "type": "map"},
                    }
                }
            }
        }
    },
}


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle, sort_keys=True).encode()


class TestTurnsRoute:
    async def test_raw_view(self) -> None:
        """view=raw gives ids as strings, the BLAKE3 hex, compression 0, and base64 bytes."""
        async with FakeCxdb() as server, connect(server) as wire:
            await new_context(wire)
            await append(wire, 1, {1: "a"})
            async with http(server) as client:
                page = (await client.get("/v1/contexts/1/turns", params={"view": "raw"})).json()
            payload = pack({1: "a"})
            assert page["meta"] == {
                "context_id": "1",
                "head_turn_id": "1",
                "head_depth": 0,
                "registry_bundle_id": None,
            }
            assert page["turns"] == [
                {
                    "turn_id": "1",
                    "parent_turn_id": "0",
                    "depth": 0,
                    "declared_type": {"type_id": "test.Turn", "type_version": 1},
                    "content_hash_b3": content_hash(payload).hex(),
                    "encoding": 1,
                    "compression": 0,
                    "uncompressed_len": len(payload),
                    "bytes_b64": "gQGhYQ==",
                }
            ]
            assert page["next_before_turn_id"] == "1"

    async def test_paging_with_before_turn_id_until_an_empty_page(self) -> None:
        """Each page is the limit ancestors of before_turn_id, oldest first; the cursor is
        the oldest id returned, and null once a page comes back empty."""
        async with FakeCxdb() as server, connect(server) as wire:
            await new_context(wire)
            for value in range(5):
                await append(wire, 1, value)
            pages = []
            params = {"view": "raw", "limit": "2"}
            async with http(server) as client:
                while True:
                    page = (await client.get("/v1/contexts/1/turns", params=params)).json()
                    pages.append([turn["turn_id"] for turn in page["turns"]])
                    if page["next_before_turn_id"] is None:
                        break
                    params["before_turn_id"] = page["next_before_turn_id"]
            assert pages == [["4", "5"], ["2", "3"], ["1"], []]

    async def test_typed_view_is_424_until_the_type_is_registered(self) -> None:
        """One unregistered type fails the whole page with 424; after the bundle is
        published, fields render by their declared type."""
        async with FakeCxdb() as server, connect(server) as wire:
            await new_context(wire)
            value = {1: 5, 2: 3, 3: "node", 4: True, 5: b"\x00\x01", 6: 1700000000000}
            await append(wire, 1, {**value, 7: {"n": 2}, 9: 1, "x": 0})
            await append(wire, 1, {}, type_id="other.Type")
            async with http(server) as client:
                missing = await client.get("/v1/contexts/1/turns")
                assert missing.status_code == 424
                assert missing.json() == {"error": {"code": 424, "message": "type descriptor"}}
                published = await client.put("/v1/registry/bundles/x", content=bundle_bytes(BUNDLE))
                assert published.status_code == 201
                page = await client.get(
                    "/v1/contexts/1/turns", params={"limit": "1", "before_turn_id": "2"}
                )
                both = await client.get(
                    "/v1/contexts/1/turns",
                    params={"view": "both", "limit": "1", "before_turn_id": "2"},
                )
                unknown = await client.get(
                    "/v1/contexts/1/turns",
                    params={"include_unknown": "1", "before_turn_id": "2"},
                )
            assert page.status_code == 200
            [turn] = page.json()["turns"]
            assert turn["decoded_as"] == {"type_id": "test.Turn", "type_version": 1}
            assert turn["data"] == {
                "run_seq": "5",
                "attempts": 3,
                "kind": "node",
                "ok": True,
                "digest": "AAE=",
                "ts": "2023-11-14T22:13:20+00:00",
                "extra": {"n": "2"},
            }
            assert "bytes_b64" not in turn
            assert page.json()["meta"]["registry_bundle_id"] == "test-v1"
            assert {"data", "bytes_b64"} <= set(both.json()["turns"][0])
            assert unknown.json()["turns"][0]["unknown"] == {"9": "1"}


class TestRegistry:
    async def test_put_is_201_then_204_then_422_for_other_bytes(self) -> None:
        """A bundle id is immutable: identical re-PUT 204, different bytes 422; the path
        segment is ignored."""
        async with FakeCxdb() as server, http(server) as client:
            first = await client.put("/v1/registry/bundles/anything", content=bundle_bytes(BUNDLE))
            assert (first.status_code, first.json()) == (201, {"bundle_id": "test-v1"})
            again = await client.put("/v1/registry/bundles/test-v1", content=bundle_bytes(BUNDLE))
            assert (again.status_code, again.content) == (204, b"")
            changed = await client.put(
                "/v1/registry/bundles/test-v1", content=bundle_bytes({**BUNDLE, "enums": {}})
            )
            assert changed.status_code == 422
            assert changed.json()["error"]["code"] == 422
            assert list(server.bundles) == ["test-v1"]

    async def test_reusing_a_tag_with_another_type_is_422(self) -> None:
        """A tag's type is fixed across versions; renaming it is allowed."""
        renamed = {"1": {"name": "sequence", "type": "u64"}}
        retyped = {"1": {"name": "run_seq", "type": "string"}}
        async with FakeCxdb() as server, http(server) as client:
            await client.put("/v1/registry/bundles/a", content=bundle_bytes(BUNDLE))

            async def put_version(bundle_id: str, fields: dict[str, Any]) -> int:
                bundle = {
                    "registry_version": 1,
                    "bundle_id": bundle_id,
                    "types": {"test.Turn": {"versions": {"2": {"fields": fields}}}},
                }
                response = await client.put("/v1/registry/bundles/x", content=bundle_bytes(bundle))
                return response.status_code

            assert await put_version("conflict", retyped) == 422
            assert await put_version("rename", renamed) == 201

    @pytest.mark.parametrize(
        "bundle",
        [
            pytest.param([BUNDLE], id="array"),
            pytest.param({**BUNDLE, "registry_version": 0}, id="version-0"),
            pytest.param({**BUNDLE, "bundle_id": 3}, id="numeric-id"),
            pytest.param(
                {**BUNDLE, "types": {"t": {"versions": {"1": {"fields": {"a": {}}}}}}},
                id="bad-tag",
            ),
            pytest.param(
                {
                    **BUNDLE,
                    "types": {
                        "t": {
                            "versions": {
                                "1": {"fields": {"1": {"name": "s", "type": "u8", "enum": "E"}}}
                            }
                        }
                    },
                },
                id="missing-enum",
            ),
        ],
    )
    async def test_invalid_bundles_are_422(self, bundle: Any) -> None:
        """Any validation failure is 422, never 400 or 409."""
        async with FakeCxdb() as server, http(server) as client:
            response = await client.put("/v1/registry/bundles/x", content=bundle_bytes(bundle))
            assert response.status_code == 422

    async def test_get_bundle_with_etag(self) -> None:
        """GET returns the exact bytes with a quoted BLAKE3 ETag, and 304 when it matches."""
        body = bundle_bytes(BUNDLE)
        async with FakeCxdb() as server, http(server) as client:
            await client.put("/v1/registry/bundles/test-v1", content=body)
            response = await client.get("/v1/registry/bundles/test-v1")
            etag = f'"{content_hash(body).hex()}"'
            assert (response.status_code, response.content) == (200, body)
            assert response.headers["etag"] == etag
            cached = await client.get(
                "/v1/registry/bundles/test-v1", headers={"If-None-Match": etag}
            )
            assert cached.status_code == 304
            assert (await client.get("/v1/registry/bundles/other")).status_code == 404

    async def test_get_type_version(self) -> None:
        """A type version lists its fields by tag, without echoing the type id."""
        async with FakeCxdb() as server, http(server) as client:
            await client.put("/v1/registry/bundles/x", content=bundle_bytes(BUNDLE))
            response = await client.get("/v1/registry/types/test.Turn/versions/1")
            fields = response.json()["fields"]
            assert response.json().keys() == {"fields"}
            assert fields["1"] == {"name": "run_seq", "type": "u64"}
            assert fields["4"] == {"name": "ok", "type": "bool", "optional": True}
            missing = await client.get("/v1/registry/types/test.Turn/versions/2")
            assert missing.status_code == 404


@asynccontextmanager
async def fake_process(*arguments: str | Path) -> AsyncIterator[dict[str, Any]]:
    """``python -m orchestra.store.cxdb.fake`` until the block ends, then SIGTERM; yields
    the ports file's content once the process announces it is listening."""
    command = [sys.executable, "-m", "orchestra.store.cxdb.fake", *map(str, arguments)]
    async with await anyio.open_process(command) as process:
        assert process.stdout is not None
        with anyio.fail_after(20):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 4096)
        yield json.loads(line)
        process.terminate()
        with anyio.fail_after(20):
            assert await process.wait() == 0


class TestCommandLine:
    async def test_ports_file_process_serves_and_stops_on_sigterm(self, tmp_path: Path) -> None:
        """The process writes its ports as JSON once listening and exits 0 on SIGTERM."""
        ports_file = tmp_path / "ports.json"
        async with fake_process("--ports-file", ports_file) as announced:
            ports = json.loads(ports_file.read_text())
            assert ports == announced
            assert ports["url"] == (
                f"cxdb://127.0.0.1:{ports['binary_port']}?http=127.0.0.1:{ports['http_port']}"
            )
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(f"http://127.0.0.1:{ports['http_port']}/healthz")
            assert response.text == "ok"

    async def test_data_dir_keeps_turns_across_process_restarts(self, tmp_path: Path) -> None:
        """With --data, a stopped and restarted process still has its contexts and turns."""
        arguments = ("--ports-file", tmp_path / "ports.json", "--data", tmp_path / "data")
        async with fake_process(*arguments) as ports, connect(ports) as wire:
            await new_context(wire)
            await append(wire, 1, {1: "kept"})
        async with fake_process(*arguments) as ports, connect(ports) as wire:
            assert await history(wire, 1) == [1]
            assert await new_context(wire) == 2
            assert await append(wire, 2, "next") == (2, 0)
