"""CXDB's binary protocol as bytes: frames, requests and replies (``reference/cxdb.md`` §2).

Pure encoding and decoding, no I/O: the client and the fake server own the sockets. A frame
is a 16-byte little-endian :data:`HEADER` (payload length, message type, flags, request id)
followed by the payload. Each message has four functions, named after the side that calls
them::

    client: encode_<message>(...) -> request payload      decode_<message>(reply) -> value
    server: parse_<message>(request) -> fields            encode_<message>_reply(...) -> reply

The server closes the connection on any bad request and never says why (§2.5), so every
encoder checks its arguments (integer ranges, 32-byte hashes, UTF-8 text, the 64 MiB frame
limit, the payload's length and BLAKE3) and raises :class:`ValueError` naming the field
before anything is sent. Decoders and parsers raise :class:`ProtocolError`, naming the
message, when bytes do not have their message's layout.

Compression: the client sends payloads uncompressed (``compression=0``). ``compression=1``
(zstd) is passed through for bytes the caller compressed itself, with ``uncompressed_len``
and ``content_hash`` of the raw bytes given explicitly; nothing here depends on zstd.

The msgpack helpers at the end read what the server reads from payloads: digit-string keys
(:func:`normalise_keys`), a context's title and labels (:func:`context_metadata`, §1.6) and
filesystem tree objects (:func:`decode_tree`, §1.5).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

import attrs
import msgpack

from orchestra.errors import OrchestraError
from orchestra.store.base import content_hash as blake3_digest

__all__ = [
    "APPEND_FLAG_FS",
    "COMPRESSION_NONE",
    "COMPRESSION_ZSTD",
    "ENCODING_MSGPACK",
    "HEADER",
    "MAX_PAYLOAD",
    "AppendAck",
    "AppendTurnRequest",
    "BlobStored",
    "ContextMetadata",
    "EntryKind",
    "ErrorReply",
    "Frame",
    "FrameHeader",
    "FrameReader",
    "FsAttachment",
    "GetLastRequest",
    "Head",
    "HelloReply",
    "HelloRequest",
    "MsgType",
    "ProtocolError",
    "PutBlobRequest",
    "TreeEntry",
    "TurnItem",
    "context_metadata",
    "decode_append_ack",
    "decode_attach_fs",
    "decode_error",
    "decode_get_blob",
    "decode_get_last",
    "decode_head",
    "decode_hello_reply",
    "decode_put_blob",
    "decode_tree",
    "encode_append_ack",
    "encode_append_turn",
    "encode_attach_fs",
    "encode_attach_fs_reply",
    "encode_ctx_create",
    "encode_ctx_fork",
    "encode_error",
    "encode_get_blob",
    "encode_get_blob_reply",
    "encode_get_head",
    "encode_get_last",
    "encode_get_last_reply",
    "encode_head_reply",
    "encode_hello",
    "encode_hello_reply",
    "encode_put_blob",
    "encode_put_blob_reply",
    "frame",
    "normalise_keys",
    "parse_append_turn",
    "parse_attach_fs",
    "parse_ctx_create",
    "parse_ctx_fork",
    "parse_get_blob",
    "parse_get_head",
    "parse_get_last",
    "parse_header",
    "parse_hello",
    "parse_put_blob",
]


class MsgType(enum.IntEnum):
    """A frame's message type. A reply carries its request's type; ERROR is server-only."""

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


#: The frame header: payload length u32, msg_type u16, flags u16, req_id u64.
HEADER: Final = struct.Struct("<IHHQ")
#: The longest payload a frame may announce; the server drops the connection beyond it.
MAX_PAYLOAD: Final = 64 * 1024 * 1024
#: APPEND_TURN header flag: the request ends with an fs root hash to attach to the new turn.
APPEND_FLAG_FS: Final = 1
#: The only payload encoding CXDB projects (it stores the value without checking it).
ENCODING_MSGPACK: Final = 1
COMPRESSION_NONE: Final = 0
COMPRESSION_ZSTD: Final = 1

_HASH_SIZE = 32
# APPEND_TURN's fixed-size fields: two u64 ids, the type_id length, four u32s (type_version,
# encoding, compression, uncompressed_len), the hash, the payload and key lengths
_APPEND_FIXED_SIZE = 8 + 8 + 4 + 4 + 4 + 4 + 4 + _HASH_SIZE + 4 + 4
_PUT_BLOB_FIXED_SIZE = _HASH_SIZE + 4
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HELLO_REPLY = struct.Struct("<QH")
_HEAD_REPLY = struct.Struct("<QQI")
_APPEND_ACK = struct.Struct(f"<QQI{_HASH_SIZE}s")
_GET_LAST_REQUEST = struct.Struct("<QII")
_ATTACH_FS = struct.Struct(f"<Q{_HASH_SIZE}s")
_PUT_BLOB_REPLY = struct.Struct(f"<{_HASH_SIZE}sB")
_TURN_ITEM_IDS = struct.Struct("<QQI")
_TYPE_AND_CODEC = struct.Struct("<IIII")
_ERROR_CODE = struct.Struct("<I")

# §1.6: the payload key holding a context's metadata, and the keys inside it
_METADATA_KEY = 30
_CLIENT_TAG_KEY, _TITLE_KEY, _LABELS_KEY, _PROVENANCE_KEY = 1, 2, 3, 10


class ProtocolError(OrchestraError, ValueError):
    """Bytes that do not have the layout their message requires: a reply of the wrong
    length, a length field pointing past the end, bytes left over, a frame announcing more
    than :data:`MAX_PAYLOAD`. The connection is out of step and must be closed."""

    def __init__(self, subject: str, problem: str) -> None:
        super().__init__(f"{subject}: {problem}")
        #: what was being read, e.g. ``"APPEND_TURN reply"`` or ``"fs tree"``
        self.subject = subject
        self.problem = problem


def _subject(msg_type: int, part: str) -> str:
    try:
        name = MsgType(msg_type).name
    except ValueError:
        name = f"msg_type {msg_type}"
    return f"{name} {part}"


# ---------------------------------------------------------------- argument checks (ValueError)


def _uint(field: str, value: int, bits: int) -> int:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{field}: {value} is not a u{bits} (0 to {(1 << bits) - 1})")
    return value


def _hash(field: str, value: bytes) -> bytes:
    if len(value) != _HASH_SIZE:
        raise ValueError(f"{field}: {len(value)} bytes, a BLAKE3 hash is {_HASH_SIZE}")
    return bytes(value)


def _utf8(field: str, text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{field}: {text!r} cannot be encoded as UTF-8") from None


def _sized(field: str, data: bytes, length: struct.Struct = _U32) -> bytes:
    """``data`` after its length, as ``length`` packs it."""
    limit = (1 << (8 * length.size)) - 1
    if len(data) > limit:
        raise ValueError(f"{field}: {len(data)} bytes, more than a u{8 * length.size} length holds")
    return length.pack(len(data)) + data


def _within_frame(field: str, size: int, what: str) -> None:
    if size > MAX_PAYLOAD:
        raise ValueError(
            f"{field}: the {what} would be {size} bytes, over the {MAX_PAYLOAD}-byte frame limit"
        )


# ---------------------------------------------------------------- layout checks (ProtocolError)


def _fixed(payload: bytes, layout: struct.Struct, subject: str) -> tuple[Any, ...]:
    if len(payload) != layout.size:
        raise ProtocolError(subject, f"{len(payload)} bytes, expected {layout.size}")
    return layout.unpack(payload)


class _Cursor:
    """Reads a payload's fields in order; running short or leaving bytes over is a
    :class:`ProtocolError` naming the field."""

    def __init__(self, payload: bytes, subject: str) -> None:
        self._data = bytes(payload)
        self._offset = 0
        self.subject = subject

    def take(self, field: str, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            left = len(self._data) - self._offset
            raise ProtocolError(
                self.subject,
                f"truncated: {field} needs {size} bytes at offset {self._offset}, {left} left",
            )
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def uint(self, field: str, layout: struct.Struct) -> int:
        value: int = layout.unpack(self.take(field, layout.size))[0]
        return value

    def unpack(self, field: str, layout: struct.Struct) -> tuple[Any, ...]:
        return layout.unpack(self.take(field, layout.size))

    def sized(self, field: str, length: struct.Struct = _U32) -> bytes:
        return self.take(field, self.uint(f"{field} length", length))

    def text(self, field: str, length: struct.Struct = _U32) -> str:
        raw = self.sized(field, length)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise ProtocolError(self.subject, f"{field} is not UTF-8") from None

    def finish(self) -> None:
        extra = len(self._data) - self._offset
        if extra:
            raise ProtocolError(self.subject, f"{extra} bytes left over after the last field")


# ---------------------------------------------------------------- frames


class FrameHeader(NamedTuple):
    """A frame's 16-byte header, unpacked."""

    length: int
    msg_type: int
    flags: int
    req_id: int


