"""An async client for CXDB's binary protocol over one anyio TCP connection.

Requests are **pipelined**: a caller writes its frame and queues for the reply without
waiting for earlier replies, and the server answers strictly in order (``cxdb.md`` §2.1), so
replies are matched to requests by position. There is no background reader task: whichever
waiting caller holds the receive lock reads the next reply and hands it to its owner
(leader/follower), so the client needs no task group of its own and can be opened and closed
like a file.

CXDB answers most errors by closing the connection without a word (§2.5). The client
reconnects with backoff and says HELLO again. A request that is safe to repeat (every read,
a context create, a content-addressed blob put) is sent again; an append is not: see
:meth:`CxdbClient.append_turn`.
"""

from __future__ import annotations

import collections
import contextlib
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs

from orchestra.errors import ContextNotFound, StoreError
from orchestra.store.base import content_hash
from orchestra.store.cxdb import protocol as p

__all__ = ["ConnectionLost", "CxdbClient"]

T = TypeVar("T")

#: seconds to wait for a connection, and for a reply
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 30.0
#: reconnect attempts before giving up, and the first backoff delay (doubled each time)
ATTEMPTS = 6
FIRST_DELAY = 0.05


class ConnectionLost(Exception):
    """The connection closed (or broke) before the reply to a request arrived."""


@attrs.define(eq=False)
class _Slot:
    """One request waiting for its reply."""

    msg_type: int
    done: anyio.Event = attrs.Factory(anyio.Event)
    reply: tuple[int, bytes] | None = None  # (msg_type, payload)
    error: BaseException | None = None


class _Connection:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        #: the socket and the option number, when TCP_QUICKACK can be set on it (Linux)
        self._quickack = _quickack_socket(stream)
        self.send_lock = anyio.Lock()
        self.receive_lock = anyio.Lock()
        self.waiting: collections.deque[_Slot] = collections.deque()
        self.buffer = bytearray()
        self.broken: BaseException | None = None
        self.next_id = 1
        self.in_flight_peak = 0

    async def request(self, msg_type: int, payload: bytes, flags: int = 0) -> tuple[int, bytes]:
        if self.broken is not None:
            raise ConnectionLost(str(self.broken))
        slot = _Slot(msg_type)
        async with self.send_lock:
            req_id = self.next_id
            self.next_id += 1
            self.waiting.append(slot)
            self.in_flight_peak = max(self.in_flight_peak, len(self.waiting))
            try:
                await self.stream.send(p.frame(msg_type, req_id, payload, flags))
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as err:
                self._break(err)
        while slot.reply is None and slot.error is None:
            async with self.receive_lock:
                if slot.reply is not None or slot.error is not None:
                    break
                await self._read_one()
        if slot.error is not None:
            raise ConnectionLost(str(slot.error)) from None
        assert slot.reply is not None
        return slot.reply

    async def _read_one(self) -> None:
        """Read one reply and give it to the oldest waiting request."""
        try:
            header = await self._read_exactly(p.HEADER.size)
            length, msg_type, _flags, _req_id = p.parse_header(header)
            payload = await self._read_exactly(length)
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, p.ProtocolError) as err:
            self._break(err)
            return
        slot = self.waiting.popleft()
        slot.reply = (msg_type, payload)
        slot.done.set()

    async def _read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if self._quickack is not None:
                # CXDB writes a reply in several small pieces with Nagle's algorithm on: a
                # delayed ACK from here holds each next piece ~40 ms. Linux turns quick
                # ACKs off again after a while, so ask before every read.
                raw, option = self._quickack
                with contextlib.suppress(OSError):
                    raw.setsockopt(socket.IPPROTO_TCP, option, 1)
            self.buffer.extend(await self.stream.receive())
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def _break(self, error: BaseException) -> None:
        """Fail every waiting request: after a close nothing more will be answered."""
        self.broken = self.broken or error
        while self.waiting:
            slot = self.waiting.popleft()
            slot.error = error
            slot.done.set()

    async def close(self) -> None:
        self._break(ConnectionError("closed"))
        with contextlib.suppress(Exception):
            await self.stream.aclose()


def _quickack_socket(stream: anyio.abc.SocketStream) -> tuple[Any, int] | None:
    """The stream's socket (asyncio hands out a ``TransportSocket`` wrapper) and Linux's
    TCP_QUICKACK option number; None where there is no such option."""
    option = getattr(socket, "TCP_QUICKACK", None)
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if not isinstance(option, int) or not hasattr(raw, "setsockopt"):
        return None
    return raw, option


