"""The ``CodergenBackend`` interface (spec §4.5): how an LLM stage gets its answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from orchestra.engine.context import Context
from orchestra.graph import Node
from orchestra.outcome import Outcome

if TYPE_CHECKING:
    from orchestra.handlers.base import StageRun

__all__ = ["CodergenBackend", "StageReply"]


@attrs.frozen
class StageReply:
    """A backend's whole answer and the outcome it leads to. ``response.md`` holds ``text``
    in full, while the outcome's ``last_response`` is cut short (spec §4.5)."""

    text: str
    outcome: Outcome
    #: the answer ended with a status block stating the outcome (an agent in a chat ends
    #: the chat with one)
    stated: bool = False


@runtime_checkable
class CodergenBackend(Protocol):
    """Returns the response text, a ``StageReply`` (the text and the outcome it decides), or
    an ``Outcome`` alone."""

    name: str

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome | StageReply: ...