@attrs.frozen
class Frame:
    """One whole frame. ``msg_type`` stays an int: the peer may send a type we do not know."""

    msg_type: int
    flags: int
    req_id: int
    payload: bytes = attrs.field(repr=False)


def frame(msg_type: int, req_id: int, payload: bytes, flags: int = 0) -> bytes:
    """The header for ``payload`` followed by the payload: the bytes to write."""
    _uint("msg_type", msg_type, 16)
    _uint("req_id", req_id, 64)
    _uint("flags", flags, 16)
    _within_frame("payload", len(payload), "frame")
    return HEADER.pack(len(payload), msg_type, flags, req_id) + payload


def parse_header(header: bytes) -> FrameHeader:
    """The 16 header bytes as (length, msg_type, flags, req_id); refuses an announced length
    over :data:`MAX_PAYLOAD`, which the server would not send and we will not buffer."""
    if len(header) != HEADER.size:
        raise ProtocolError("frame header", f"{len(header)} bytes, expected {HEADER.size}")
    length, msg_type, flags, req_id = HEADER.unpack(header)
    if length > MAX_PAYLOAD:
        raise ProtocolError(
            _subject(msg_type, "frame"),
            f"announces {length} payload bytes, over the {MAX_PAYLOAD}-byte limit",
        )
    return FrameHeader(length, msg_type, flags, req_id)


