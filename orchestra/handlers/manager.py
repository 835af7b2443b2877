"""The supervisor loop (spec §4.11): run a child pipeline and watch it, cycle by cycle.

The child (``stack.child_dotfile`` on the node or the graph, relative to the parent's DOT
file) runs in-process as its own session in the same store. Each cycle the manager
*observes* (the child's status, current node and completed nodes land in ``stack.child.*``),
may *steer* (the node's prompt is written to ``steer.md`` in the child's current stage
directory) and then waits ``manager.poll_interval``, or less if the child ends first. A
manager always waits while its child runs: without the wait it would spin. It ends when the
child ends, when ``manager.stop_condition`` holds (the child is then cancelled, and its
status is ``cancelled``), or after ``manager.max_cycles`` (a failure, the child cancelled).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from orchestra.attributes import Duration
from orchestra.conditions import Condition, parse_condition
from orchestra.engine.context import Context
from orchestra.errors import OrchestraError
from orchestra.events import CheckpointSaved, Event, PipelineStarted, StageStarted
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.outcome import Outcome

__all__ = ["ManagerLoopHandler"]

_DEFAULT_POLL = 45.0
_DEFAULT_CYCLES = 1000


class _Child:
    """What the manager knows of its child: what the child's events and result tell it."""

    def __init__(self) -> None:
        self.session_id = ""
        self.status = "running"  # running | completed | failed | cancelled
        self.outcome = ""
        self.failure_reason = ""
        self.current_node = ""
        self.completed_nodes: list[str] = []
        self.started = anyio.Event()
        self.ended = anyio.Event()

    def watch(self, event: Event) -> None:
        if isinstance(event, PipelineStarted):
            self.session_id = event.session_id
            self.started.set()
        elif isinstance(event, StageStarted) and event.node_id:
            self.current_node = event.node_id
        elif isinstance(event, CheckpointSaved) and event.node_id:
            self.completed_nodes.append(event.node_id)

    def context_updates(self) -> dict[str, Any]:
        return {
            "stack.child.status": self.status,
            "stack.child.outcome": self.outcome,
            "stack.child.current_node": self.current_node,
            "stack.child.completed_nodes": list(self.completed_nodes),
            "stack.child.session_id": self.session_id,
        }


class ManagerLoopHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        from orchestra.pipeline import Pipeline

        child_path = _child_path(node, graph)
        poll = node.attrs.get("manager.poll_interval")
        interval = poll.seconds if isinstance(poll, Duration) else _DEFAULT_POLL
        max_cycles = int(str(node.attrs.get("manager.max_cycles", _DEFAULT_CYCLES)))
        stop = _stop_condition(node)
        actions = {
            a.strip() for a in str(node.attrs.get("manager.actions", "observe,wait")).split(",")
        }
        autostart = str(node.attrs.get("stack.child_autostart", True)).lower() != "false"
        if not autostart:
            raise TerminalError(
                f"manager node '{node.id}': stack.child_autostart=false "
                "(attaching to a child started elsewhere) is not supported"
            )
        child_logs = stage.stage_dir / "child"
        try:
            pipeline = Pipeline.load(
                child_path,
                variables=stage.variables,
                store=stage.store,
                backend=stage.backend,
                interviewer=stage.interviewer,
                handlers=stage.handlers,
                logs_root=child_logs,
            )
        except OrchestraError as err:
            raise TerminalError(f"manager node '{node.id}': child pipeline: {err}") from None

        child = _Child()

        async def run_child() -> None:
            try:
                run = await pipeline.run(on_event=child.watch)
            except Exception as err:  # reported as the child's failure, not as an ExceptionGroup
                child.status, child.outcome = "failed", "fail"
                child.failure_reason = f"{type(err).__name__}: {err}"
            else:
                child.status = "completed" if run.succeeded else "failed"
                child.outcome = run.status
                child.failure_reason = run.failure_reason
                child.completed_nodes = list(run.completed_nodes)
            finally:
                child.started.set()
                child.ended.set()

        async with anyio.create_task_group() as group:
            group.start_soon(run_child)
            await child.started.wait()
            outcome: Outcome | None = None
            for cycle in range(1, max_cycles + 1):
                if "observe" in actions:
                    context.apply_updates({**child.context_updates(), "stack.manager.cycle": cycle})
                if "steer" in actions and node.prompt and child.status == "running":
                    _steer(child_logs, child.current_node, node.prompt)
                if child.status == "completed":
                    outcome = Outcome.success("child completed")
                    break
                if child.status == "failed":
                    outcome = Outcome.fail(f"child pipeline failed: {child.failure_reason}")
                    break
                if stop is not None and stop.evaluate(
                    outcome="success", context=context.as_mapping()
                ):
                    outcome = Outcome.success("stop condition satisfied")
                    break
                with anyio.move_on_after(interval):
                    await child.ended.wait()
            group.cancel_scope.cancel()  # the child, if it still runs
        if child.status == "running":
            child.status = "cancelled"
        if outcome is None:
            outcome = Outcome.fail(f"max cycles ({max_cycles}) exceeded")
        return Outcome(
            outcome.status,
            notes=outcome.notes,
            failure_reason=outcome.failure_reason,
            context_updates=child.context_updates(),
        )


def _child_path(node: Node, graph: Graph) -> Path:
    """The child's DOT file, relative to the parent's (or to the working directory when the
    parent was not read from a file)."""
    name = str(
        node.attrs.get("stack.child_dotfile") or graph.attrs.get("stack.child_dotfile") or ""
    )
    if not name.strip():
        raise TerminalError(
            f"manager node '{node.id}' has no stack.child_dotfile (on the node or the graph)"
        )
    base = Path(graph.path).parent if graph.path else Path.cwd()
    path = base / name.strip()
    if not path.is_file():
        raise TerminalError(f"manager node '{node.id}': child pipeline {path} does not exist")
    return path


def _stop_condition(node: Node) -> Condition | None:
    text = str(node.attrs.get("manager.stop_condition", "")).strip()
    if not text:
        return None
    try:
        return parse_condition(text)
    except OrchestraError as err:
        raise TerminalError(f"manager node '{node.id}': manager.stop_condition: {err}") from None


def _steer(child_logs: Path, stage_id: str, prompt: str) -> None:
    """Leave ``prompt`` in the child's running stage's directory, for that stage to read."""
    if not stage_id:
        return
    directory = child_logs / stage_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "steer.md").write_text(prompt, encoding="utf-8")
