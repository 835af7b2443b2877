"""Helpers for testing pipelines and handlers without a model, a person or a clock.

``ScriptedBackend`` answers LLM stages from a script; ``RecordingSleep`` replaces the
engine's backoff sleep (``Pipeline(..., sleep=RecordingSleep())``) so retries take no time;
``EventRecorder`` is an ``on_event`` callback that keeps every event. ``ScriptedModel`` is a
provider adapter for the LLM client that answers from a script (``model_says``,
``model_calls``), for agents without a provider. For human gates use
``orchestra.interviewer.QueueInterviewer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

from orchestra.engine.context import Context
from orchestra.events import Event, StageStarted
from orchestra.graph import Node
from orchestra.handlers.base import StageRun
from orchestra.llm.errors import LLMError
from orchestra.llm.types import (
    ContentKind,
    ContentPart,
    FinishReason,
    Message,
    Request,
    Response,
    Role,
    ToolCall,
    Usage,
)
from orchestra.outcome import Outcome

__all__ = [
    "EventRecorder",
    "RecordingSleep",
    "ScriptedBackend",
    "ScriptedModel",
    "Step",
    "model_calls",
    "model_says",
]


class ScriptedBackend:
    """A ``CodergenBackend`` answering each node from its script, in order (the last entry
    repeats; an exception in the script is raised). Keeps every node and prompt it saw."""

    name = "scripted"

    def __init__(
        self, script: Mapping[str, Sequence[str | Outcome | Exception]] | None = None
    ) -> None:
        self.script = {node_id: list(answers) for node_id, answers in (script or {}).items()}
        self.prompts: list[tuple[str, str]] = []
        self.nodes: dict[str, Node] = {}

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome:
        self.prompts.append((node.id, prompt))
        self.nodes[node.id] = node
        answers = self.script.get(node.id)
        if not answers:
            return f"response of {node.id}"
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class RecordingSleep:
    """Stands in for ``anyio.sleep``: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class EventRecorder:
    """An ``on_event`` callback that keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event], node_id: str | None = None) -> list[Any]:
        """The events of one type, optionally only those about ``node_id``."""
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (node_id is None or e.node_id == node_id)
        ]

    def attempts(self, node_id: str) -> list[int]:
        """The attempt number of each StageStarted of ``node_id``."""
        return [e.attempt for e in self.of(StageStarted, node_id)]


#: what a scripted answer costs unless a test says otherwise
_USAGE = Usage(10, 5)

#: one step of a ScriptedModel: an answer, an error to raise, or something to do instead
Step = Response | LLMError | Callable[[], None]


class ScriptedModel:
    """A provider adapter answering from a script, one step per request, and keeping every
    request in ``requests``. A step is a ``Response``, an ``LLMError`` to raise, or a
    function to call instead of answering: the request then never returns (a test stops
    the run there, as a crash would)."""

    def __init__(self, script: Sequence[Step], *, name: str = "scripted") -> None:
        self.name = name
        self.script = list(script)
        self.requests: list[Request] = []

    async def complete(self, request: Request) -> Response:
        self.requests.append(request)
        if not self.script:
            raise AssertionError(f"the scripted model has no step for request {len(self.requests)}")
        step = self.script.pop(0)
        if isinstance(step, LLMError):
            raise step
        if not isinstance(step, Response):
            step()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")
        return step

    async def close(self) -> None:
        return None


def model_says(
    text: str, *, usage: Usage = _USAGE, model: str = "m", provider: str = "scripted"
) -> Response:
    """A final answer: text and no tool calls."""
    return Response("r", model, provider, Message.assistant(text), FinishReason("stop"), usage)


def model_calls(
    *calls: ToolCall, usage: Usage = _USAGE, model: str = "m", provider: str = "scripted"
) -> Response:
    """An answer asking for these tool calls."""
    parts = tuple(ContentPart(ContentKind.TOOL_CALL, tool_call=call) for call in calls)
    return Response(
        "r", model, provider, Message(Role.ASSISTANT, parts), FinishReason("tool_calls"), usage
    )