class FrameReader:
    """Cuts a byte stream into frames: feed it whatever the socket returned and get back the
    frames that completed. A header over the size limit raises :class:`ProtocolError` as
    soon as it arrives; the stream is then out of step and the reader must be dropped."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of a frame not yet complete (non-zero at end of stream: a torn frame)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data`` and return the frames it completed, in order."""
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        start = 0
        while len(buffer) - start >= HEADER.size:
            header = parse_header(bytes(buffer[start : start + HEADER.size]))
            end = start + HEADER.size + header.length
            if len(buffer) < end:
                break
            payload = bytes(buffer[start + HEADER.size : end])
            frames.append(Frame(header.msg_type, header.flags, header.req_id, payload))
            start = end
        del buffer[:start]
        return frames


# ---------------------------------------------------------------- HELLO


@attrs.frozen
class HelloRequest:
    version: int
    tag: str
    #: optional JSON; the server checks it is UTF-8 and otherwise ignores it
    meta: bytes


@attrs.frozen
class HelloReply:
    session_id: int
    protocol_version: int


def encode_hello(tag: str = "", meta: bytes = b"", *, version: int = 1) -> bytes:
    """HELLO: names this client (``tag``) in the server's session list; optional."""
    tag_bytes = _utf8("tag", tag)
    try:
        meta.decode()
    except UnicodeDecodeError:
        raise ValueError("meta: not UTF-8 (the server reads it as text)") from None
    _within_frame("meta", 2 + 2 + len(tag_bytes) + 4 + len(meta), "request")
    return b"".join(
        [
            _U16.pack(_uint("version", version, 16)),
            _sized("tag", tag_bytes, _U16),
            _sized("meta", meta),
        ]
    )


def parse_hello(payload: bytes) -> HelloRequest:
    """A HELLO request's fields; an empty payload (accepted by the server) is the default."""
    if not payload:
        return HelloRequest(version=1, tag="", meta=b"")
    cursor = _Cursor(payload, "HELLO request")
    version = cursor.uint("version", _U16)
    tag = cursor.text("tag", _U16)
    meta = cursor.sized("meta")
    cursor.finish()
    try:
        meta.decode()
    except UnicodeDecodeError:
        raise ProtocolError(cursor.subject, "meta is not UTF-8") from None
    return HelloRequest(version=version, tag=tag, meta=meta)


def encode_hello_reply(session_id: int, protocol_version: int = 1) -> bytes:
    return _HELLO_REPLY.pack(
        _uint("session_id", session_id, 64), _uint("protocol_version", protocol_version, 16)
    )


