"""The ``simulation`` backend: no LLM, deterministic, scriptable per node.

``sim_outcomes="fail,retry,success"`` on a node gives the outcome of each execution of that
node in turn (the last one repeats), so retries, goal gates and failure routing can be
exercised without a model. An entry may carry a preferred label: ``success:Approve``.
``sim_context="verdict=insufficient, rerun=security; verdict=sufficient"`` gives the context
updates of each execution in turn, the same way (executions separated by ``;``, ``key=value``
pairs by ``,``), for routing on context values.

In a git workspace (``workspace.repos``), a simulated stage writes one deterministic file,
``simulated/NODE.md`` in the first repository's worktree, holding its prompt: a dry run
then makes the commits a real one would, on the session branch only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestra.backends.base import StageReply
from orchestra.backends.chat import ChatLine
from orchestra.engine.context import Context
from orchestra.graph import Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.outcome import Outcome, StageStatus

__all__ = ["SimulationBackend"]


class SimulationBackend:
    name = "simulation"

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome | StageReply:
        script = str(node.attrs.get("sim_outcomes", "")).strip()
        response = f"[Simulated] Response for stage: {node.id}"
        if stage.workspace is not None and stage.workspace.worktrees:
            _write_simulated_file(next(iter(stage.workspace.worktrees.values())), node, prompt)
        updates = _context_of(node, stage.execution)
        if not script and not updates:
            return response
        entries = [entry.strip() for entry in script.split(",") if entry.strip()] or ["success"]
        entry = entries[min(stage.execution, len(entries)) - 1]
        status_text, _, label = entry.partition(":")
        try:
            status = StageStatus.parse(status_text)
        except ValueError as err:
            raise TerminalError(f"node '{node.id}' sim_outcomes: {err}") from None
        return Outcome(
            status=status,
            preferred_label=label.strip(),
            notes=f"simulated {status.value} (execution {stage.execution})",
            failure_reason=f"simulated {status.value}" if not status.is_success else "",
            context_updates={"last_stage": node.id, "last_response": response, **updates},
        )

    async def chat(
        self, node: Node, prompt: str, context: Context, stage: StageRun, lines: Sequence[ChatLine]
    ) -> Outcome | StageReply:
        """A deterministic reply naming its number and the message it answers."""
        said = lines[-1].text if lines else ""
        flat = " ".join(said.split())
        quoted = f' to "{flat[:57]}…"' if len(flat) > 60 else f' to "{flat}"' if flat else ""
        text = f"[Simulated] Reply {stage.call} for stage: {node.id}{quoted}"
        return StageReply(
            text,
            Outcome.success(f"stage completed: {node.id}", context_updates={"last_stage": node.id}),
        )


def _context_of(node: Node, execution: int) -> dict[str, str]:
    """This execution's entry of ``sim_context`` (the last one repeats), as key -> value."""
    script = str(node.attrs.get("sim_context", "")).strip()
    if not script:
        return {}
    entries = [entry.strip() for entry in script.split(";")]
    entry = entries[min(execution, len(entries)) - 1]
    updates: dict[str, str] = {}
    for pair in entry.split(","):
        if not pair.strip():
            continue
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise TerminalError(
                f"node '{node.id}' sim_context: expected key=value pairs, got {pair.strip()!r}"
            )
        updates[key.strip()] = value.strip()
    return updates


def _write_simulated_file(worktree: Path, node: Node, prompt: str) -> None:
    target = worktree / "simulated" / f"{node.id}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f"# {node.id}\n\nWritten by the simulation backend in place of an agent's work.\n\n"
        f"## Prompt\n\n{prompt.strip()}\n",
        encoding="utf-8",
    )
