"""The human gate (spec §4.6): the outgoing edges become choices, a person picks one.

The question shows what it is about: the previous stage's response (from its
``response.md``, cut to a budget with the file named), or the context key ``human.show``
names. ``human.input="text"`` asks for a typed answer too, kept in ``human.gate.text`` for
the next prompts. The answer is recorded in the store before the node completes, so a run
resumed after a crash does not ask again. ``human.timeout`` (or the spec's ``timeout``)
bounds the wait, whatever the interviewer; on timeout ``human.default_choice`` is taken and
recorded as a timeout; without one the gate asks again while it has retries left, then
fails saying why.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
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


#: characters of the previous stage's response a question shows
DETAILS_BUDGET = 1500
_TEXT_PROMPT = "Your answer (free text):"
FREEFORM = QuestionType.FREEFORM


def _limit(node: Node) -> Duration | None:
    limit = node.attrs.get("human.timeout")
    return limit if isinstance(limit, Duration) else node.timeout


def question_details(node: Node, context: Context, stage: StageRun) -> str:
    """What the gate asks about: the context key ``human.show`` names, else the previous
    stage's response; cut to ``DETAILS_BUDGET`` characters, naming where the rest is."""
    shown = str(node.attrs.get("human.show") or "").strip()
    if shown:
        key = shown.removeprefix("context.")
        value = context.get(key)
        text, where = ("" if value is None else str(value)), f"context key {key}"
    else:
        previous = stage.previous_node
        if not previous:
            return ""
        response = stage.logs_root / previous / "response.md"
        if response.is_file():
            text, where = response.read_text(encoding="utf-8", errors="replace"), str(response)
        else:
            recorded = context.get("last_response")
            text = str(recorded) if recorded and context.get("last_stage") == previous else ""
            where = f"{previous}'s last_response"
    text = text.strip()
    if len(text) > DETAILS_BUDGET:
        text = text[:DETAILS_BUDGET].rstrip() + f"\n… (the rest is in {where})"
    return text


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
            answer = await self._ask(node, choices, context, stage)
        if answer.value is AnswerValue.TIMEOUT:
            default = str(node.attrs.get("human.default_choice", "")).strip()
            chosen = next((c for c in choices if default and _matches(c, default)), None)
            if chosen is None:  # spec §4.6: RETRY, which asks again while retries remain
                limit = _limit(node)
                after = f" after {limit}" if limit is not None else ""
                return Outcome(
                    StageStatus.RETRY,
                    failure_reason=f"human gate '{node.id}' timed out{after} and has no "
                    "human.default_choice to take",
                )
            return self._chosen(chosen, "default choice after timeout", answer, timed_out=True)
        if answer.value is AnswerValue.SKIPPED:
            return Outcome.fail("the human skipped the question")
        if _wants_text(node) and len(choices) == 1:
            return self._chosen(choices[0], "the human answered", answer)
        wanted = (
            answer.selected_option.key
            if answer.selected_option
            else str(answer.value.value if isinstance(answer.value, AnswerValue) else answer.value)
        )
        chosen = next((c for c in choices if _matches(c, wanted)), choices[0])
        return self._chosen(chosen, f"human chose {chosen.label}", answer)

    async def _ask(
        self, node: Node, choices: list[_Choice], context: Context, stage: StageRun
    ) -> Answer:
        limit = _limit(node)
        details = question_details(node, context, stage)
        text = str(node.attrs.get("prompt") or "").strip() or node.label or "Select an option:"
        question = Question(
            text=text,
            type=QuestionType.MULTIPLE_CHOICE,
            options=tuple(Option(c.key, c.label) for c in choices),
            timeout_seconds=limit.seconds if limit is not None else None,
            stage=node.id,
            details=details,
            # where the answer may come from when it comes through the store
            metadata={"session_id": stage.session_id, "execution": stage.execution},
        )
        if _wants_text(node) and len(choices) == 1:
            question = attrs.evolve(question, type=FREEFORM, options=())
        if stage.record is not None:  # `orchestra status` shows it, `orchestra answer` answers it
            entry = question_entry(question, stage.execution, wants_text=_wants_text(node))
            await stage.record("question", entry)
        await stage.emit(
            InterviewStarted(
                session_id=stage.session_id,
                node_id=node.id,
                question=question.text,
                stage=node.id,
                options=tuple(c.label for c in choices),
                details=details,
            )
        )
        began = time.monotonic()
        answer = await _within(limit, stage, question)
        answered = answer.value not in (AnswerValue.TIMEOUT, AnswerValue.SKIPPED)
        if question.type is not FREEFORM and _wants_text(node) and answered:  # then the text
            left = None if limit is None else max(limit.seconds - time.monotonic() + began, 0)
            typed = await _within(
                None if left is None else Duration(left, f"{left:g}s"),
                stage,
                Question(
                    _TEXT_PROMPT,
                    FREEFORM,
                    timeout_seconds=left,
                    stage=node.id,
                    metadata=question.metadata,
                ),
            )
            answer = (
                typed
                if typed.value in (AnswerValue.TIMEOUT, AnswerValue.SKIPPED)
                else attrs.evolve(answer, text=typed.text or str(typed.value))
            )
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
            await stage.emit(
                InterviewCompleted(
                    session_id=stage.session_id,
                    node_id=node.id,
                    question=question.text,
                    answer=_shown(answer),
                    duration=waited,
                )
            )
        if stage.record is not None:
            await stage.record(
                "answer", {"answer": {"answer": answer.to_json(), "execution": stage.execution}}
            )
        return answer

    @staticmethod
    def _chosen(choice: _Choice, notes: str, answer: Answer, *, timed_out: bool = False) -> Outcome:
        updates: dict[str, object] = {
            "human.gate.selected": choice.key,
            "human.gate.label": choice.label,
            "human.gate.timed_out": timed_out,
        }
        if answer.text:
            updates["human.gate.text"] = answer.text
        return Outcome(
            StageStatus.SUCCESS,
            preferred_label=choice.label,
            suggested_next_ids=(choice.target,),
            context_updates=updates,
            notes=notes,
        )


def question_entry(question: Question, execution: int, *, wants_text: bool) -> dict[str, Any]:
    """The ``question`` turn's entries for ``question`` (recorded by the gate, read by
    ``orchestra.answers``); ``wants_text``: a typed answer is asked for after the choice."""
    return {
        "question": {
            "execution": execution,
            "text": question.text,
            "type": question.type.value,
            "options": [[o.key, o.label] for o in question.options],
            "details": question.details,
            "wants_text": wants_text,
        }
    }


def _wants_text(node: Node) -> bool:
    return str(node.attrs.get("human.input") or "").strip().lower() == "text"


def _shown(answer: Answer) -> str:
    if answer.selected_option is not None:
        return answer.selected_option.label + (f": {answer.text}" if answer.text else "")
    if answer.text:
        return answer.text
    return str(answer.value.value if isinstance(answer.value, AnswerValue) else answer.value)


async def _within(limit: Duration | None, stage: StageRun, question: Question) -> Answer:
    """The interviewer's answer, or TIMEOUT once ``limit`` has passed, whatever kind of
    interviewer it is."""
    if limit is None:
        return await stage.interviewer.ask(question)
    with anyio.move_on_after(limit.seconds):
        return await stage.interviewer.ask(question)
    return Answer(AnswerValue.TIMEOUT)