def decode_hello_reply(payload: bytes) -> HelloReply:
    session_id, protocol_version = _fixed(payload, _HELLO_REPLY, "HELLO reply")
    return HelloReply(session_id=session_id, protocol_version=protocol_version)


# ---------------------------------------------------------------- CTX_CREATE, CTX_FORK, GET_HEAD


def encode_ctx_create(base_turn_id: int) -> bytes:
    """CTX_CREATE: a new context whose head is ``base_turn_id`` (0: empty)."""
    return _U64.pack(_uint("base_turn_id", base_turn_id, 64))


def encode_ctx_fork(base_turn_id: int) -> bytes:
    """CTX_FORK: a new context whose head is the existing turn ``base_turn_id``."""
    return _U64.pack(_uint("base_turn_id", base_turn_id, 64))


def encode_get_head(context_id: int) -> bytes:
    return _U64.pack(_uint("context_id", context_id, 64))


def parse_ctx_create(payload: bytes) -> int:
    """The base_turn_id of a CTX_CREATE request."""
    base_turn_id: int = _fixed(payload, _U64, "CTX_CREATE request")[0]
    return base_turn_id


def parse_ctx_fork(payload: bytes) -> int:
    """The base_turn_id of a CTX_FORK request."""
    base_turn_id: int = _fixed(payload, _U64, "CTX_FORK request")[0]
    return base_turn_id


def parse_get_head(payload: bytes) -> int:
    """The context_id of a GET_HEAD request."""
    context_id: int = _fixed(payload, _U64, "GET_HEAD request")[0]
    return context_id


@attrs.frozen
class Head:
    """The reply to CTX_CREATE, CTX_FORK and GET_HEAD. An empty context has
    ``head_turn_id`` 0 and depth 0, as does a context of one turn: tell them apart by the id."""

    context_id: int
    head_turn_id: int
    head_depth: int


def encode_head_reply(context_id: int, head_turn_id: int, head_depth: int) -> bytes:
    """The reply to CTX_CREATE, CTX_FORK and GET_HEAD."""
    return _HEAD_REPLY.pack(
        _uint("context_id", context_id, 64),
        _uint("head_turn_id", head_turn_id, 64),
        _uint("head_depth", head_depth, 32),
    )


def decode_head(payload: bytes, msg_type: MsgType = MsgType.GET_HEAD) -> Head:
    """The reply to CTX_CREATE, CTX_FORK or GET_HEAD (``msg_type`` names it in errors)."""
    context_id, head_turn_id, head_depth = _fixed(payload, _HEAD_REPLY, _subject(msg_type, "reply"))
    return Head(context_id=context_id, head_turn_id=head_turn_id, head_depth=head_depth)


# ---------------------------------------------------------------- APPEND_TURN


@attrs.frozen
class AppendTurnRequest:
    context_id: int
    #: 0: the context's current head
    parent_turn_id: int
    type_id: str
    type_version: int
    #: as sent: zstd bytes when ``compression`` is 1
    payload: bytes = attrs.field(repr=False)
    encoding: int
    compression: int
    uncompressed_len: int
    #: BLAKE3 of the uncompressed payload
    content_hash: bytes = attrs.field(repr=False)
    #: parsed and then ignored by the server (§0 #4)
    idempotency_key: bytes
    #: present when the frame has :data:`APPEND_FLAG_FS`
    fs_root_hash: bytes | None


@attrs.frozen
class AppendAck:
    context_id: int
    turn_id: int
    depth: int
    content_hash: bytes = attrs.field(repr=False)


