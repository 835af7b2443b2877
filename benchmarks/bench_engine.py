"""The engine's own costs, side by side with LangGraph on the same shapes, in one process.

1. Per-node overhead of a 1,000-node linear pipeline with durable checkpoints (Orchestra's
   embedded SQLite store; LangGraph with its SQLite checkpointer). Nodes do no work.
2. Wall time of a 100-branch fan-out where each branch waits 50 ms.
3. Store bytes after 1,000 nodes that each add 1 KB to the context: growth per node.

    uv run --group bench python benchmarks/bench_engine.py [--nodes 1000] [--branches 100]

Each shape runs ``--repeat`` times (median and range printed); before each timed run both
frameworks get what `orchestra run` does after loading: gc.collect() then gc.freeze().
Without the ``bench`` group (LangGraph not installed) the Orchestra figures still print.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import operator
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import anyio
import attrs

from orchestra.engine.context import Context
from orchestra.events import CheckpointSaved, Event, ParallelCompleted, ParallelStarted
from orchestra.graph import Graph, Node
from orchestra.handlers import default_registry
from orchestra.handlers.base import StageRun
from orchestra.outcome import Outcome
from orchestra.pipeline import Pipeline
from orchestra.store.embedded import EmbeddedStore

PAYLOAD = "x" * 1024


class NoOp:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        return Outcome.success()


class Wait:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        await anyio.sleep(0.05)
        return Outcome.success()


class AddKilobyte:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        return Outcome.success(context_updates={f"data.{node.id}": PAYLOAD})


def linear_dot(nodes: int, node_type: str) -> str:
    lines = ["digraph linear {", "start [shape=Mdiamond]", "exit [shape=Msquare]"]
    lines += [f'n{i} [type="{node_type}"]' for i in range(nodes)]
    chain = " -> ".join(["start", *(f"n{i}" for i in range(nodes)), "exit"])
    return "\n".join([*lines, chain, "}"])


def fan_out_dot(branches: int) -> str:
    lines = [
        "digraph fan {",
        "start [shape=Mdiamond]",
        "exit [shape=Msquare]",
        f"fan [shape=component, max_parallel={branches}]",
        "join [shape=tripleoctagon]",
        "start -> fan",
        "join -> exit",
    ]
    for i in range(branches):
        lines += [f'b{i} [type="wait"]', f"fan -> b{i} -> join"]
    return "\n".join([*lines, "}"])


@attrs.frozen
class Timing:
    whole: float  # the run, from its start until run() returned (run directory written)
    durable: float  # until the exit node's checkpoint was durable in the store
    fan_out: float | None  # the parallel node, from ParallelStarted to ParallelCompleted


@contextlib.contextmanager
def quiet_heap() -> Iterator[None]:
    """What `orchestra run` does after loading (gc.collect + gc.freeze), applied to both
    frameworks alike: a full collection of the loaded modules takes tens of milliseconds
    here and would otherwise land at random inside a 50 ms measurement."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def orchestra_run(dot: str, workdir: Path, handlers: dict[str, Any]) -> Timing:
    registry = default_registry()
    for name, handler in handlers.items():
        registry.register(name, handler)
    store = await EmbeddedStore.open(workdir / "state.db")
    pipeline = Pipeline.load(dot, store=store, handlers=registry, logs_root=workdir / "run")
    marks: dict[str, float] = {}

    def mark(event: Event) -> None:
        if isinstance(event, ParallelStarted | ParallelCompleted):
            marks[type(event).__name__] = time.perf_counter()
        elif isinstance(event, CheckpointSaved) and event.node_id == "exit":
            marks["exit"] = time.perf_counter()

    with quiet_heap():
        started = time.perf_counter()
        result = await pipeline.run(on_event=mark)
        elapsed = time.perf_counter() - started
    await store.close()
    assert result.succeeded, result.failure_reason
    fan_out = (
        marks["ParallelCompleted"] - marks["ParallelStarted"]
        if "ParallelStarted" in marks
        else None
    )
    return Timing(elapsed, marks["exit"] - started, fan_out)


def file_cost(directory: Path, count: int) -> float:
    """Seconds this machine takes to make ``count`` directories with one small file each,
    written as the run directory writes them (a temporary file renamed into place)."""
    started = time.perf_counter()
    for i in range(count):
        stage = directory / f"n{i}"
        stage.mkdir()
        (stage / "status.json.tmp").write_text('{"outcome": "success"}\n')
        os.replace(stage / "status.json.tmp", stage / "status.json")
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], scale: float, unit: str) -> str:
    return f"{min(values) * scale:.0f}-{max(values) * scale:.0f} {unit}"


# LangGraph ------------------------------------------------------------------------------------


class LinearState(TypedDict, total=False):
    data: Annotated[list[str], operator.add]


def langgraph_linear(nodes: int, workdir: Path, payload: bool) -> float:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(LinearState)

    def make(i: int) -> Any:
        def step(state: LinearState) -> dict[str, Any]:
            return {"data": [PAYLOAD]} if payload else {}

        return step

    for i in range(nodes):
        builder.add_node(f"n{i}", make(i))
    builder.add_edge(START, "n0")
    for i in range(nodes - 1):
        builder.add_edge(f"n{i}", f"n{i + 1}")
    builder.add_edge(f"n{nodes - 1}", END)
    connection = sqlite3.connect(workdir / "langgraph.db", check_same_thread=False)
    graph = builder.compile(checkpointer=SqliteSaver(connection))
    with quiet_heap():
        started = time.perf_counter()
        graph.invoke(
            {"data": []}, {"configurable": {"thread_id": "1"}, "recursion_limit": nodes + 10}
        )
        elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


