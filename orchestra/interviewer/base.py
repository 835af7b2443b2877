"""The interviewer pattern (spec §6): how a pipeline asks a human, whatever the frontend."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = [
    "Answer",
    "AnswerValue",
    "AutoApproveInterviewer",
    "CallbackInterviewer",
    "Interviewer",
    "NoTerminalInterviewer",
    "Option",
    "Question",
    "QuestionType",
    "QueueInterviewer",
    "RecordingInterviewer",
]


class QuestionType(enum.Enum):
    YES_NO = "yes_no"
    MULTIPLE_CHOICE = "multiple_choice"
    FREEFORM = "freeform"
    CONFIRMATION = "confirmation"


class AnswerValue(enum.Enum):
    YES = "yes"
    NO = "no"
    SKIPPED = "skipped"
    TIMEOUT = "timeout"


@attrs.frozen
class Option:
    key: str
    label: str


@attrs.frozen
class Answer:
    value: str | AnswerValue
    selected_option: Option | None = None
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        value = self.value.value if isinstance(self.value, AnswerValue) else self.value
        option = attrs.asdict(self.selected_option) if self.selected_option else None
        return {
            "value": value,
            "special": isinstance(self.value, AnswerValue),
            "selected_option": option,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Answer:
        raw = str(data.get("value", ""))
        value: str | AnswerValue = AnswerValue(raw) if data.get("special") else raw
        option = data.get("selected_option")
        return cls(
            value,
            Option(**option) if isinstance(option, Mapping) else None,
            str(data.get("text") or ""),
        )


@attrs.frozen
class Question:
    text: str
    type: QuestionType = QuestionType.MULTIPLE_CHOICE
    options: tuple[Option, ...] = ()
    default: Answer | None = None
    timeout_seconds: float | None = None
    stage: str = ""
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    #: what the question is about, shown before it (the previous stage's answer, say)
    details: str = ""
    #: the person's next message in a chat with an agent (a ``FREEFORM`` question): the
    #: text is the message, or a command (``/done``, ``/approve``, ``/reject``, ``/help``)
    chat: bool = False


@runtime_checkable
class Interviewer(Protocol):
    async def ask(self, question: Question) -> Answer: ...

    async def inform(self, message: str, stage: str) -> None: ...


class AutoApproveInterviewer:
    """YES to yes/no questions, the first option of a choice, ``/done`` in a chat: for CI
    and tests."""

    async def ask(self, question: Question) -> Answer:
        if question.chat:
            return Answer("/done", text="/done")
        if question.type in (QuestionType.YES_NO, QuestionType.CONFIRMATION):
            return Answer(AnswerValue.YES)
        if question.type is QuestionType.MULTIPLE_CHOICE and question.options:
            first = question.options[0]
            return Answer(first.key, selected_option=first)
        return Answer("auto-approved", text="auto-approved")

    async def inform(self, message: str, stage: str) -> None:
        return None


class NoTerminalInterviewer:
    """For a run with no terminal to ask in: every question stops the run with
    ``HumanUnavailable``, saying how to answer instead. Nothing is approved silently."""

    def __init__(self, how: str = "") -> None:
        self.how = how or (
            "pass --auto-approve to take each gate's first choice, or run it in a terminal"
        )

    async def ask(self, question: Question) -> Answer:
        from orchestra.errors import HumanUnavailable

        raise HumanUnavailable(
            f"node '{question.stage}' asks a person ({question.text!r}) and stdin is not a "
            f"terminal: {self.how}"
        )

    async def inform(self, message: str, stage: str) -> None:
        return None


class QueueInterviewer:
    """Answers from a prepared queue, then SKIPPED: for deterministic tests."""

    def __init__(self, answers: Iterable[Answer | str]) -> None:
        self.answers = [a if isinstance(a, Answer) else Answer(a) for a in answers]
        self.asked: list[Question] = []

    async def ask(self, question: Question) -> Answer:
        self.asked.append(question)
        if not self.answers:
            return Answer(AnswerValue.SKIPPED)
        return self.answers.pop(0)

    async def inform(self, message: str, stage: str) -> None:
        return None


class CallbackInterviewer:
    """Delegates to a function (sync or async): Slack bots, web UIs, tests."""

    def __init__(self, callback: Callable[[Question], Answer | Awaitable[Answer]]) -> None:
        self.callback = callback

    async def ask(self, question: Question) -> Answer:
        result = self.callback(question)
        if isinstance(result, Answer):
            return result
        return await result

    async def inform(self, message: str, stage: str) -> None:
        return None


class RecordingInterviewer:
    """Wraps another interviewer and keeps every question with its answer."""

    def __init__(self, inner: Interviewer) -> None:
        self.inner = inner
        self.recordings: list[tuple[Question, Answer]] = []

    async def ask(self, question: Question) -> Answer:
        answer = await self.inner.ask(question)
        self.recordings.append((question, answer))
        return answer

    async def inform(self, message: str, stage: str) -> None:
        await self.inner.inform(message, stage)