def encode_append_turn(
    context_id: int,
    parent_turn_id: int,
    type_id: str,
    type_version: int,
    payload: bytes,
    *,
    encoding: int = ENCODING_MSGPACK,
    compression: int = COMPRESSION_NONE,
    uncompressed_len: int | None = None,
    content_hash: bytes | None = None,
    idempotency_key: bytes = b"",
    fs_root_hash: bytes | None = None,
) -> tuple[int, bytes]:
    """APPEND_TURN as (frame flags, payload). Uncompressed, ``uncompressed_len`` and
    ``content_hash`` default to the payload's, and given ones must match: the server checks
    both and drops the connection on a mismatch. With ``compression=1`` the payload is a
    zstd frame the caller made, and both must be given for the raw bytes."""
    _uint("context_id", context_id, 64)
    _uint("parent_turn_id", parent_turn_id, 64)
    type_id_bytes = _utf8("type_id", type_id)
    _uint("type_version", type_version, 32)
    _uint("encoding", encoding, 32)
    if fs_root_hash is not None:
        fs_root_hash = _hash("fs_root_hash", fs_root_hash)
    size = _APPEND_FIXED_SIZE + len(type_id_bytes) + len(payload) + len(idempotency_key)
    if fs_root_hash is not None:
        size += _HASH_SIZE
    _within_frame("payload", size, "request")
    if compression == COMPRESSION_NONE:
        if uncompressed_len is None:
            uncompressed_len = len(payload)
        elif uncompressed_len != len(payload):
            raise ValueError(
                f"uncompressed_len: {uncompressed_len}, but the uncompressed payload "
                f"is {len(payload)} bytes"
            )
        actual_hash = blake3_digest(payload)
        if content_hash is None:
            content_hash = actual_hash
        elif _hash("content_hash", content_hash) != actual_hash:
            raise ValueError("content_hash: not the BLAKE3 of the payload")
    elif compression == COMPRESSION_ZSTD:
        if uncompressed_len is None:
            raise ValueError("uncompressed_len: required with compression=1 (zstd)")
        if content_hash is None:
            raise ValueError("content_hash: required with compression=1 (zstd)")
    else:
        raise ValueError(f"compression: {compression} is neither 0 (none) nor 1 (zstd)")
    body = b"".join(
        [
            _U64.pack(context_id),
            _U64.pack(parent_turn_id),
            _sized("type_id", type_id_bytes),
            _TYPE_AND_CODEC.pack(
                type_version, encoding, compression, _uint("uncompressed_len", uncompressed_len, 32)
            ),
            _hash("content_hash", content_hash),
            _sized("payload", payload),
            _sized("idempotency_key", idempotency_key),
            b"" if fs_root_hash is None else fs_root_hash,
        ]
    )
    return (0 if fs_root_hash is None else APPEND_FLAG_FS), body


def parse_append_turn(flags: int, payload: bytes) -> AppendTurnRequest:
    """An APPEND_TURN request's fields; ``flags`` (the frame's) says whether an fs root
    hash ends it."""
    cursor = _Cursor(payload, "APPEND_TURN request")
    context_id = cursor.uint("context_id", _U64)
    parent_turn_id = cursor.uint("parent_turn_id", _U64)
    type_id = cursor.text("type_id")
    type_version, encoding, compression, uncompressed_len = cursor.unpack(
        "type_version, encoding, compression, uncompressed_len", _TYPE_AND_CODEC
    )
    content_hash = cursor.take("content_hash", _HASH_SIZE)
    turn_payload = cursor.sized("payload")
    idempotency_key = cursor.sized("idempotency_key")
    fs_root_hash = cursor.take("fs_root_hash", _HASH_SIZE) if flags & APPEND_FLAG_FS else None
    cursor.finish()
    return AppendTurnRequest(
        context_id=context_id,
        parent_turn_id=parent_turn_id,
        type_id=type_id,
        type_version=type_version,
        payload=turn_payload,
        encoding=encoding,
        compression=compression,
        uncompressed_len=uncompressed_len,
        content_hash=content_hash,
        idempotency_key=idempotency_key,
        fs_root_hash=fs_root_hash,
    )


def encode_append_ack(context_id: int, turn_id: int, depth: int, content_hash: bytes) -> bytes:
    return _APPEND_ACK.pack(
        _uint("context_id", context_id, 64),
        _uint("turn_id", turn_id, 64),
        _uint("depth", depth, 32),
        _hash("content_hash", content_hash),
    )


def decode_append_ack(payload: bytes) -> AppendAck:
    context_id, turn_id, depth, content_hash = _fixed(payload, _APPEND_ACK, "APPEND_TURN reply")
    return AppendAck(context_id=context_id, turn_id=turn_id, depth=depth, content_hash=content_hash)


# ---------------------------------------------------------------- GET_LAST


@attrs.frozen
class GetLastRequest:
    context_id: int
    limit: int
    include_payload: bool