class FanState(TypedDict, total=False):
    done: Annotated[list[int], operator.add]


async def langgraph_fan_out(branches: int, workdir: Path) -> float:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(FanState)

    def make(i: int) -> Any:
        async def branch(state: FanState) -> dict[str, Any]:
            await asyncio.sleep(0.05)
            return {"done": [i]}

        return branch

    builder.add_node("fan", lambda state: {})
    builder.add_node("join", lambda state: {})
    builder.add_edge(START, "fan")
    for i in range(branches):
        builder.add_node(f"b{i}", make(i))
        builder.add_edge("fan", f"b{i}")
        builder.add_edge(f"b{i}", "join")
    builder.add_edge("join", END)
    async with AsyncSqliteSaver.from_conn_string(str(workdir / "fan.db")) as saver:
        graph = builder.compile(checkpointer=saver)
        with quiet_heap():
            started = time.perf_counter()
            await graph.ainvoke({"done": []}, {"configurable": {"thread_id": "1"}})
            return time.perf_counter() - started


def have_langgraph() -> bool:
    try:
        import langgraph.checkpoint.sqlite  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--branches", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each shape (median)")
    args = parser.parse_args()
    compare = have_langgraph()
    if not compare:
        print("(LangGraph not installed: run with `uv run --group bench` to compare)\n")
    n, repeat = args.nodes, args.repeat

    # Runs write where a user's would: under the working directory, not /tmp (which may be a
    # different, slower filesystem).
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-") as tmp:
        root = Path(tmp)
        work = itertools.count()

        def fresh(prefix: str) -> Path:
            path = root / f"{prefix}{next(work)}"
            path.mkdir()
            return path

        # 1. per-node overhead
        runs = [
            anyio.run(orchestra_run, linear_dot(n, "noop"), fresh("o1-"), {"noop": NoOp()})
            for _ in range(repeat)
        ]
        files = [file_cost(fresh("f1-"), n) for _ in range(repeat)]
        durable = [r.durable for r in runs]
        whole = [r.whole for r in runs]
        per = 1e6 / n
        print(f"1. linear pipeline, {n} no-op nodes, durable checkpoint after each")
        print(f"   (median of {repeat} runs, range in brackets)")
        print(
            f"   orchestra  {median(durable) * per:6.0f} µs per node  engine and store: until the"
            f" exit node's checkpoint is durable [{spread(durable, per, 'µs')}]"
        )
        print(
            f"              {median(whole) * per:6.0f} µs per node  whole run, with the run"
            f" directory's status.json per node written [{spread(whole, per, 'µs')}]"
        )
        print(
            f"   this machine: a directory with one file costs {median(files) * per:.0f} µs"
            f" [{spread(files, per, 'µs')}] (plain os calls, same filesystem)"
        )
        if compare:
            theirs = [langgraph_linear(n, fresh("l1-"), payload=False) for _ in range(repeat)]
            print(
                f"   langgraph  {median(theirs) * per:6.0f} µs per node  SQLite checkpointer"
                f" [{spread(theirs, per, 'µs')}]"
            )
            print(
                f"   langgraph / orchestra = {median(theirs) / median(durable):.1f}x engine and"
                f" store (target: >= 5x); {median(theirs) / median(whole):.1f}x whole run"
            )

        # 2. fan-out
        runs = [
            anyio.run(orchestra_run, fan_out_dot(args.branches), fresh("o2-"), {"wait": Wait()})
            for _ in range(repeat)
        ]
        fans = [r.fan_out for r in runs if r.fan_out is not None]
        print(f"\n2. fan-out of {args.branches} branches, each waiting 50 ms (median of {repeat})")
        print(
            f"   orchestra  {median(fans) * 1000:6.1f} ms  ({(median(fans) / 0.05 - 1) * 100:+.0f}%"
            f" over 50 ms; target: within 20%) [{spread(fans, 1000, 'ms')}];"
            f" whole run with start, join, exit: {median([r.whole for r in runs]) * 1000:.1f} ms"
        )
        if compare:
            theirs = [
                asyncio.run(langgraph_fan_out(args.branches, fresh("l2-"))) for _ in range(repeat)
            ]
            over = (median(theirs) / 0.05 - 1) * 100
            print(
                f"   langgraph  {median(theirs) * 1000:6.1f} ms  ({over:+.0f}% over 50 ms)"
                f" [{spread(theirs, 1000, 'ms')}]"
            )

        # 3. store growth
        print("\n3. store size, nodes adding 1 KB each to the context")
        for count in (n // 4, n // 2, n):
            here = fresh("o3-")
            anyio.run(orchestra_run, linear_dot(count, "add_kb"), here, {"add_kb": AddKilobyte()})
            size = sum(os.path.getsize(p) for p in here.glob("state.db*"))
            line = (
                f"   orchestra  {count:5d} nodes: {size / 1e6:7.2f} MB  "
                f"({size / count:6.0f} bytes per node)"
            )
            if compare:
                lg = fresh("l3-")
                langgraph_linear(count, lg, payload=True)
                theirs_size = sum(os.path.getsize(p) for p in lg.glob("langgraph.db*"))
                line += (
                    f"   langgraph {theirs_size / 1e6:8.2f} MB"
                    f" ({theirs_size / count:8.0f} bytes per node)"
                )
            print(line)


if __name__ == "__main__":
    main()
