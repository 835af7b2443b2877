"""The supervisor loop (spec §4.11): run a child pipeline and watch it, cycle by cycle.

The child (``stack.child_dotfile`` on the node or the graph, relative to the parent's DOT
file) runs in-process as its own session in the same store. Each cycle the manager
*observes* (the child's status, current node and completed nodes land in ``stack.child.*``),
may *steer* (the node's prompt is written to ``steer.md`` in the child's current stage
directory) and *waits* ``manager.poll_interval``. It ends when the child ends, when
``manager.stop_condition`` holds (the child is then cancelled), or after
``manager.max_cycles`` (a failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from orchestra.attributes import Duration
from orchestra.conditions import evaluate_condition
from orchestra.engine.context import Context
from orchestra.events import Event
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.outcome import Outcome, StageStatus

if TYPE_CHECKING:
    from orchestra.engine.runner import RunResult

__all__ = ["ManagerLoopHandler"]

_DEFAULT_POLL = 45.0
_DEFAULT_CYCLES = 1000


class ManagerLoopHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun
                      ) -> Outcome:
        from orchestra.pipeline import Pipeline

        child_file = str(node.attrs.get("stack.child_dotfile")
                         or graph.attrs.get("stack.child_dotfile") or "").strip()
        if not child_file:
            raise TerminalError(f"manager node '{node.id}' has no stack.child_dotfile "
                                "(on the node or the graph)")
        base = Path(graph.path).parent if graph.path else Path.cwd()
        child_path = (base / child_file) if not Path(child_file).is_absolute() else Path(
            child_file)
        if not child_path.is_file():
            raise TerminalError(f"manager node '{node.id}': child pipeline {child_path} "
                                "does not exist")
        poll = node.attrs.get("manager.poll_interval")
        interval = poll.seconds if isinstance(poll, Duration) else _DEFAULT_POLL
        max_cycles = int(str(node.attrs.get("manager.max_cycles", _DEFAULT_CYCLES)))
        stop = str(node.attrs.get("manager.stop_condition", "")).strip()
        actions = {a.strip() for a in str(node.attrs.get("manager.actions", "observe,wait"))
                   .split(",")}
        autostart = str(node.attrs.get("stack.child_autostart", True)).lower() != "false"
        if not autostart:
            raise TerminalError(f"manager node '{node.id}': stack.child_autostart=false "
                                "(attaching to a child started elsewhere) is not supported")

        child = Pipeline.load(
            child_path, variables=stage.variables, store=stage.store,
            backend=stage.backend, interviewer=stage.interviewer,
            logs_root=stage.stage_dir / "child",
        )
        observed: dict[str, Any] = {"status": "running", "current_node": "",
                                    "completed_nodes": []}
        result: dict[str, RunResult] = {}

        def watch(event: Event) -> None:
            if event.node_id:
                observed["current_node"] = event.node_id

        async def run_child() -> None:
            result["run"] = await child.run(on_event=watch)

        outcome: Outcome | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(run_child)
            for cycle in range(1, max_cycles + 1):
                if "run" in result:
                    run = result["run"]
                    observed["status"] = "completed" if run.succeeded else "failed"
                    observed["completed_nodes"] = list(run.completed_nodes)
                    observed["outcome"] = run.status
                if "observe" in actions:
                    context.apply_updates({
                        "stack.child.status": observed["status"],
                        "stack.child.current_node": observed["current_node"],
                        "stack.child.completed_nodes": observed["completed_nodes"],
                        "stack.child.outcome": observed.get("outcome", ""),
                        "stack.child.session_id": child.session_id or "",
                        "stack.manager.cycle": cycle,
                    })
                if observed["status"] == "completed":
                    outcome = Outcome.success("child completed")
                    break
                if observed["status"] == "failed":
                    reason = result["run"].failure_reason
                    outcome = Outcome.fail(f"child pipeline failed: {reason}")
                    break
                if stop and evaluate_condition(stop, outcome="success",
                                               context=context.as_mapping()):
                    outcome = Outcome.success("stop condition satisfied")
                    group.cancel_scope.cancel()
                    break
                if "steer" in actions and node.prompt and observed["current_node"]:
                    steer_dir = stage.stage_dir / "child" / str(observed["current_node"])
                    steer_dir.mkdir(parents=True, exist_ok=True)
                    (steer_dir / "steer.md").write_text(node.prompt, encoding="utf-8")
                if "wait" in actions or "run" not in result:
                    await anyio.sleep(interval)
            else:
                group.cancel_scope.cancel()
        if outcome is None:
            outcome = Outcome(StageStatus.FAIL,
                              failure_reason=f"max cycles ({max_cycles}) exceeded")
        return Outcome(
            outcome.status,
            notes=outcome.notes,
            failure_reason=outcome.failure_reason,
            context_updates={
                "stack.child.status": observed["status"],
                "stack.child.outcome": observed.get("outcome", ""),
                "stack.child.completed_nodes": observed["completed_nodes"],
                "stack.child.session_id": child.session_id or "",
            },
        )
