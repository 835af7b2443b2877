"""Following a session from its turns: ``orchestra attach`` and ``orchestra.follow``.

A session's turns say what happened durably: each checkpoint names the node that completed,
its outcome, its retries and the node that runs next; a parallel node records each branch
as it finishes. ``follow`` reads them (from the start, then as they are appended: it polls
the store's head, which works the same on the embedded store and on CXDB) and turns them
into the engine's own events, so the progress view ``orchestra run`` shows can render a run
started elsewhere. It ends with the session, or when the process running it is gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from orchestra.dot import parse_dot
from orchestra.engine.session import (
    CHECKPOINT,
    RECORDED,
    SESSION_ENDED,
    SESSION_KIND,
    SESSION_STARTED,
    SessionState,
    decode,
)
from orchestra.errors import OrchestraError
from orchestra.events import (
    ChatMessage,
    Event,
    ParallelBranchCompleted,
    ParallelCompleted,
    ParallelStarted,
    PipelineCompleted,
    PipelineFailed,
    PipelineStarted,
    StageCompleted,
    StageFailed,
    StageStarted,
)
from orchestra.graph import Graph
from orchestra.store.base import Store, TurnRecord

__all__ = ["follow"]

#: seconds between two looks at the session's head
POLL_INTERVAL = 0.25


async def follow(
    store: Store, session_id: str, *, interval: float = POLL_INTERVAL
) -> AsyncIterator[Event]:
    """The session's events so far, then live ones, until it ends (its SessionEnded turn)
    or stops being run (the process recorded as running it is gone: a crash)."""
    context_id = int(session_id)
    translator = _Translator(session_id)
    seen_depth = -1
    while True:
        head = await store.get_head(context_id)
        if head.head_turn_id and head.head_depth > seen_depth:
            turns = await _turns_after(store, context_id, seen_depth, head.head_depth)
            seen_depth = turns[-1].depth if turns else seen_depth
            for turn in turns:
                translator.state.apply(turn)
                if turn.type_id == SESSION_STARTED:
                    translator.graph = await _recorded_graph(store, translator.state)
                for event in translator.translate(turn):
                    yield event
        if translator.finished:
            return
        if head.head_turn_id and translator.state.status == "crashed":
            yield PipelineFailed(
                session_id=session_id,
                status="crashed",
                error="the process running the session is gone; `orchestra resume "
                f"{session_id}` continues it",
                duration=translator.elapsed(),
                completed_nodes=tuple(translator.state.completed_nodes),
            )
            return
        await anyio.sleep(interval)


async def _turns_after(
    store: Store, context_id: int, seen_depth: int, head_depth: int
) -> list[TurnRecord]:
    """Every turn deeper than ``seen_depth``, oldest first. ``get_last`` counts back from
    the head as it is when it answers, which may have moved on since ``head_depth`` was
    read: ask again for more until the answer reaches back to ``seen_depth``, so that no
    turn written in between is skipped."""
    limit = head_depth - seen_depth
    while True:
        turns = await store.get_last(context_id, limit=limit)
        if not turns or turns[0].depth <= seen_depth + 1:
            return [turn for turn in turns if turn.depth > seen_depth]
        limit += turns[0].depth - seen_depth - 1


async def _recorded_graph(store: Store, state: SessionState) -> Graph | None:
    """The pipeline as it was when the session began (its source is in the store), for node
    labels and handler types; None if it cannot be read: the view then shows node ids."""
    try:
        source = (await store.get_blob(state.dot_blob)).decode("utf-8")
        return parse_dot(source, file=state.dot_path or None)
    except (OrchestraError, UnicodeDecodeError, LookupError):
        return None


class _Translator:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.state = SessionState(session_id=session_id)
        self.graph: Graph | None = None
        self.finished = False
        self._last_ms = 0
        self._index = 0
        self._running = ""
        self._branches: dict[str, set[str]] = {}  # parallel node -> branches reported
        self._order: dict[str, tuple[str, ...]] = {}  # parallel node -> its branches

    def elapsed(self) -> float:
        if not self.state.started_ms or not self._last_ms:
            return 0.0
        return max(self._last_ms - self.state.started_ms, 0) / 1000

    def translate(self, turn: TurnRecord) -> list[Event]:
        fields = decode(turn)
        if turn.type_id == SESSION_STARTED:
            return self._started(fields)
        if turn.type_id == CHECKPOINT:
            return self._checkpoint(fields)
        if turn.type_id == RECORDED and fields.get("kind") == "branch":
            return self._branches_done(str(fields.get("node_id") or ""), fields)
        if turn.type_id == RECORDED and fields.get("kind") == "chat":
            return self._chat(str(fields.get("node_id") or ""), fields)
        if turn.type_id == RECORDED and fields.get("kind") == SESSION_KIND:
            return self._announce(self.state.next_node) if self.state.next_node else []
        if turn.type_id == SESSION_ENDED:
            return self._ended(fields)
        return []

    def _started(self, fields: dict[str, Any]) -> list[Event]:
        self._last_ms = int(fields.get("started_ms") or 0)
        start = self.graph.start_node.id if self.graph and self.graph.start_node else ""
        events: list[Event] = [
            PipelineStarted(
                session_id=self.session_id,
                pipeline=str(fields.get("pipeline") or ""),
                goal=str(fields.get("goal") or ""),
                logs_root=str(fields.get("logs_root") or ""),
            )
        ]
        return events + (self._announce(start) if start else [])

    def _handler(self, node_id: str) -> str:
        node = self.graph.nodes.get(node_id) if self.graph else None
        return node.handler_type if node is not None else ""

    def _label(self, node_id: str) -> str:
        node = self.graph.nodes.get(node_id) if self.graph else None
        return node.label if node is not None else node_id

    def _announce(self, node_id: str) -> list[Event]:
        if not node_id or node_id == self._running:
            return []
        self._running = node_id
        return [
            StageStarted(
                session_id=self.session_id,
                node_id=node_id,
                label=self._label(node_id),
                handler=self._handler(node_id),
                index=self._index,
            )
        ]

    def _checkpoint(self, fields: dict[str, Any]) -> list[Event]:
        node_id = str(fields.get("node_id") or "")
        now = int(fields.get("time_ms") or self._last_ms)
        duration = max(now - self._last_ms, 0) / 1000 if self._last_ms else 0.0
        self._last_ms = now
        if fields.get("reset"):
            return []
        outcome = fields.get("outcome") or {}
        status = str(outcome.get("outcome") or fields.get("status") or "success")
        retries = (fields.get("retries") or {}).get(node_id, 0)
        events: list[Event] = self._announce(node_id)
        if node_id in self._branches:
            done = self._branches.pop(node_id)
            events.append(
                ParallelCompleted(
                    session_id=self.session_id,
                    node_id=node_id,
                    duration=duration,
                    success_count=sum(1 for b in done if not b.startswith("!")),
                    failure_count=sum(1 for b in done if b.startswith("!")),
                )
            )
        if status == "fail":
            events.append(
                StageFailed(
                    session_id=self.session_id,
                    node_id=node_id,
                    label=self._label(node_id),
                    index=self._index,
                    duration=duration,
                    error=str(outcome.get("failure_reason") or "failed"),
                    will_retry=False,
                    attempts=int(retries) + 1,
                )
            )
        else:
            events.append(
                StageCompleted(
                    session_id=self.session_id,
                    node_id=node_id,
                    label=self._label(node_id),
                    index=self._index,
                    duration=duration,
                    status=status,
                    attempts=int(retries) + 1,
                    notes=str(outcome.get("notes") or ""),
                )
            )
        self._index += 1
        self._running = ""
        return events + self._announce(str(fields.get("next_node") or ""))

    def _branches_done(self, node_id: str, fields: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        entries = fields.get("entries") or {}
        if node_id not in self._branches:
            self._branches[node_id] = set()
            graph = self.graph
            order = tuple(e.target for e in graph.outgoing(node_id)) if graph else tuple(entries)
            self._order[node_id] = order
            events += self._announce(node_id)
            events.append(
                ParallelStarted(
                    session_id=self.session_id,
                    node_id=node_id,
                    branch_count=len(order),
                    branches=order,
                )
            )
        order = self._order[node_id]
        for branch, result in entries.items():
            outcome = str((result or {}).get("outcome") or "")
            success = outcome in ("success", "partial_success")
            self._branches[node_id].add(branch if success else f"!{branch}")
            events.append(
                ParallelBranchCompleted(
                    session_id=self.session_id,
                    node_id=node_id,
                    branch=str(branch),
                    index=order.index(branch) if branch in order else 0,
                    duration=0.0,
                    success=success,
                    status=outcome,
                )
            )
        return events

    def _chat(self, node_id: str, fields: dict[str, Any]) -> list[Event]:
        """A chat node's messages (keyed ``VISIT:NUMBER``), as the chat emitted them."""
        entries = fields.get("entries") or {}
        events: list[Event] = list(self._announce(node_id))
        for key in sorted(entries):
            data = entries[key] or {}
            number = str(key).partition(":")[2]
            events.append(
                ChatMessage(
                    session_id=self.session_id,
                    node_id=node_id,
                    who="agent" if data.get("who") == "agent" else "human",
                    text=str(data.get("text") or ""),
                    turn=int(number) if number.isdigit() else 0,
                )
            )
        return events

    def _ended(self, fields: dict[str, Any]) -> list[Event]:
        status = str(fields.get("status") or "")
        self._last_ms = int(fields.get("time_ms") or self._last_ms)
        self.finished = True
        completed = tuple(self.state.completed_nodes)
        if status == "success":
            return [
                PipelineCompleted(
                    session_id=self.session_id,
                    status=status,
                    duration=self.elapsed(),
                    completed_nodes=completed,
                    logs_root=self.state.logs_root,
                )
            ]
        return [
            PipelineFailed(
                session_id=self.session_id,
                status=status,
                error=str(fields.get("reason") or status),
                duration=self.elapsed(),
                completed_nodes=completed,
                logs_root=self.state.logs_root,
            )
        ]
