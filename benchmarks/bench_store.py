"""How fast each store appends turns and reads a session back, side by side, in one run.

1. Appends per second, turns of about 300 bytes:
   a. one writer appending ``--turns`` turns to one context, each append awaited before the
      next (what the engine does: a checkpoint per node);
   b. 20 writers at once, each appending 200 turns to a context of its own (where the CXDB
      client's pipelining shows: every request goes over one connection).
2. Time to read a 1,000-turn session whole: ``get_last(context, limit=1000)``.

Stores: the embedded SQLite store (in a temporary directory under the working directory, not
/tmp); the CXDB client against the fake server run as a separate process (so that the server
does not share the client's GIL); and, when ``CXDB_URL`` is set, against that server. Each
CXDB store is also measured with pipelining disabled, as the baseline in the same run: a
client that sends a request only once the previous one's reply is in. The lock is around
each request, not each store call, because one ``get_last`` of more than 256 turns is itself
many requests (the payloads are fetched as blobs, pipelined). For reference, the read also
times the same turns fetched in one GET_LAST reply that carries their payloads.

    uv run python benchmarks/bench_store.py [--turns 2000] [--repeat 5]

Every figure is the median of ``--repeat`` runs, range in brackets; the stores take turns
within each run, so that drift on the machine falls on all of them alike.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx

from orchestra.errors import StoreError
from orchestra.store.base import Store, pack
from orchestra.store.cxdb.client import CxdbClient
from orchestra.store.cxdb.store import _INLINE_TURNS, CxdbStore, parse_cxdb_url
from orchestra.store.embedded import EmbeddedStore

WRITERS = 20
TURNS_PER_WRITER = 200
SESSION_TURNS = 1000
TYPE_ID = "orchestra.Checkpoint"
#: the benchmark's connections say who they are on a shared server
CLIENT_TAG = "orchestra-bench"


def payload(writer: int, turn: int) -> bytes:
    """A checkpoint-sized turn (about 300 bytes of msgpack), distinct for every turn so
    that no two share a blob."""
    return pack(
        {
            "node_id": f"w{writer}-n{turn}",
            "status": "success",
            "outcome": {"status": "success", "notes": "x" * 160},
            "context_set": {"last_stage": f"n{turn}", "turn": turn},
            "next_node": f"w{writer}-n{turn + 1}",
            "retries": {},
        }
    )


class OneRequestAtATime(CxdbClient):
    """The CXDB client with pipelining disabled: a request is sent only once the previous
    request's reply is in, whichever task sent it."""

    def __init__(self, host: str, port: int, *, client_tag: str = CLIENT_TAG) -> None:
        super().__init__(host, port, client_tag=client_tag)
        self._one_at_a_time = anyio.Lock()

    async def _request(self, *args: Any, **kwargs: Any) -> Any:
        async with self._one_at_a_time:
            return await super()._request(*args, **kwargs)


@attrs.frozen
class Variant:
    """A store to measure: its row label, and how to open a fresh store object on it."""

    label: str
    open: Callable[[], Awaitable[Store]]
    #: the label of the variant this one is the one-request-at-a-time baseline of
    baseline_of: str | None = None


def cxdb_variants(label: str, url: str) -> list[Variant]:
    """The CXDB client on ``url`` as it is, and with pipelining disabled."""
    address = parse_cxdb_url(url)

    def opener(client_class: type[CxdbClient]) -> Callable[[], Awaitable[Store]]:
        async def open_store() -> Store:
            client = client_class(address.host, address.port, client_tag=CLIENT_TAG)
            http = httpx.AsyncClient(base_url=address.http_base, timeout=30.0)
            return CxdbStore(address, client, http)

        return open_store

    return [
        Variant(label, opener(CxdbClient)),
        Variant(f"{label}, one request at a time", opener(OneRequestAtATime), baseline_of=label),
    ]


