"""The ``CodergenBackend`` interface (spec §4.5): how an LLM stage gets its answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestra.engine.context import Context
from orchestra.graph import Node
from orchestra.outcome import Outcome

if TYPE_CHECKING:
    from orchestra.handlers.base import StageRun

__all__ = ["CodergenBackend"]


@runtime_checkable
class CodergenBackend(Protocol):
    """Returns the response text, or a full ``Outcome`` when the backend decides routing."""

    name: str

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome: ...
