"""Typed events the engine emits (spec §9.6), and the stream that carries them.

The engine prints nothing: the CLI's progress view, the store recorder and the workspace
layer all react to these. Every event has ``session_id``, ``timestamp`` and, where a node is
concerned, ``node_id``; ``to_json()`` gives the one-line form ``orchestra run --json`` prints.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "AgentCommitCreated",
    "ChatMessage",
    "CheckpointSaved",
    "CleanupCompleted",
    "Event",
    "EventBus",
    "InterviewCompleted",
    "InterviewStarted",
    "InterviewTimeout",
    "MergeConflict",
    "ParallelBranchCompleted",
    "ParallelBranchStarted",
    "ParallelCompleted",
    "ParallelStarted",
    "PipelineCompleted",
    "PipelineFailed",
    "PipelineStarted",
    "PushFailed",
    "SessionBranchCreated",
    "SessionBranchPushed",
    "StageActivity",
    "StageCompleted",
    "StageFailed",
    "StageRetrying",
    "StageStarted",
    "WorktreeCreated",
    "WorktreeMerged",
]


def _now() -> float:
    return time.time()


@attrs.frozen(kw_only=True)
class Event:
    session_id: str
    timestamp: float = attrs.field(factory=_now)
    node_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=True)
        return {"event": type(self).__name__, **{k: v for k, v in data.items() if v is not None}}


@attrs.frozen(kw_only=True)
class PipelineStarted(Event):
    pipeline: str
    goal: str = ""
    logs_root: str = ""
    resumed: bool = False


@attrs.frozen(kw_only=True)
class PipelineCompleted(Event):
    status: str
    duration: float
    completed_nodes: tuple[str, ...]
    logs_root: str = ""
    artifact_count: int = 0


@attrs.frozen(kw_only=True)
class PipelineFailed(Event):
    status: str
    error: str
    duration: float
    completed_nodes: tuple[str, ...]
    logs_root: str = ""


@attrs.frozen(kw_only=True)
class StageStarted(Event):
    label: str
    handler: str
    index: int
    attempt: int = 1
    branch: str | None = None


@attrs.frozen(kw_only=True)
class StageCompleted(Event):
    label: str
    index: int
    duration: float
    status: str
    attempts: int = 1
    notes: str = ""
    branch: str | None = None
    #: what an LLM stage spent: tokens, calls, cost (``orchestra.engine.usage``)
    usage: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class StageFailed(Event):
    label: str
    index: int
    duration: float
    error: str
    will_retry: bool
    attempts: int = 1
    branch: str | None = None
    usage: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class StageActivity(Event):
    """Something a long stage did on its way: an agent's tool call, say."""

    text: str
    branch: str | None = None


@attrs.frozen(kw_only=True)
class StageRetrying(Event):
    label: str
    index: int
    attempt: int
    delay: float
    reason: str = ""
    branch: str | None = None


@attrs.frozen(kw_only=True)
class ParallelStarted(Event):
    branch_count: int
    branches: tuple[str, ...] = ()
    #: the branches that keep their last round's results and do not run (``rerun_only``)
    kept: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ParallelBranchStarted(Event):
    branch: str
    index: int


@attrs.frozen(kw_only=True)
class ParallelBranchCompleted(Event):
    branch: str
    index: int
    duration: float
    success: bool
    status: str = ""


@attrs.frozen(kw_only=True)
class ParallelCompleted(Event):
    duration: float
    success_count: int
    failure_count: int


@attrs.frozen(kw_only=True)
class InterviewStarted(Event):
    question: str
    stage: str
    options: tuple[str, ...] = ()
    #: what the question is about (the previous stage's answer, cut), shown before it
    details: str = ""


@attrs.frozen(kw_only=True)
class InterviewCompleted(Event):
    question: str
    answer: str
    duration: float


@attrs.frozen(kw_only=True)
class InterviewTimeout(Event):
    question: str
    stage: str
    duration: float


@attrs.frozen(kw_only=True)
class ChatMessage(Event):
    """A message of a chat node (``agent.mode="interactive"``). ``who``: ``prompt`` (what
    the chat opens with), ``agent``, ``human``, or ``orchestra`` (help, a refused command);
    ``turn`` numbers the agent's and the person's messages from 1; ``replayed`` marks the
    messages shown again when a chat is resumed."""

    who: str
    text: str
    turn: int
    replayed: bool = False
    branch: str | None = None


@attrs.frozen(kw_only=True)
class CheckpointSaved(Event):
    turn_id: int | None = None


# git workspaces (orchestra.workspace) ----------------------------------------------------


@attrs.frozen(kw_only=True)
class SessionBranchCreated(Event):
    """The session's branch in a repository, made from the repository's HEAD; ``note``
    says where it started (``from branch main``) and whether uncommitted changes were
    left out."""

    repo: str
    branch: str
    sha: str
    note: str = ""


@attrs.frozen(kw_only=True)
class WorktreeCreated(Event):
    """A worktree checked out for the session (``parallel_branch`` for a fan-out's)."""

    repo: str
    branch: str
    path: str
    parallel_branch: str | None = None


@attrs.frozen(kw_only=True)
class AgentCommitCreated(Event):
    """A commit of what an agent turn (or a stage) changed; ``branch`` is the parallel
    branch it was made in, None on the session's own line."""

    repo: str
    sha: str
    files: tuple[str, ...]
    summary: str
    branch: str | None = None


@attrs.frozen(kw_only=True)
class WorktreeMerged(Event):
    """A parallel branch merged into the line it was forked from, at the fan-in."""

    repo: str
    branch: str
    sha: str
    fast_forward: bool = False


@attrs.frozen(kw_only=True)
class MergeConflict(Event):
    """A parallel branch that could not be merged: its worktree is kept."""

    repo: str
    branch: str
    files: tuple[str, ...]


@attrs.frozen(kw_only=True)
class SessionBranchPushed(Event):
    repo: str
    branch: str
    remote: str
    sha: str


@attrs.frozen(kw_only=True)
class PushFailed(Event):
    """A push that failed: a warning, never a failed run."""

    repo: str
    branch: str
    remote: str
    error: str


@attrs.frozen(kw_only=True)
class CleanupCompleted(Event):
    """What ``orchestra cleanup`` removed and kept."""

    removed_worktrees: tuple[str, ...] = ()
    removed_branches: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    dry_run: bool = False


Listener = Callable[[Event], Awaitable[None] | None]


class EventBus:
    """Delivers each event to callbacks, in order, and to any open async iterators."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._streams: list[MemoryObjectSendStream[Event]] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def stream(self) -> MemoryObjectReceiveStream[Event]:
        """A new unbounded receive stream of every event from now on; it ends with the run."""
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        self._streams.append(send)
        return receive

    async def emit(self, event: Event) -> None:
        for listener in self._listeners:
            result = listener(event)
            if result is not None:
                await result
        for stream in self._streams:
            try:
                stream.send_nowait(event)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                continue

    def close(self) -> None:
        for stream in self._streams:
            stream.close()
        self._streams.clear()

    def events(self) -> AsyncIterator[Event]:
        """Every event from now until ``close()``; subscribed at once, not on first read."""
        return _drain(self.stream())


async def _drain(receive: MemoryObjectReceiveStream[Event]) -> AsyncIterator[Event]:
    async with receive:
        async for event in receive:
            yield event
