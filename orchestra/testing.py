"""Helpers for testing pipelines and handlers without a model, a person or a clock.

``ScriptedBackend`` answers LLM stages from a script; ``RecordingSleep`` replaces the
engine's backoff sleep (``Pipeline(..., sleep=RecordingSleep())``) so retries take no time;
``EventRecorder`` is an ``on_event`` callback that keeps every event. For human gates use
``orchestra.interviewer.QueueInterviewer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestra.engine.context import Context
from orchestra.events import Event, StageStarted
from orchestra.graph import Node
from orchestra.handlers.base import StageRun
from orchestra.outcome import Outcome

__all__ = ["EventRecorder", "RecordingSleep", "ScriptedBackend"]


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