@attrs.frozen
class TurnItem:
    """A turn as GET_LAST lists it. With payloads, ``payload`` holds the raw bytes,
    ``compression`` is 0 and ``uncompressed_len`` their length; without, ``payload`` is None
    and the two are as the turn was sent."""

    turn_id: int
    parent_turn_id: int
    depth: int
    type_id: str
    type_version: int
    encoding: int
    compression: int
    uncompressed_len: int
    content_hash: bytes = attrs.field(repr=False)
    payload: bytes | None = attrs.field(default=None, repr=False)


def encode_get_last(context_id: int, limit: int, include_payload: bool) -> bytes:
    """GET_LAST: the last ``limit`` turns of the context's history (0 gives none)."""
    return _GET_LAST_REQUEST.pack(
        _uint("context_id", context_id, 64), _uint("limit", limit, 32), int(include_payload)
    )


def parse_get_last(payload: bytes) -> GetLastRequest:
    """A GET_LAST request's fields; any non-zero include_payload means yes, as on the server."""
    context_id, limit, include_payload = _fixed(payload, _GET_LAST_REQUEST, "GET_LAST request")
    return GetLastRequest(context_id=context_id, limit=limit, include_payload=include_payload != 0)


def encode_get_last_reply(items: Sequence[TurnItem], include_payload: bool) -> bytes:
    """``items`` oldest first; their payloads are written only when ``include_payload``,
    and must then be present."""
    parts = [_U32.pack(_uint("items", len(items), 32))]
    for index, item in enumerate(items):
        where = f"items[{index}]"
        parts += [
            _TURN_ITEM_IDS.pack(
                _uint(f"{where}.turn_id", item.turn_id, 64),
                _uint(f"{where}.parent_turn_id", item.parent_turn_id, 64),
                _uint(f"{where}.depth", item.depth, 32),
            ),
            _sized(f"{where}.type_id", _utf8(f"{where}.type_id", item.type_id)),
            _TYPE_AND_CODEC.pack(
                _uint(f"{where}.type_version", item.type_version, 32),
                _uint(f"{where}.encoding", item.encoding, 32),
                _uint(f"{where}.compression", item.compression, 32),
                _uint(f"{where}.uncompressed_len", item.uncompressed_len, 32),
            ),
            _hash(f"{where}.content_hash", item.content_hash),
        ]
        if include_payload:
            if item.payload is None:
                raise ValueError(f"{where}.payload: missing, but payloads were requested")
            parts.append(_sized(f"{where}.payload", item.payload))
    body = b"".join(parts)
    _within_frame("items", len(body), "reply")
    return body


def decode_get_last(payload: bytes, include_payload: bool) -> list[TurnItem]:
    """The turns of a GET_LAST reply, oldest first. ``include_payload`` must be what the
    request asked: only then does each item carry a payload length (§2.4)."""
    cursor = _Cursor(payload, "GET_LAST reply")
    items = []
    for index in range(cursor.uint("count", _U32)):
        where = f"items[{index}]"
        turn_id, parent_turn_id, depth = cursor.unpack(f"{where} ids", _TURN_ITEM_IDS)
        type_id = cursor.text(f"{where}.type_id")
        type_version, encoding, compression, uncompressed_len = cursor.unpack(
            f"{where} codec", _TYPE_AND_CODEC
        )
        content_hash = cursor.take(f"{where}.content_hash", _HASH_SIZE)
        turn_payload = cursor.sized(f"{where}.payload") if include_payload else None
        items.append(
            TurnItem(
                turn_id=turn_id,
                parent_turn_id=parent_turn_id,
                depth=depth,
                type_id=type_id,
                type_version=type_version,
                encoding=encoding,
                compression=compression,
                uncompressed_len=uncompressed_len,
                content_hash=content_hash,
                payload=turn_payload,
            )
        )
    cursor.finish()
    return items


# ---------------------------------------------------------------- GET_BLOB


def encode_get_blob(hash: bytes) -> bytes:
    return _hash("hash", hash)


def parse_get_blob(payload: bytes) -> bytes:
    """The hash a GET_BLOB request asks for."""
    if len(payload) != _HASH_SIZE:
        raise ProtocolError("GET_BLOB request", f"{len(payload)} bytes, expected {_HASH_SIZE}")
    return bytes(payload)


def encode_get_blob_reply(data: bytes) -> bytes:
    body = _sized("data", data)
    _within_frame("data", len(body), "reply")
    return body


