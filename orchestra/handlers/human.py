"""The human gate (spec §4.6): the outgoing edges become choices, a person picks one.

The answer is recorded in the store before the node completes, so a run resumed after a
crash does not ask again. ``human.timeout`` (a duration, Orchestra's) bounds the wait; on
timeout ``human.default_choice`` is taken if set, else the node asks for a retry.
"""

from __future__ import annotations

import time

import attrs

from orchestra.attributes import Duration
from orchestra.engine.context import Context
from orchestra.engine.routing import accelerator_key, normalize_label
from orchestra.events import InterviewCompleted, InterviewStarted, InterviewTimeout
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun
from orchestra.interviewer.base import Answer, AnswerValue, Option, Question, QuestionType
from orchestra.outcome import Outcome, StageStatus

__all__ = ["WaitForHumanHandler"]


@attrs.frozen
class _Choice:
    key: str
    label: str
    target: str


def _matches(choice: _Choice, wanted: str) -> bool:
    wanted = wanted.strip()
    return (
        wanted.upper() == choice.key
        or wanted == choice.target
        or (normalize_label(wanted) == normalize_label(choice.label))
    )


class WaitForHumanHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        choices = [
            _Choice(
                accelerator_key(edge.label or edge.target), edge.label or edge.target, edge.target
            )
            for edge in graph.outgoing(node.id)
        ]
        if not choices:
            return Outcome.fail(f"human gate '{node.id}' has no outgoing edges to choose from")
        # An answer recorded by this same execution survived a crash: use it. A retry is a
        # new execution and asks again.
        recorded = stage.recorded.get("answer", {}).get("answer")
        if recorded is not None and recorded.get("execution") == stage.execution:
            answer = Answer.from_json(recorded["answer"])
        else:
            answer = await self._ask(node, choices, stage)
        if answer.value is AnswerValue.TIMEOUT:
            default = str(node.attrs.get("human.default_choice", "")).strip()
            chosen = next((c for c in choices if default and _matches(c, default)), None)
            if chosen is None:
                return Outcome(
                    StageStatus.RETRY, failure_reason="human gate timed out with no default choice"
                )
            return self._chosen(chosen, "default choice after timeout")
        if answer.value is AnswerValue.SKIPPED:
            return Outcome.fail("the human skipped the question")
        wanted = (
            answer.selected_option.key
            if answer.selected_option
            else str(answer.value.value if isinstance(answer.value, AnswerValue) else answer.value)
        )
        chosen = next((c for c in choices if _matches(c, wanted)), choices[0])
        return self._chosen(chosen, f"human chose {chosen.label}")

    async def _ask(self, node: Node, choices: list[_Choice], stage: StageRun) -> Answer:
        limit = node.attrs.get("human.timeout")
        question = Question(
            text=node.label or "Select an option:",
            type=QuestionType.MULTIPLE_CHOICE,
            options=tuple(Option(c.key, c.label) for c in choices),
            timeout_seconds=limit.seconds if isinstance(limit, Duration) else None,
            stage=node.id,
        )
        await stage.emit(
            InterviewStarted(
                session_id=stage.session_id,
                node_id=node.id,
                question=question.text,
                stage=node.id,
                options=tuple(c.label for c in choices),
            )
        )
        began = time.monotonic()
        answer = await stage.interviewer.ask(question)
        waited = time.monotonic() - began
        if answer.value is AnswerValue.TIMEOUT:
            await stage.emit(
                InterviewTimeout(
                    session_id=stage.session_id,
                    node_id=node.id,
                    question=question.text,
                    stage=node.id,
                    duration=waited,
                )
            )
        else:
            shown = (
                answer.selected_option.label
                if answer.selected_option
                else str(
                    answer.value.value if isinstance(answer.value, AnswerValue) else answer.value
                )
            )
            await stage.emit(
                InterviewCompleted(
                    session_id=stage.session_id,
                    node_id=node.id,
                    question=question.text,
                    answer=shown,
                    duration=waited,
                )
            )
        if stage.record is not None:
            await stage.record(
                "answer", {"answer": {"answer": answer.to_json(), "execution": stage.execution}}
            )
        return answer

    @staticmethod
    def _chosen(choice: _Choice, notes: str) -> Outcome:
        return Outcome(
            StageStatus.SUCCESS,
            preferred_label=choice.label,
            suggested_next_ids=(choice.target,),
            context_updates={"human.gate.selected": choice.key, "human.gate.label": choice.label},
            notes=notes,
        )
