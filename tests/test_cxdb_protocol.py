"""CXDB's binary protocol (``orchestra.store.cxdb.protocol``): upstream's golden request bytes,
request and reply round trips, the checks that keep bad input off the wire, and the msgpack
payload helpers.

``tests/cxdb-fixtures`` is upstream's ``fixtures/`` directory copied byte for byte (see its
SOURCE.md), so these tests run from a clean clone; ``reference/cxdb.md`` §7 says what each
file holds and which parameters made it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import blake3
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestra.store.base import content_hash, pack
from orchestra.store.cxdb import protocol as p
from orchestra.store.cxdb.protocol import MsgType, ProtocolError

FIXTURES = Path(__file__).parent / "cxdb-fixtures"
TYPE_ID = "cxdb.ConversationItem"


def load(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / relative).read_text())
    return data


def blake3_of(data: bytes) -> bytes:
    """BLAKE3 straight from the blake3 package, independent of the code under test."""
    return blake3.blake3(data).digest()


def no_flags(parse: Callable[[bytes], object]) -> Callable[[int, bytes], object]:
    return lambda _flags, payload: parse(payload)


def append(parent_turn_id: int, payload: bytes, **options: Any) -> tuple[int, bytes]:
    """The appends of the fixtures: context 1, ConversationItem v3, msgpack, uncompressed."""
    return p.encode_append_turn(
        context_id=1,
        parent_turn_id=parent_turn_id,
        type_id=TYPE_ID,
        type_version=3,
        payload=payload,
        **options,
    )


def appended(
    parent_turn_id: int,
    payload: bytes,
    idempotency_key: bytes = b"",
    fs_root_hash: bytes | None = None,
) -> p.AppendTurnRequest:
    return p.AppendTurnRequest(
        context_id=1,
        parent_turn_id=parent_turn_id,
        type_id=TYPE_ID,
        type_version=3,
        payload=payload,
        encoding=1,
        compression=0,
        uncompressed_len=len(payload),
        content_hash=blake3_of(payload),
        idempotency_key=idempotency_key,
        fs_root_hash=fs_root_hash,
    )


class Golden(NamedTuple):
    """A protocol fixture: how our encoder builds it, and the fields parsing gives back."""

    msg_type: MsgType
    build: Callable[[], tuple[int, bytes]]
    parse: Callable[[int, bytes], object]
    fields: object


# The parameters of each protocol/*.json fixture (reference/cxdb.md §7).
GOLDEN: dict[str, Golden] = {
    "hello_empty": Golden(
        MsgType.HELLO,
        lambda: (0, p.encode_hello()),
        no_flags(p.parse_hello),
        p.HelloRequest(version=1, tag="", meta=b""),
    ),
    "hello_tag": Golden(
        MsgType.HELLO,
        lambda: (0, p.encode_hello(tag="test-client")),
        no_flags(p.parse_hello),
        p.HelloRequest(version=1, tag="test-client", meta=b""),
    ),
    "ctx_create_base0": Golden(
        MsgType.CTX_CREATE,
        lambda: (0, p.encode_ctx_create(base_turn_id=0)),
        no_flags(p.parse_ctx_create),
        0,
    ),
    "ctx_fork_base123": Golden(
        MsgType.CTX_FORK,
        lambda: (0, p.encode_ctx_fork(base_turn_id=123)),
        no_flags(p.parse_ctx_fork),
        123,
    ),
    "get_head_ctx42": Golden(
        MsgType.GET_HEAD,
        lambda: (0, p.encode_get_head(context_id=42)),
        no_flags(p.parse_get_head),
        42,
    ),
    "append_parent0": Golden(
        MsgType.APPEND_TURN,
        lambda: append(0, b"\x91\x01"),
        p.parse_append_turn,
        appended(0, b"\x91\x01"),
    ),
    "append_parent7": Golden(
        MsgType.APPEND_TURN,
        lambda: append(7, b"\x91\x02"),
        p.parse_append_turn,
        appended(7, b"\x91\x02"),
    ),
    "append_idempotent": Golden(
        MsgType.APPEND_TURN,
        lambda: append(0, b"\x91\x03", idempotency_key=b"idem-1"),
        p.parse_append_turn,
        appended(0, b"\x91\x03", idempotency_key=b"idem-1"),
    ),
    "append_with_fs": Golden(
        MsgType.APPEND_TURN,
        lambda: append(0, b"\x91\x04", fs_root_hash=b"\xbb" * 32),
        p.parse_append_turn,
        appended(0, b"\x91\x04", fs_root_hash=b"\xbb" * 32),
    ),
    "get_last_default": Golden(
        MsgType.GET_LAST,
        lambda: (0, p.encode_get_last(context_id=1, limit=10, include_payload=False)),
        no_flags(p.parse_get_last),
        p.GetLastRequest(context_id=1, limit=10, include_payload=False),
    ),
    "get_last_payload": Golden(
        MsgType.GET_LAST,
        lambda: (0, p.encode_get_last(context_id=1, limit=5, include_payload=True)),
        no_flags(p.parse_get_last),
        p.GetLastRequest(context_id=1, limit=5, include_payload=True),
    ),
    "attach_fs": Golden(
        MsgType.ATTACH_FS,
        lambda: (0, p.encode_attach_fs(turn_id=99, root_hash=b"\xaa" * 32)),
        no_flags(p.parse_attach_fs),
        p.FsAttachment(turn_id=99, root_hash=b"\xaa" * 32),
    ),
    "put_blob": Golden(
        MsgType.PUT_BLOB,
        lambda: (0, p.encode_put_blob(data=b"hello blob")),
        no_flags(p.parse_put_blob),
        p.PutBlobRequest(data=b"hello blob", hash=blake3_of(b"hello blob")),
    ),
}
APPENDS = [name for name, golden in GOLDEN.items() if golden.msg_type == MsgType.APPEND_TURN]


class TestGoldenRequests:
    def test_every_fixture_has_its_parameters(self) -> None:
        """Each protocol/*.json fixture is listed here with the parameters that made it."""
        assert {path.stem for path in (FIXTURES / "protocol").glob("*.json")} == set(GOLDEN)

    @pytest.mark.parametrize("name", GOLDEN)
    def test_encoder_reproduces_fixture(self, name: str) -> None:
        """Our encoder gives the fixture's payload bytes, message type and frame flags."""
        expected = load(f"protocol/{name}.json")
        golden = GOLDEN[name]
        flags, payload = golden.build()
        assert payload.hex() == expected["payload_hex"]
        assert golden.msg_type == expected["msg_type"]
        assert flags == expected["flags"]

    @pytest.mark.parametrize("name", GOLDEN)
    def test_frame_is_header_then_payload(self, name: str) -> None:
        """A frame is the little-endian <IHHQ header (length, type, flags, req_id), then the
        payload."""
        golden = GOLDEN[name]
        flags, payload = golden.build()
        framed = p.frame(golden.msg_type, 7, payload, flags)
        assert framed == struct.pack("<IHHQ", len(payload), golden.msg_type, flags, 7) + payload

    def test_hello_example_of_the_reference(self) -> None:
        """HELLO "orchestra" with req_id 1 frames as in reference/cxdb.md §2.1."""
        framed = p.frame(MsgType.HELLO, 1, p.encode_hello("orchestra"))
        expected = "11000000010000000100000000000000" + "010009006f726368657374726100000000"
        assert framed.hex() == expected


class TestRequestRoundTrip:
    @pytest.mark.parametrize("name", GOLDEN)
    def test_fixture_parses_to_its_fields(self, name: str) -> None:
        """The server-side parser reads each fixture back into the fields it was built from."""
        fixture = load(f"protocol/{name}.json")
        golden = GOLDEN[name]
        assert golden.parse(fixture["flags"], bytes.fromhex(fixture["payload_hex"])) == (
            golden.fields
        )

    @pytest.mark.parametrize("name", APPENDS)
    def test_append_fixture_hash_is_blake3_of_payload(self, name: str) -> None:
        """The content hash inside each append fixture is BLAKE3 of its payload bytes."""
        fixture = load(f"protocol/{name}.json")
        request = p.parse_append_turn(fixture["flags"], bytes.fromhex(fixture["payload_hex"]))
        assert request.content_hash == blake3_of(request.payload)
        assert request.uncompressed_len == len(request.payload)

    def test_empty_hello_payload_is_a_default_hello(self) -> None:
        """An empty HELLO payload, which the server accepts, parses as version 1 with no tag."""
        assert p.parse_hello(b"") == p.HelloRequest(version=1, tag="", meta=b"")

    def test_hello_meta_round_trips(self) -> None:
        """HELLO's tag, JSON meta and version come back as sent."""
        payload = p.encode_hello("orchestra", b'{"pid": 1}', version=2)
        assert p.parse_hello(payload) == p.HelloRequest(2, "orchestra", b'{"pid": 1}')

    def test_compressed_append_passes_bytes_through(self) -> None:
        """compression=1 sends the caller's bytes as they are, with the raw length and hash."""
        raw_hash = blake3_of(b"raw bytes")
        flags, payload = p.encode_append_turn(
            5,
            0,
            "t",
            1,
            b"zstd frame",
            compression=p.COMPRESSION_ZSTD,
            uncompressed_len=9,
            content_hash=raw_hash,
        )
        request = p.parse_append_turn(flags, payload)
        assert (request.payload, request.compression) == (b"zstd frame", 1)
        assert (request.uncompressed_len, request.content_hash) == (9, raw_hash)

    def test_get_last_reads_any_non_zero_flag_as_yes(self) -> None:
        """include_payload is a u32 the server treats as a boolean."""
        assert p.parse_get_last(struct.pack("<QII", 3, 4, 7)).include_payload is True

    @given(
        context_id=st.integers(0, 2**64 - 1),
        parent_turn_id=st.integers(0, 2**64 - 1),
        type_id=st.text(max_size=40),
        type_version=st.integers(0, 2**32 - 1),
        payload=st.binary(max_size=200),
        idempotency_key=st.binary(max_size=40),
        fs_root_hash=st.none() | st.binary(min_size=32, max_size=32),
    )
    def test_any_append_round_trips(
        self,
        context_id: int,
        parent_turn_id: int,
        type_id: str,
        type_version: int,
        payload: bytes,
        idempotency_key: bytes,
        fs_root_hash: bytes | None,
    ) -> None:
        """Any valid append parses back to its fields; the fs flag is set exactly when a root
        hash is sent."""
        flags, body = p.encode_append_turn(
            context_id,
            parent_turn_id,
            type_id,
            type_version,
            payload,
            idempotency_key=idempotency_key,
            fs_root_hash=fs_root_hash,
        )
        assert flags == (0 if fs_root_hash is None else p.APPEND_FLAG_FS)
        assert p.parse_append_turn(flags, body) == p.AppendTurnRequest(
            context_id=context_id,
            parent_turn_id=parent_turn_id,
            type_id=type_id,
            type_version=type_version,
            payload=payload,
            encoding=1,
            compression=0,
            uncompressed_len=len(payload),
            content_hash=blake3_of(payload),
            idempotency_key=idempotency_key,
            fs_root_hash=fs_root_hash,
        )

    @pytest.mark.parametrize(
        ("parse", "payload", "message"),
        [
            (p.parse_ctx_create, b"\0" * 7, "CTX_CREATE request"),
            (p.parse_get_blob, b"\0" * 33, "GET_BLOB request"),
            (p.parse_put_blob, b"\0" * 35, "PUT_BLOB request"),
            (p.parse_hello, b"\x01\x00\x05\x00abc", "HELLO request"),
            (lambda payload: p.parse_append_turn(1, payload), append(0, b"\x91")[1], "APPEND_TURN"),
        ],
    )
    def test_malformed_request_names_its_message(
        self, parse: Callable[[bytes], object], payload: bytes, message: str
    ) -> None:
        """A request of the wrong length (here: an fs flag without the root hash) is a
        ProtocolError naming the message."""
        with pytest.raises(ProtocolError, match=message):
            parse(payload)


def turn_item(turn_id: int, payload: bytes | None, type_id: str = TYPE_ID) -> p.TurnItem:
    return p.TurnItem(
        turn_id=turn_id,
        parent_turn_id=turn_id - 1,
        depth=turn_id - 1,
        type_id=type_id,
        type_version=3,
        encoding=1,
        compression=0,
        uncompressed_len=len(payload or b""),
        content_hash=blake3_of(payload or b""),
        payload=payload,
    )


class Reply(NamedTuple):
    """A reply encoder's output and the value its decoder must give back."""

    message: str
    payload: bytes
    decode: Callable[[bytes], object]
    value: object


HASH = blake3_of(b"x")
ITEMS = [turn_item(1, b"\x91\x01"), turn_item(2, b"\x81\x01\xa2hi")]
REPLIES: dict[str, Reply] = {
    "hello": Reply(
        "HELLO reply",
        p.encode_hello_reply(session_id=9, protocol_version=1),
        p.decode_hello_reply,
        p.HelloReply(session_id=9, protocol_version=1),
    ),
    "head": Reply(
        "GET_HEAD reply",
        p.encode_head_reply(context_id=4, head_turn_id=17, head_depth=3),
        p.decode_head,
        p.Head(context_id=4, head_turn_id=17, head_depth=3),
    ),
    "append_ack": Reply(
        "APPEND_TURN reply",
        p.encode_append_ack(context_id=1, turn_id=2**64 - 1, depth=5, content_hash=HASH),
        p.decode_append_ack,
        p.AppendAck(context_id=1, turn_id=2**64 - 1, depth=5, content_hash=HASH),
    ),
    "get_last_with_payloads": Reply(
        "GET_LAST reply",
        p.encode_get_last_reply(ITEMS, include_payload=True),
        lambda payload: p.decode_get_last(payload, include_payload=True),
        ITEMS,
    ),
    "get_last_without_payloads": Reply(
        "GET_LAST reply",
        p.encode_get_last_reply(ITEMS, include_payload=False),
        lambda payload: p.decode_get_last(payload, include_payload=False),
        [attrs.evolve(item, payload=None) for item in ITEMS],
    ),
    "get_blob": Reply(
        "GET_BLOB reply", p.encode_get_blob_reply(b"blob bytes"), p.decode_get_blob, b"blob bytes"
    ),
    "attach_fs": Reply(
        "ATTACH_FS reply",
        p.encode_attach_fs_reply(turn_id=99, root_hash=HASH),
        p.decode_attach_fs,
        p.FsAttachment(turn_id=99, root_hash=HASH),
    ),
    "put_blob": Reply(
        "PUT_BLOB reply",
        p.encode_put_blob_reply(hash=HASH, was_new=True),
        p.decode_put_blob,
        p.BlobStored(hash=HASH, was_new=True),
    ),
    "error": Reply(
        "ERROR reply",
        p.encode_error(code=422, detail="unknown msg_type"),
        p.decode_error,
        p.ErrorReply(code=422, detail="unknown msg_type"),
    ),
}


class TestReplies:
    @pytest.mark.parametrize("name", REPLIES)
    def test_reply_round_trips(self, name: str) -> None:
        """Each reply decoder gives back what its encoder was given."""
        reply = REPLIES[name]
        assert reply.decode(reply.payload) == reply.value

    @pytest.mark.parametrize("name", REPLIES)
    def test_truncated_reply_names_its_message(self, name: str) -> None:
        """A reply one byte short is a ProtocolError naming the message."""
        reply = REPLIES[name]
        with pytest.raises(ProtocolError, match=reply.message):
            reply.decode(reply.payload[:-1])

    @pytest.mark.parametrize("name", REPLIES)
    def test_overlong_reply_names_its_message(self, name: str) -> None:
        """A reply one byte long is a ProtocolError naming the message."""
        reply = REPLIES[name]
        with pytest.raises(ProtocolError, match=reply.message):
            reply.decode(reply.payload + b"\0")

    def test_fixed_size_replies_have_the_documented_lengths(self) -> None:
        """HELLO 10 bytes, heads 20, append ack 52, ATTACH_FS 40, PUT_BLOB 33 (§2.2)."""
        sizes = {name: len(REPLIES[name].payload) for name in REPLIES}
        assert (sizes["hello"], sizes["head"], sizes["append_ack"]) == (10, 20, 52)
        assert (sizes["attach_fs"], sizes["put_blob"]) == (40, 33)

    def test_get_last_item_without_payload_has_no_length_field(self) -> None:
        """Without payloads an item is 72 + len(type_id) bytes: no payload_len (§2.4)."""
        reply = p.encode_get_last_reply([turn_item(1, b"abc")], include_payload=False)
        assert len(reply) == 4 + 72 + len(TYPE_ID)

    def test_get_last_read_with_the_wrong_payload_flag_fails(self) -> None:
        """Decoding with the other include_payload than the request's is a ProtocolError,
        not silently wrong turns."""
        with pytest.raises(ProtocolError, match="GET_LAST reply"):
            p.decode_get_last(REPLIES["get_last_without_payloads"].payload, include_payload=True)
        with pytest.raises(ProtocolError, match="GET_LAST reply"):
            p.decode_get_last(REPLIES["get_last_with_payloads"].payload, include_payload=False)

    def test_empty_get_last(self) -> None:
        """A context with no turns (or limit 0) replies with count 0."""
        assert p.decode_get_last(b"\0\0\0\0", include_payload=True) == []

    def test_head_error_names_the_message_it_answers(self) -> None:
        """decode_head serves three messages and names the one it was reading."""
        with pytest.raises(ProtocolError, match=r"^CTX_FORK reply: 19 bytes, expected 20$"):
            p.decode_head(b"\0" * 19, MsgType.CTX_FORK)

    def test_blob_already_present(self) -> None:
        """was_new is False when the server already held the bytes."""
        assert p.decode_put_blob(p.encode_put_blob_reply(HASH, was_new=False)).was_new is False

    def test_get_last_reply_needs_payloads_it_promises(self) -> None:
        """A reply with payloads refuses an item that has none."""
        with pytest.raises(ValueError, match=r"^items\[0\]\.payload: "):
            p.encode_get_last_reply([turn_item(1, None)], include_payload=True)


class TestFrames:
    def test_header_parses(self) -> None:
        """parse_header gives (length, msg_type, flags, req_id)."""
        header = struct.pack("<IHHQ", 52, 5, 0, 2**64 - 1)
        assert p.parse_header(header) == (52, 5, 0, 2**64 - 1)

    def test_header_over_64_mib_is_refused(self) -> None:
        """A header announcing more than 64 MiB is a ProtocolError; exactly 64 MiB is fine."""
        assert p.parse_header(struct.pack("<IHHQ", p.MAX_PAYLOAD, 9, 0, 1)).length == 2**26
        with pytest.raises(ProtocolError, match="GET_BLOB frame: announces 67108865"):
            p.parse_header(struct.pack("<IHHQ", p.MAX_PAYLOAD + 1, 9, 0, 1))

    def test_header_of_the_wrong_size(self) -> None:
        """A header is exactly 16 bytes."""
        with pytest.raises(ProtocolError, match="frame header: 15 bytes"):
            p.parse_header(b"\0" * 15)

    def test_reader_reassembles_a_stream_fed_byte_by_byte(self) -> None:
        """Frames split at any point come out whole and in order."""
        stream = p.frame(MsgType.HELLO, 1, b"\x01\x00" * 5) + p.frame(MsgType.GET_HEAD, 2, b"")
        stream += p.frame(MsgType.APPEND_TURN, 3, b"x" * 52)
        reader = p.FrameReader()
        frames = [frame for byte in stream for frame in reader.feed(bytes([byte]))]
        assert [(f.msg_type, f.req_id, len(f.payload)) for f in frames] == [
            (1, 1, 10),
            (4, 2, 0),
            (5, 3, 52),
        ]
        assert reader.buffered == 0

    def test_reader_returns_every_frame_of_one_chunk(self) -> None:
        """One chunk holding several frames and part of the next yields the whole ones."""
        reader = p.FrameReader()
        chunk = p.frame(MsgType.ERROR, 4, p.encode_error(422, "unknown msg_type")) * 2
        frames = reader.feed(chunk + chunk[:10])
        assert [p.decode_error(f.payload).code for f in frames] == [422, 422]
        assert reader.buffered == 10

    def test_reader_refuses_an_oversized_frame_at_its_header(self) -> None:
        """An oversized header raises at once, without waiting for its 64 MiB."""
        with pytest.raises(ProtocolError, match="over the 67108864-byte limit"):
            p.FrameReader().feed(struct.pack("<IHHQ", p.MAX_PAYLOAD + 1, 6, 0, 1))

    def test_frame_refuses_an_oversized_payload(self) -> None:
        """frame() will not build what the server would drop."""
        with pytest.raises(ValueError, match=r"^payload: "):
            p.frame(MsgType.PUT_BLOB, 1, bytes(p.MAX_PAYLOAD + 1))


class TestArgumentChecks:
    @pytest.mark.parametrize(
        ("encode", "field"),
        [
            (lambda: p.encode_get_blob(b"\0" * 31), "hash"),
            (lambda: p.encode_attach_fs(1, b"\0" * 31), "root_hash"),
            (lambda: append(0, b"\x91\x01", fs_root_hash=b"\0" * 31), "fs_root_hash"),
            (lambda: append(0, b"\x91\x01", content_hash=b"\0" * 31), "content_hash"),
            (lambda: p.encode_put_blob(b"data", hash=b"\0" * 31), "hash"),
            (lambda: p.encode_append_ack(1, 2, 3, b"\0" * 31), "content_hash"),
        ],
    )
    def test_short_hash_is_refused(self, encode: Callable[[], object], field: str) -> None:
        """A 31-byte hash is a ValueError naming the field."""
        with pytest.raises(ValueError, match=rf"^{field}: 31 bytes, a BLAKE3 hash is 32$"):
            encode()

    @pytest.mark.parametrize(
        ("encode", "field"),
        [
            (lambda: p.encode_get_head(-1), "context_id"),
            (lambda: p.encode_ctx_create(-1), "base_turn_id"),
            (lambda: p.encode_ctx_fork(2**64), "base_turn_id"),
            (lambda: append(-1, b"\x91\x01"), "parent_turn_id"),
            (lambda: p.encode_get_last(1, 2**32, False), "limit"),
            (lambda: p.encode_attach_fs(-5, HASH), "turn_id"),
            (lambda: p.encode_hello(version=2**16), "version"),
            (lambda: p.encode_head_reply(1, 2, 2**32), "head_depth"),
            (lambda: p.frame(MsgType.HELLO, -1, b""), "req_id"),
            (
                lambda: p.encode_append_turn(1, 0, TYPE_ID, 2**32, b"\x91\x01"),
                "type_version",
            ),
        ],
    )
    def test_integer_out_of_range_is_refused(
        self, encode: Callable[[], object], field: str
    ) -> None:
        """A negative id or an integer too wide for its field is a ValueError naming it."""
        with pytest.raises(ValueError, match=rf"^{field}: -?[0-9]+ is not a u(16|32|64) "):
            encode()

    def test_tag_longer_than_a_u16_length_is_refused(self) -> None:
        """HELLO's tag length is a u16: 65536 bytes of tag is a ValueError naming tag."""
        assert p.parse_hello(p.encode_hello("x" * 65535)).tag == "x" * 65535
        with pytest.raises(ValueError, match=r"^tag: 65536 bytes, more than a u16 length holds$"):
            p.encode_hello("x" * 65536)

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({"uncompressed_len": 3}, "uncompressed_len"),
            ({"content_hash": HASH}, "content_hash"),
            ({"compression": 2}, "compression"),
            ({"compression": 1}, "uncompressed_len"),
            ({"compression": 1, "uncompressed_len": 2}, "content_hash"),
        ],
    )
    def test_append_the_server_would_reject_is_refused(
        self, options: dict[str, Any], field: str
    ) -> None:
        """A length or hash that does not match the payload, an unknown compression, or a
        compressed payload without its raw length and hash never reaches the wire."""
        with pytest.raises(ValueError, match=rf"^{field}: "):
            append(0, b"\x91\x01", **options)

    def test_put_blob_hash_must_match(self) -> None:
        """PUT_BLOB with a hash that is not the data's BLAKE3 is refused."""
        with pytest.raises(ValueError, match=r"^hash: not the BLAKE3 of data$"):
            p.encode_put_blob(b"data", hash=HASH)

    def test_text_fields_must_be_utf8(self) -> None:
        """A type_id that cannot be UTF-8 and a HELLO meta that is not are refused."""
        with pytest.raises(ValueError, match=r"^type_id: "):
            p.encode_append_turn(1, 0, "\udc80", 1, b"")
        with pytest.raises(ValueError, match=r"^meta: "):
            p.encode_hello(meta=b"\xff")

    def test_payload_over_the_frame_limit_is_refused(self) -> None:
        """A blob that would make a frame over 64 MiB is refused before it is hashed."""
        with pytest.raises(ValueError, match=r"^data: the request would be 67108900 bytes"):
            p.encode_put_blob(bytes(p.MAX_PAYLOAD))


class TestMsgpackPayloads:
    def test_numeric_map_keeps_wide_unsorted_keys(self) -> None:
        """uint64-encoded keys in any order decode to ints, in the order written."""
        payload = bytes.fromhex(load("types/msgpack_numeric_map.json")["payload_hex"])
        value = msgpack.unpackb(payload, strict_map_key=False)
        assert list(value.items()) == [(2, "two"), (1, "one"), (3, "three")]
        assert p.normalise_keys(value) == value

    def test_conversation_item_with_string_keys_normalises(self) -> None:
        """Go's digit-string keys become integer tags at every depth; other keys stay."""
        payload = bytes.fromhex(load("types/msgpack_conversation_item.json")["payload_hex"])
        value = p.normalise_keys(msgpack.unpackb(payload, strict_map_key=False))
        assert sorted(value) == [1, 2, 3, 4, 10, 11, 12, 13, 20, 21, 22, 30]
        assert (value[1], value[2], value[3], value[4]) == (
            "user_input",
            "complete",
            1_700_000_000_000,
            "item-1",
        )
        assert value[10] == {1: "Hello from fixtures", 2: ["file.txt"]}
        assert value[11] is None
        assert value[30] == {
            1: "fixture-tag",
            2: "Fixture Title",
            3: ["alpha", "beta"],
            4: {"env": "test"},
            10: None,
        }

    def test_metadata_of_the_conversation_fixture(self) -> None:
        """Key 30 of Go's fixture, string keys and all, gives its tag, title and labels."""
        payload = bytes.fromhex(load("types/msgpack_conversation_item.json")["payload_hex"])
        assert p.context_metadata(payload) == p.ContextMetadata(
            client_tag="fixture-tag", title="Fixture Title", labels=("alpha", "beta")
        )

    def test_metadata_with_integer_keys_and_provenance(self) -> None:
        """Orchestra's own first turn (integer keys) gives its metadata and provenance."""
        payload = pack({1: "start", 30: {1: "orchestra", 2: "Run", 3: ["a"], 10: {1: 5, 43: 7}}})
        metadata = p.context_metadata(payload)
        assert metadata == p.ContextMetadata("orchestra", "Run", ("a",), {1: 5, 43: 7})

    @pytest.mark.parametrize(
        "payload",
        [
            pack({1: "no metadata"}),
            pack([30]),
            pack({30: "not a map"}),
            b"\xc1",
            b"\x81\x91\x01\x02",
        ],
    )
    def test_payload_without_metadata(self, payload: bytes) -> None:
        """No key-30 map (or no msgpack map at all) means no metadata, not an error."""
        assert p.context_metadata(payload) is None

    def test_normalise_keys_only_converts_digit_strings(self) -> None:
        """Digit strings become ints inside lists too; "-1", "1a" and "²" stay strings."""
        value = {"7": [{"2": "x"}], "-1": 1, "1a": 2, "²": 3, 4: ("5",)}
        assert p.normalise_keys(value) == {7: [{2: "x"}], "-1": 1, "1a": 2, "²": 3, 4: ("5",)}


class TestFsTree:
    fixture = load("fstree/fstree_basic.json")

    def trees(self) -> dict[bytes, bytes]:
        return {
            bytes.fromhex(key): bytes.fromhex(tree) for key, tree in self.fixture["trees"].items()
        }

    def test_tree_hash_is_blake3_of_its_bytes(self) -> None:
        """Each tree object is stored under the BLAKE3 of its msgpack bytes."""
        for key, tree in self.trees().items():
            assert content_hash(tree) == key

    def test_walk_from_root_rebuilds_the_files(self) -> None:
        """Walking the trees from the root gives every file's path and content hash."""
        trees = self.trees()
        files: dict[str, str] = {}

        def walk(tree_hash: bytes, prefix: str) -> None:
            for entry in p.decode_tree(trees[tree_hash]):
                if entry.kind == p.EntryKind.DIR:
                    walk(entry.hash, f"{prefix}{entry.name}/")
                else:
                    files[prefix + entry.name] = entry.hash.hex()

        walk(bytes.fromhex(self.fixture["root_hash_hex"]), "")
        assert files == self.fixture["files"]

    def test_entries_carry_kind_mode_and_size(self) -> None:
        """The root lists README.md (0644, 6 bytes), script.sh (0755) and the src directory."""
        root = p.decode_tree(self.trees()[bytes.fromhex(self.fixture["root_hash_hex"])])
        assert [(e.name, e.kind, oct(e.mode), e.size) for e in root] == [
            ("README.md", p.EntryKind.FILE, "0o644", 6),
            ("script.sh", p.EntryKind.FILE, "0o755", 19),
            ("src", p.EntryKind.DIR, "0o755", 0),
        ]

    def test_blake3_vectors(self) -> None:
        """BLAKE3 of b"" and b"hello" match the fixture's vectors."""
        assert content_hash(b"").hex() == self.fixture["blake3"]["empty"]
        assert content_hash(b"hello").hex() == self.fixture["blake3"]["hello"]

    @pytest.mark.parametrize(
        ("tree", "problem"),
        [
            (pack({1: "not an array"}), "a msgpack dict, expected an array"),
            (pack(["entry"]), "entry 0: a msgpack str, expected a map"),
            (pack([{1: "a", 2: 7, 5: HASH}]), "entry 0: kind .key 2. is 7"),
            (pack([{1: "a", 2: 0, 5: HASH[:31]}]), "entry 0: hash .key 5."),
            (pack([{2: 0, 5: HASH}]), "entry 0: name .key 1. is None"),
            (b"\xc1", "not msgpack"),
        ],
    )
    def test_malformed_tree_is_refused(self, tree: bytes, problem: str) -> None:
        """A tree that is not an array of well-formed entries is a ProtocolError."""
        with pytest.raises(ProtocolError, match=rf"^fs tree: {problem}"):
            p.decode_tree(tree)

    def test_missing_mode_and_size_read_as_zero(self) -> None:
        """Like the server, an entry without mode or size reads them as 0."""
        [entry] = p.decode_tree(pack([{"1": "a", "2": 1, "5": HASH}]))
        assert (entry.name, entry.kind, entry.mode, entry.size) == ("a", p.EntryKind.DIR, 0, 0)