def decode_get_blob(payload: bytes) -> bytes:
    """The blob's raw (uncompressed) bytes."""
    cursor = _Cursor(payload, "GET_BLOB reply")
    data = cursor.sized("data")
    cursor.finish()
    return data


# ---------------------------------------------------------------- ATTACH_FS


@attrs.frozen
class FsAttachment:
    """An ATTACH_FS request, and its reply, which echoes it."""

    turn_id: int
    root_hash: bytes


def encode_attach_fs(turn_id: int, root_hash: bytes) -> bytes:
    """ATTACH_FS: the tree blob ``root_hash`` (already stored) as ``turn_id``'s snapshot."""
    return _ATTACH_FS.pack(_uint("turn_id", turn_id, 64), _hash("root_hash", root_hash))


def parse_attach_fs(payload: bytes) -> FsAttachment:
    turn_id, root_hash = _fixed(payload, _ATTACH_FS, "ATTACH_FS request")
    return FsAttachment(turn_id=turn_id, root_hash=root_hash)


def encode_attach_fs_reply(turn_id: int, root_hash: bytes) -> bytes:
    return encode_attach_fs(turn_id, root_hash)


def decode_attach_fs(payload: bytes) -> FsAttachment:
    turn_id, root_hash = _fixed(payload, _ATTACH_FS, "ATTACH_FS reply")
    return FsAttachment(turn_id=turn_id, root_hash=root_hash)


# ---------------------------------------------------------------- PUT_BLOB


@attrs.frozen
class PutBlobRequest:
    data: bytes = attrs.field(repr=False)
    hash: bytes


@attrs.frozen
class BlobStored:
    hash: bytes
    #: False when the store already held these bytes
    was_new: bool


def encode_put_blob(data: bytes, hash: bytes | None = None) -> bytes:
    """PUT_BLOB: ``data`` under its BLAKE3 (computed when not given; a given one must match,
    since the server verifies it)."""
    _within_frame("data", _PUT_BLOB_FIXED_SIZE + len(data), "request")
    actual_hash = blake3_digest(data)
    if hash is not None and _hash("hash", hash) != actual_hash:
        raise ValueError("hash: not the BLAKE3 of data")
    return actual_hash + _sized("data", data)


def parse_put_blob(payload: bytes) -> PutBlobRequest:
    cursor = _Cursor(payload, "PUT_BLOB request")
    blob_hash = cursor.take("hash", _HASH_SIZE)
    data = cursor.sized("data")
    cursor.finish()
    return PutBlobRequest(data=data, hash=blob_hash)


def encode_put_blob_reply(hash: bytes, was_new: bool) -> bytes:
    return _PUT_BLOB_REPLY.pack(_hash("hash", hash), int(was_new))


def decode_put_blob(payload: bytes) -> BlobStored:
    blob_hash, was_new = _fixed(payload, _PUT_BLOB_REPLY, "PUT_BLOB reply")
    return BlobStored(hash=blob_hash, was_new=was_new != 0)


# ---------------------------------------------------------------- ERROR


@attrs.frozen
class ErrorReply:
    """The server's only error frame: 422 ``unknown msg_type``. Every other failure closes
    the connection without a reply (§2.5)."""

    code: int
    detail: str


def encode_error(code: int, detail: str) -> bytes:
    body = _U32.pack(_uint("code", code, 32)) + _sized("detail", _utf8("detail", detail))
    _within_frame("detail", len(body), "reply")
    return body


def decode_error(payload: bytes) -> ErrorReply:
    cursor = _Cursor(payload, "ERROR reply")
    code = cursor.uint("code", _ERROR_CODE)
    # only ever shown to a person: a stray byte should not hide the code
    detail = cursor.sized("detail").decode(errors="replace")
    cursor.finish()
    return ErrorReply(code=code, detail=detail)


# ---------------------------------------------------------------- msgpack payloads


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _tag(key: Any) -> Any:
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    return key


def normalise_keys(value: Any) -> Any:
    """``value`` with every map key made of ASCII digits turned into an int, at any depth:
    how CXDB's projection reads tags, so Go's ``"1"`` and our ``1`` compare equal."""
    if isinstance(value, dict):
        return {_tag(key): normalise_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise_keys(item) for item in value]
    if isinstance(value, tuple):
        return tuple(normalise_keys(item) for item in value)
    return value