class CxdbClient:
    """One logical connection to a CXDB server's binary port, reconnecting as needed."""

    def __init__(self, host: str, port: int, *, client_tag: str = "orchestra") -> None:
        self.host = host
        self.port = port
        self.client_tag = client_tag
        self.session_id: int | None = None
        self._connection: _Connection | None = None
        self._connect_lock = anyio.Lock()
        self._context_locks: dict[int, anyio.Lock] = {}
        self._heads: dict[int, int] = {}  # the head turn id each context had at our last append
        self._closed = False
        #: the highest number of requests ever in flight on one connection (pipelining)
        self.in_flight_peak = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # connection ----------------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        connection = self._connection
        if connection is not None and connection.broken is None:
            return connection  # the common case: no lock to take
        async with self._connect_lock:
            if self._connection is not None and self._connection.broken is None:
                return self._connection
            if self._connection is not None:
                self.in_flight_peak = max(self.in_flight_peak, self._connection.in_flight_peak)
                await self._connection.close()
                self._connection = None
            if self._closed:
                raise StoreError(f"cxdb://{self.address}: the store is closed")
            delay, last = FIRST_DELAY, ""
            for attempt in range(ATTEMPTS):
                try:
                    with anyio.fail_after(CONNECT_TIMEOUT):
                        stream = await anyio.connect_tcp(self.host, self.port)
                    connection = _Connection(stream)
                    with anyio.fail_after(REQUEST_TIMEOUT):
                        _, reply = await connection.request(
                            p.MsgType.HELLO, p.encode_hello(self.client_tag)
                        )
                    self.session_id = p.decode_hello_reply(reply).session_id
                    self._connection = connection
                    return connection
                except (OSError, TimeoutError, ConnectionLost, p.ProtocolError) as err:
                    last = str(err) or type(err).__name__
                if attempt + 1 < ATTEMPTS:
                    await anyio.sleep(delay)
                    delay *= 2
            raise StoreError(
                f"cxdb://{self.address}: cannot reach the CXDB server ({last}); is it running? "
                "`orchestra doctor` checks the configured store"
            )

    async def _request(
        self,
        msg_type: int,
        payload: bytes,
        decode: Callable[[bytes], T],
        *,
        flags: int = 0,
        what: str,
        repeatable: bool = True,
    ) -> T:
        """Send one request and decode its reply.

        When the connection dies (or a reply is malformed, after which the stream cannot be
        trusted) a repeatable request is sent again on a new connection; a request that is
        not repeatable raises ``ConnectionLost`` for its caller to decide. If the server
        closes a fresh connection on the same request again, it refused it: CXDB closes
        instead of answering "not found" (``cxdb.md`` §2.5)."""
        closed = malformed = 0
        while True:
            connection = await self._connect()
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    reply_type, reply = await connection.request(msg_type, payload, flags)
            except (ConnectionLost, TimeoutError) as err:
                await self._drop(connection)
                if not repeatable:
                    raise ConnectionLost(f"{what}: {err}") from None
                closed += 1
                if closed >= 2:
                    raise ContextNotFound(
                        f"cxdb://{self.address}: the server closed the connection on {what}: "
                        "it does not have it"
                    ) from None
                continue
            if reply_type == p.MsgType.ERROR:
                error = p.decode_error(reply)
                raise StoreError(
                    f"cxdb://{self.address}: {what}: error {error.code}: {error.detail}"
                )
            try:
                if reply_type != msg_type:
                    raise p.ProtocolError(
                        f"{what} reply", f"message type {reply_type}, not {msg_type}"
                    )
                return decode(reply)
            except p.ProtocolError as err:
                await self._drop(connection)
                if not repeatable:
                    raise ConnectionLost(f"{what}: a malformed reply: {err}") from None
                malformed += 1
                if malformed >= 2:
                    raise StoreError(
                        f"cxdb://{self.address}: {what}: malformed replies twice: {err}"
                    ) from None

    async def _drop(self, connection: _Connection) -> None:
        connection._break(ConnectionError("dropped"))
        self.in_flight_peak = max(self.in_flight_peak, connection.in_flight_peak)

    async def close(self) -> None:
        self._closed = True
        if self._connection is not None:
            self.in_flight_peak = max(self.in_flight_peak, self._connection.in_flight_peak)
            await self._connection.close()
            self._connection = None

    # messages ------------------------------------------------------------------------------

    async def create_context(self, base_turn_id: int = 0) -> p.Head:
        head = await self._request(
            p.MsgType.CTX_CREATE,
            p.encode_ctx_create(base_turn_id),
            p.decode_head,
            what=f"creating a context at turn {base_turn_id}",
        )
        self._heads[head.context_id] = head.head_turn_id
        return head

    async def fork_context(self, base_turn_id: int) -> p.Head:
        head = await self._request(
            p.MsgType.CTX_FORK,
            p.encode_ctx_fork(base_turn_id),
            p.decode_head,
            what=f"forking at turn {base_turn_id}",
        )
        self._heads[head.context_id] = head.head_turn_id
        return head

    async def get_head(self, context_id: int) -> p.Head:
        head = await self._request(
            p.MsgType.GET_HEAD,
            p.encode_get_head(context_id),
            p.decode_head,
            what=f"reading the head of context {context_id}",
        )
        self._heads[context_id] = head.head_turn_id
        return head

    async def get_last(
        self, context_id: int, limit: int, include_payload: bool = True
    ) -> list[p.TurnItem]:
        return await self._request(
            p.MsgType.GET_LAST,
            p.encode_get_last(context_id, limit, include_payload),
            lambda reply: p.decode_get_last(reply, include_payload),
            what=f"reading the last {limit} turns of context {context_id}",
        )

    async def get_blob(self, blob_hash: bytes) -> bytes:
        return await self._request(
            p.MsgType.GET_BLOB,
            p.encode_get_blob(blob_hash),
            p.decode_get_blob,
            what=f"reading blob {blob_hash.hex()}",
        )

    async def put_blob(self, data: bytes) -> bytes:
        reply = await self._request(
            p.MsgType.PUT_BLOB, p.encode_put_blob(data), p.decode_put_blob, what="storing a blob"
        )
        return reply.hash

    async def attach_fs(self, turn_id: int, root_hash: bytes) -> p.FsAttachment:
        """Attach a filesystem snapshot (a tree blob already stored with put_blob) to a turn;
        later turns inherit it (``cxdb.md`` §1.5). Attaching again replaces it."""
        return await self._request(
            p.MsgType.ATTACH_FS,
            p.encode_attach_fs(turn_id, root_hash),
            p.decode_attach_fs,
            what=f"attaching snapshot {root_hash.hex()} to turn {turn_id}",
        )

    async def append_turn(
        self,
        context_id: int,
        type_id: str,
        type_version: int,
        payload: bytes,
        *,
        parent_turn_id: int = 0,
    ) -> tuple[p.AppendAck, int]:
        """Append exactly once; returns the acknowledgement and the turn's parent.

        CXDB ignores idempotency keys, so when the connection dies before the
        acknowledgement the client looks before it sends again: a turn with this payload's
        hash, newer than the head it knew before sending, means the append landed."""
        digest = content_hash(payload)
        flags, request = p.encode_append_turn(
            context_id, parent_turn_id, type_id, type_version, payload, content_hash=digest
        )
        what = f"appending a {type_id} turn to context {context_id}"
        lock = self._context_locks.setdefault(context_id, anyio.Lock())
        async with lock:  # appends to one context are sequential anyway: each moves the head
            known = self._heads.get(context_id)
            if known is None:
                known = (await self.get_head(context_id)).head_turn_id
            for attempt in range(ATTEMPTS):
                try:
                    ack = await self._request(
                        p.MsgType.APPEND_TURN,
                        request,
                        p.decode_append_ack,
                        flags=flags,
                        what=what,
                        repeatable=False,
                    )
                except ConnectionLost:
                    landed = await self._landed(context_id, known, digest)
                    if landed is None and attempt + 1 < ATTEMPTS:
                        continue
                    if landed is None:
                        raise StoreError(
                            f"cxdb://{self.address}: {what}: the connection kept dropping; the "
                            "turn was not written"
                        ) from None
                    ack = landed
                self._heads[context_id] = ack.turn_id
                return ack, parent_turn_id or known
            raise AssertionError("unreachable")

    async def _landed(self, context_id: int, known: int, digest: bytes) -> p.AppendAck | None:
        """The acknowledgement the append would have had, if it is among the context's
        newest turns (turn ids only grow, so it is newer than ``known``)."""
        for turn in reversed(await self.get_last(context_id, 8, include_payload=False)):
            if turn.turn_id <= known:
                return None
            if turn.content_hash == digest:
                return p.AppendAck(context_id, turn.turn_id, turn.depth, digest)
        return None
