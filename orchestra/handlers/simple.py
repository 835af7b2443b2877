"""The no-op handlers: start, exit and conditional (spec §4.3, §4.4, §4.7)."""

from __future__ import annotations

from orchestra.engine.context import Context
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun
from orchestra.outcome import Outcome, StageStatus

__all__ = ["ConditionalHandler", "ExitHandler", "StartHandler"]


class StartHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        return Outcome.success()


class ExitHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        return Outcome.success("pipeline completed")


class ConditionalHandler:
    """Passes the previous node's outcome and preferred label through (DESIGN §4.3), so
    ``gate -> x [condition="outcome!=success"]`` routes on what happened before the gate."""

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        previous = context.get_string("outcome", "success") or "success"
        try:
            status = StageStatus.parse(previous)
        except ValueError:
            status = StageStatus.SUCCESS
        # A failure seen by a conditional is data to route on, not a failure of the gate.
        return Outcome(
            status=status,
            preferred_label=context.get_string("preferred_label"),
            notes=f"conditional {node.id}: previous outcome {status.value}",
        )