@attrs.frozen
class ContextMetadata:
    """Key 30 of a context's first (depth-0) turn: the client tag, title and labels that
    CXDB's UI, ``GET /v1/contexts`` and CQL search show, and the provenance map (§1.6)."""

    client_tag: str = ""
    title: str = ""
    labels: tuple[str, ...] = ()
    #: keys as in §1.6 (1 parent_context_id, 10 trace_id, ...); None when the turn has none
    provenance: Mapping[int, Any] | None = attrs.field(default=None, hash=False)


def context_metadata(payload: bytes) -> ContextMetadata | None:
    """The metadata in a depth-0 turn's msgpack payload, or None when it has none (not a
    map, no key 30, or not msgpack at all). Digit-string keys are read too, but the server
    only sees integer keys (§0 #11), so those are what Orchestra writes."""
    try:
        value = normalise_keys(_unpack(payload))
    except (ValueError, TypeError):  # not msgpack, or a map keyed by a map or an array
        return None
    if not isinstance(value, dict):
        return None
    metadata = value.get(_METADATA_KEY)
    if not isinstance(metadata, dict):
        return None
    client_tag = metadata.get(_CLIENT_TAG_KEY)
    title = metadata.get(_TITLE_KEY)
    labels = metadata.get(_LABELS_KEY)
    provenance = metadata.get(_PROVENANCE_KEY)
    return ContextMetadata(
        client_tag=client_tag if isinstance(client_tag, str) else "",
        title=title if isinstance(title, str) else "",
        # a label that is not a string is skipped, not fatal: the rest still shows
        labels=tuple(label for label in labels if isinstance(label, str))
        if isinstance(labels, list)
        else (),
        provenance=provenance if isinstance(provenance, dict) else None,
    )


class EntryKind(enum.IntEnum):
    FILE = 0
    DIR = 1
    SYMLINK = 2


@attrs.frozen
class TreeEntry:
    """One entry of an fs tree object. ``hash`` is the file's content hash, the subtree's
    hash for a directory, or the hash of a symlink's target path."""

    name: str
    kind: EntryKind
    #: POSIX permission bits
    mode: int
    #: 0 for directories
    size: int
    hash: bytes


def decode_tree(data: bytes) -> list[TreeEntry]:
    """The entries of an fs tree object: a msgpack array of maps keyed 1 name, 2 kind,
    3 mode, 4 size, 5 hash (integer or digit-string keys). A missing mode or size reads as
    0, as on the server; a missing name, kind or hash is a :class:`ProtocolError`."""
    try:
        value = normalise_keys(_unpack(data))
    except (ValueError, TypeError) as err:
        raise ProtocolError("fs tree", f"not msgpack ({err})") from None
    if not isinstance(value, list):
        raise ProtocolError("fs tree", f"a msgpack {type(value).__name__}, expected an array")
    return [_tree_entry(index, entry) for index, entry in enumerate(value)]


def _tree_entry(index: int, entry: Any) -> TreeEntry:
    def wrong(problem: str) -> ProtocolError:
        return ProtocolError("fs tree", f"entry {index}: {problem}")

    if not isinstance(entry, dict):
        raise wrong(f"a msgpack {type(entry).__name__}, expected a map")
    name, kind, mode, size, entry_hash = (entry.get(key) for key in (1, 2, 3, 4, 5))
    if not isinstance(name, str):
        raise wrong(f"name (key 1) is {name!r}, expected a string")
    if not isinstance(kind, int) or kind not in tuple(EntryKind):
        raise wrong(f"kind (key 2) is {kind!r}, expected 0 file, 1 dir or 2 symlink")
    mode = 0 if mode is None else mode
    size = 0 if size is None else size
    for field, number in (("mode (key 3)", mode), ("size (key 4)", size)):
        if not isinstance(number, int) or number < 0:
            raise wrong(f"{field} is {number!r}, expected a non-negative integer")
    if not isinstance(entry_hash, bytes) or len(entry_hash) != _HASH_SIZE:
        raise wrong(f"hash (key 5) is {entry_hash!r}, expected {_HASH_SIZE} bytes (msgpack bin)")
    return TreeEntry(name=name, kind=EntryKind(kind), mode=mode, size=size, hash=entry_hash)
