"""The engine's own costs, side by side with LangGraph on the same shapes, in one process.

1. Per-node overhead of a 1,000-node linear pipeline with durable checkpoints (Orchestra's
   embedded SQLite store; LangGraph with its SQLite checkpointer). Nodes do no work.
2. Wall time of a 100-branch fan-out where each branch waits 50 ms.
3. Store bytes after 1,000 nodes that each add 1 KB to the context: growth per node.

    uv run --group bench python benchmarks/bench_engine.py [--nodes 1000] [--branches 100]

Without the ``bench`` group (LangGraph not installed) the Orchestra figures still print.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import anyio

from orchestra.engine.context import Context
from orchestra.events import Event, ParallelCompleted, ParallelStarted
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


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def orchestra_run(
    dot: str, workdir: Path, handlers: dict[str, Any]
) -> tuple[float, float | None]:
    """(wall time of the whole run, wall time of its parallel node if it has one)."""
    registry = default_registry()
    for name, handler in handlers.items():
        registry.register(name, handler)
    store = await EmbeddedStore.open(workdir / "state.db")
    pipeline = Pipeline.load(dot, store=store, handlers=registry, logs_root=workdir / "run")
    marks: dict[str, float] = {}

    def mark(event: Event) -> None:
        if isinstance(event, ParallelStarted | ParallelCompleted):
            marks[type(event).__name__] = time.perf_counter()

    started = time.perf_counter()
    result = await pipeline.run(on_event=mark)
    elapsed = time.perf_counter() - started
    await store.close()
    assert result.succeeded, result.failure_reason
    fan_out = marks["ParallelCompleted"] - marks["ParallelStarted"] if marks else None
    return elapsed, fan_out


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
    started = time.perf_counter()
    graph.invoke({"data": []}, {"configurable": {"thread_id": "1"}, "recursion_limit": nodes + 10})
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
    args = parser.parse_args()
    compare = have_langgraph()
    if not compare:
        print("(LangGraph not installed: run with `uv run --group bench` to compare)\n")

    # Runs write where a user's would: under the working directory, not /tmp (which may be a
    # different, slower filesystem).
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-") as tmp:
        root = Path(tmp)

        # 1. per-node overhead
        (root / "o1").mkdir()
        ours, _ = anyio.run(
            orchestra_run, linear_dot(args.nodes, "noop"), root / "o1", {"noop": NoOp()}
        )
        print(f"1. linear pipeline, {args.nodes} no-op nodes, durable checkpoint after each")
        print(f"   orchestra  {ours:8.3f} s   {ours / args.nodes * 1e6:8.0f} µs per node")
        if compare:
            (root / "l1").mkdir()
            theirs = langgraph_linear(args.nodes, root / "l1", payload=False)
            print(f"   langgraph  {theirs:8.3f} s   {theirs / args.nodes * 1e6:8.0f} µs per node")
            print(f"   langgraph / orchestra = {theirs / ours:.1f}x  (target: >= 5x)")

        # 2. fan-out
        (root / "o2").mkdir()
        whole, fan = anyio.run(
            orchestra_run, fan_out_dot(args.branches), root / "o2", {"wait": Wait()}
        )
        assert fan is not None
        print(f"\n2. fan-out of {args.branches} branches, each waiting 50 ms")
        print(
            f"   orchestra  {fan * 1000:8.1f} ms  ({(fan / 0.05 - 1) * 100:+.0f}% over 50 ms;"
            f" target: within 20%); whole run with start, join, exit: {whole * 1000:.1f} ms"
        )
        if compare:
            (root / "l2").mkdir()
            theirs = asyncio.run(langgraph_fan_out(args.branches, root / "l2"))
            print(
                f"   langgraph  {theirs * 1000:8.1f} ms  ({(theirs / 0.05 - 1) * 100:+.0f}% over"
                " 50 ms)"
            )

        # 3. store growth
        print("\n3. store size, nodes adding 1 KB each to the context")
        for count in (args.nodes // 4, args.nodes // 2, args.nodes):
            work = root / f"o3-{count}"
            work.mkdir()
            anyio.run(orchestra_run, linear_dot(count, "add_kb"), work, {"add_kb": AddKilobyte()})
            size = sum(os.path.getsize(p) for p in work.glob("state.db*"))
            line = (
                f"   orchestra  {count:5d} nodes: {size / 1e6:7.2f} MB  "
                f"({size / count:6.0f} bytes per node)"
            )
            if compare:
                lg = root / f"l3-{count}"
                lg.mkdir()
                langgraph_linear(count, lg, payload=True)
                theirs = sum(os.path.getsize(p) for p in lg.glob("langgraph.db*"))
                line += (
                    f"   langgraph {theirs / 1e6:8.2f} MB ({theirs / count:8.0f} bytes per node)"
                )
            print(line)


if __name__ == "__main__":
    main()