@attrs.define
class Figures:
    """Seconds per run of each measurement, and the client's in-flight peaks."""

    one_writer: list[float] = attrs.Factory(list)
    writers: list[float] = attrs.Factory(list)
    read: list[float] = attrs.Factory(list)
    #: the same turns as ``read``, in one GET_LAST reply with their payloads (CXDB only)
    one_reply: list[float] = attrs.Factory(list)
    writers_peak: list[int] = attrs.Factory(list)
    read_peak: list[int] = attrs.Factory(list)


@contextlib.contextmanager
def quiet_heap() -> Iterator[None]:
    """As in bench_engine.py: a full collection of the loaded modules must not land at
    random inside a measurement."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def run_once(variant: Variant, turns: int, figures: Figures) -> None:
    """One run of every measurement on ``variant``, each on a fresh store object (so that
    the client's in-flight peak is the measurement's own)."""
    # 1a. one writer, each append awaited
    store = await variant.open()
    context = (await store.create_context()).context_id
    records = []
    with quiet_heap():
        started = time.perf_counter()
        for turn in range(turns):
            records.append(await store.append_turn(context, TYPE_ID, 1, payload(0, turn)))
        figures.one_writer.append(time.perf_counter() - started)
    # the session to read: a fork whose head is the 1,000th turn holds exactly 1,000 turns
    session_turns = min(SESSION_TURNS, turns)
    session = (await store.fork_context(records[session_turns - 1].turn_id)).context_id
    await store.close()

    # 1b. writers at once, one context each
    store = await variant.open()
    contexts = [(await store.create_context()).context_id for _ in range(WRITERS)]

    async def write(writer: int, context: int) -> None:
        for turn in range(TURNS_PER_WRITER):
            await store.append_turn(context, TYPE_ID, 1, payload(writer + 1, turn))

    with quiet_heap():
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for writer, context in enumerate(contexts):
                group.start_soon(write, writer, context)
        figures.writers.append(time.perf_counter() - started)
    await store.close()
    if isinstance(store, CxdbStore):  # requests sent whose reply the client had not read
        figures.writers_peak.append(store.client.in_flight_peak)

    # 2. the whole session
    store = await variant.open()
    await store.get_head(session)  # connects, outside the measurement
    with quiet_heap():
        started = time.perf_counter()
        read = await store.get_last(session, limit=session_turns)
        figures.read.append(time.perf_counter() - started)
    assert len(read) == session_turns, (len(read), session_turns)
    assert read[-1].payload == payload(0, session_turns - 1)
    if isinstance(store, CxdbStore):
        with quiet_heap():
            started = time.perf_counter()
            items = await store.client.get_last(session, session_turns, include_payload=True)
            figures.one_reply.append(time.perf_counter() - started)
        assert [item.payload for item in items] == [turn.payload for turn in read]
    await store.close()
    if isinstance(store, CxdbStore):
        figures.read_peak.append(store.client.in_flight_peak)


async def reachable(url: str) -> str:
    """'' if the CXDB server at ``url`` answers, else why not."""
    try:
        store = await CxdbStore.open(url)
    except StoreError as err:
        return str(err)
    await store.close()
    return ""


@contextlib.contextmanager
def fake_cxdb_process(directory: Path) -> Iterator[str]:
    """The fake CXDB server in a process of its own; yields its URL, stops it on exit."""
    ports_file = directory / "cxdb-fake-ports.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestra.store.cxdb.fake", "--ports-file", str(ports_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once listening
        if not line:
            raise SystemExit(f"the fake CXDB server exited with status {process.wait()}")
        yield str(json.loads(line)["url"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def median(values: list[float]) -> float:
    return statistics.median(values)


def rate(count: int) -> Callable[[list[float]], str]:
    """Appends per second and µs per append (medians), with the range of rates."""

    def show(seconds: list[float]) -> str:
        low, high = count / max(seconds), count / min(seconds)
        return (
            f"{count / median(seconds):7,.0f} appends/s  {median(seconds) / count * 1e6:4.0f} µs"
            f" each  [{low:,.0f}-{high:,.0f}/s]"
        )

    return show


def duration(seconds: list[float]) -> str:
    return (
        f"{median(seconds) * 1000:7.1f} ms  [{min(seconds) * 1000:.1f}-"
        f"{max(seconds) * 1000:.1f} ms]"
    )


def report(
    title: str,
    rows: list[tuple[Variant, Figures]],
    measure: Callable[[Figures], list[float]],
    show: Callable[[list[float]], str],
    peaks: Callable[[Figures], list[int]] | None = None,
) -> None:
    """One measurement: a row per store, then for each CXDB store how fast it is against
    its one-request-at-a-time baseline and against the embedded store."""
    print(title)
    width = max(len(variant.label) for variant, _ in rows)
    for variant, figures in rows:
        line = f"   {variant.label:<{width}}  {show(measure(figures))}"
        if peaks is not None and peaks(figures):
            line += f"  client: {max(peaks(figures))} in flight at most"
        print(line)
    embedded = median(measure(rows[0][1]))
    for variant, figures in rows:
        baseline = next((f for v, f in rows if v.baseline_of == variant.label), None)
        if baseline is not None:
            mine = median(measure(figures))
            print(
                f"   {variant.label}: pipelined / one request at a time ="
                f" {median(measure(baseline)) / mine:.2f}x as fast;"
                f" {embedded / mine:.2f}x as fast as {rows[0][0].label}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000, help="turns for the single writer")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measurement (median)")
    args = parser.parse_args()
    turns, repeat = args.turns, args.repeat
    session_turns = min(SESSION_TURNS, turns)
    real_url = os.environ.get("CXDB_URL", "")
    real_problem = anyio.run(reachable, real_url) if real_url else ""

    # The embedded store writes where a user's would: under the working directory, not /tmp
    # (which may be a different, slower filesystem).
    with (
        tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-") as tmp,
        fake_cxdb_process(Path(tmp)) as fake_url,
    ):
        root = Path(tmp)

        async def embedded() -> Store:
            return await EmbeddedStore.open(root / "state.db")

        variants = [
            Variant("embedded SQLite", embedded),
            *cxdb_variants("CXDB fake (process)", fake_url),
        ]
        if real_url and not real_problem:
            variants += cxdb_variants("CXDB server at CXDB_URL", real_url)
        rows = [(variant, Figures()) for variant in variants]
        for _ in range(repeat):
            for variant, figures in rows:
                anyio.run(run_once, variant, turns, figures)

    print(
        f"Turns of {len(payload(0, 0))} bytes (msgpack); median of {repeat} runs, range in"
        " brackets."
    )
    if not real_url:
        print("(CXDB_URL not set: no real CXDB server measured)")
    elif real_problem:
        print(f"(CXDB_URL={real_url} not measured: {real_problem})")
    else:
        print(f"CXDB_URL={real_url}")

    print()
    report(
        f"1a. one writer, {turns} turns to one context, each append awaited",
        rows,
        lambda figures: figures.one_writer,
        rate(turns),
    )
    print()
    report(
        f"1b. {WRITERS} writers at once, {TURNS_PER_WRITER} turns each to a context of its own"
        f" ({WRITERS * TURNS_PER_WRITER} turns)",
        rows,
        lambda figures: figures.writers,
        rate(WRITERS * TURNS_PER_WRITER),
        lambda figures: figures.writers_peak,
    )
    print(
        "   (in flight: requests the client had sent and not yet read the reply of; the"
        " server's max_in_flight is not observable in a separate process)"
    )
    print()
    report(
        f"2. reading a {session_turns}-turn session whole: get_last(context,"
        f" limit={session_turns})",
        rows,
        lambda figures: figures.read,
        duration,
        lambda figures: figures.read_peak,
    )
    for variant, figures in rows:
        if figures.one_reply and variant.baseline_of is None:
            print(
                f"   {variant.label}: the same turns in one GET_LAST reply with their"
                f" payloads: {duration(figures.one_reply).strip()}; get_last is"
                f" {median(figures.read) / median(figures.one_reply):.1f}x that"
                f" (over {_INLINE_TURNS} turns it reads the headers first, then the payloads"
                " in one reply unless they are too large for one)"
            )


if __name__ == "__main__":
    main()
