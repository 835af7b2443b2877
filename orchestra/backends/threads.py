"""How an LLM stage's conversation begins: context fidelity (spec §5.4) applied.

``full`` continues the conversation of the stage's thread (the same session, kept in memory
for the run); every other mode starts a fresh conversation whose first user message opens
with a preamble of the run so far, sized by the mode. The first stage after a resume runs
``full`` as ``summary:high`` (§5.3): the conversation it would continue was in the memory
of the process that crashed. So does any ``full`` stage whose thread has no conversation
(yet, or any more after a resume): it is never blind to what ran before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from orchestra.backends.fidelity import (
    DEFAULT_FIDELITY,
    Fidelity,
    StageSummary,
    build_preamble,
    degrade_after_resume,
    resolve_fidelity,
    resolve_thread,
)
from orchestra.engine.context import Context
from orchestra.graph import Node
from orchestra.handlers.base import StageRun
from orchestra.llm.types import Message
from orchestra.transforms import goal_text

__all__ = ["Opening", "Threads"]

#: how much of a stage's response.md a summary reads
_RESPONSE_CHARS = 2000
#: how many of the latest stages get their response read
_RESPONSES_READ = 20


@attrs.frozen
class Opening:
    """The messages a stage's conversation starts with (its user message last), the
    fidelity applied, and the thread to keep the conversation under (``full`` only)."""

    messages: tuple[Message, ...]
    fidelity: Fidelity
    thread: tuple[str, str, str] | None


class Threads:
    """The conversations of ``full``-fidelity threads, per session, branch and thread key."""

    def __init__(self) -> None:
        self._conversations: dict[tuple[str, str, str], tuple[Message, ...]] = {}
        #: the thread each node last ran on, for the spec's "previous node" fallback
        self._thread_of: dict[tuple[str, str, str], tuple[str, str, str]] = {}

    def opening(self, node: Node, user: str, context: Context, stage: StageRun) -> Opening:
        graph = stage.graph
        fidelity = resolve_fidelity(node, stage.incoming, graph) if graph else DEFAULT_FIDELITY
        if stage.resumed:
            fidelity = degrade_after_resume(fidelity)
        if fidelity.mode == "full" and graph is not None:
            scope = (stage.session_id, stage.branch or "")
            key = resolve_thread(node, stage.incoming, graph, stage.previous_node)
            thread = (*scope, key)
            if key == stage.previous_node:  # the fallback: continue that node's thread
                thread = self._thread_of.get((*scope, key), thread)
            earlier = self._conversations.get(thread)
            if earlier is not None:
                return Opening((*earlier, Message.user(user)), fidelity, thread)
            # Nothing to continue: a new thread, or one whose conversation a crash took.
            fidelity = degrade_after_resume(fidelity)
            preamble = self._preamble(fidelity, context, stage)
            return Opening((Message.user(_join(preamble, user)),), fidelity, thread)
        preamble = self._preamble(fidelity, context, stage)
        return Opening((Message.user(_join(preamble, user)),), fidelity, None)

    def keep(
        self, opening: Opening, node: Node, stage: StageRun, conversation: Sequence[Message]
    ) -> None:
        """Keep a finished ``full`` stage's conversation for the next stage on its thread."""
        if opening.thread is None:
            return
        self._conversations[opening.thread] = tuple(conversation)
        self._thread_of[(stage.session_id, stage.branch or "", node.id)] = opening.thread

    def _preamble(self, fidelity: Fidelity, context: Context, stage: StageRun) -> str:
        values = context.as_mapping()
        goal = str(values.get("graph.goal") or (stage.graph.goal if stage.graph else ""))
        return build_preamble(
            fidelity,
            goal=goal_text(goal),
            run_id=stage.session_id,
            stages=_stages(stage, values, with_responses=fidelity.mode == "summary"),
            context=values,
        )


def _join(preamble: str, user: str) -> str:
    return f"{preamble}\n\n---\n\n{user}" if preamble else user


def _stages(
    stage: StageRun, values: Mapping[str, object], *, with_responses: bool
) -> list[StageSummary]:
    completed = list(stage.completed_nodes)
    read_from = len(completed) - _RESPONSES_READ
    summaries = []
    for index, node_id in enumerate(completed):
        outcome = stage.node_outcomes.get(node_id, {})
        files = values.get(f"agent.{node_id}.files_written")
        response = ""
        if with_responses and index >= read_from:
            response = _response(stage.logs_root / node_id / "response.md")
        summaries.append(
            StageSummary(
                node_id,
                str(outcome.get("outcome") or "success"),
                notes=str(outcome.get("notes") or ""),
                failure_reason=str(outcome.get("failure_reason") or ""),
                preferred_label=str(outcome.get("preferred_label") or ""),
                response=response,
                files=tuple(str(f) for f in files) if isinstance(files, list) else (),
            )
        )
    return summaries


def _response(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            return file.read(_RESPONSE_CHARS)
    except OSError:
        return ""
