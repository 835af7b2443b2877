"""Questions and answers as turns of the session, so that a person can answer from anywhere.

A gate records its question (kind ``question``) before it asks. ``StoreInterviewer`` then
waits for an answer turn (kind ``answer``, the gate's own format) that another process
appends: ``orchestra answer SESSION --choice K`` or ``answer_question`` here. It works on
every store, the answer being a turn like any other; the runner's next turn follows it.
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import attrs

from orchestra.engine.routing import normalize_label
from orchestra.engine.session import SessionRecorder, SessionState, load_session
from orchestra.errors import OrchestraError
from orchestra.interviewer.base import Answer, Option, Question, QuestionType
from orchestra.store.base import Store

__all__ = [
    "NoPendingQuestion",
    "PendingQuestion",
    "StoreInterviewer",
    "answer_question",
    "pending_question",
]

#: seconds between two looks for an answer
POLL_INTERVAL = 0.2


class NoPendingQuestion(OrchestraError, LookupError):
    """``orchestra answer`` for a session that is not waiting on a question, or with an
    answer the question does not take."""


@attrs.frozen
class PendingQuestion:
    """A question a session is waiting on: the gate, its execution, what it asks."""

    node_id: str
    execution: int
    text: str
    type: str
    options: tuple[Option, ...]
    details: str = ""
    #: the gate asks for typed text too (``human.input="text"``)
    wants_text: bool = False
    #: a chat node waits for the person's message number ``turn`` (text, or a command
    #: such as ``/done``)
    chat: bool = False
    turn: int | None = None


def pending_question(state: SessionState) -> PendingQuestion | None:
    """The question the session waits on: one recorded at its current node with no answer
    for the same execution yet."""
    recorded = state.recorded.get(state.position, {})
    asked = recorded.get("question", {}).get("question")
    if not isinstance(asked, Mapping) or state.ended:
        return None
    answered = recorded.get("answer", {}).get("answer")
    execution = int(asked.get("execution") or 0)
    turn = asked.get("turn")
    if (
        isinstance(answered, Mapping)
        and answered.get("execution") == execution
        and answered.get("turn") == turn
    ):
        return None
    if turn is not None and f"{execution}:{int(turn):04d}" in recorded.get("chat", {}):
        return None  # the chat's message was said (in the terminal where it runs)
    return PendingQuestion(
        node_id=state.position,
        execution=execution,
        text=str(asked.get("text") or ""),
        type=str(asked.get("type") or "multiple_choice"),
        options=tuple(Option(str(k), str(label)) for k, label in asked.get("options") or ()),
        details=str(asked.get("details") or ""),
        wants_text=bool(asked.get("wants_text")),
        chat=bool(asked.get("chat")),
        turn=int(turn) if turn is not None else None,
    )


async def answer_question(
    store: Store, session_id: str, *, choice: str | None = None, text: str | None = None
) -> tuple[PendingQuestion, Answer]:
    """Answer the question ``session_id`` waits on with a choice (its key or label) and/or
    text; raises ``NoPendingQuestion`` saying what is wrong."""
    state = await load_session(store, session_id)
    pending = pending_question(state)
    if pending is None:
        raise NoPendingQuestion(
            f"session {session_id} is not waiting on a question (it is {state.status}, at "
            f"{state.position or 'its start'})"
        )
    if pending.options and pending.type == QuestionType.MULTIPLE_CHOICE.value:
        wanted = (choice or "").strip()
        option = next(
            (
                o
                for o in pending.options
                if wanted.upper() == o.key or normalize_label(wanted) == normalize_label(o.label)
            ),
            None,
        )
        if option is None:
            listed = ", ".join(
                o.label if o.label.startswith("[") else f"[{o.key}] {o.label}"
                for o in pending.options
            )
            raise NoPendingQuestion(
                f"node '{pending.node_id}' asks {pending.text!r}: answer with --choice and one "
                f"of {listed}"
            )
        if pending.wants_text and text is None:
            raise NoPendingQuestion(
                f"node '{pending.node_id}' asks {pending.text!r} for a choice and text: "
                "answer with --choice and --text"
            )
        answer = Answer(option.key, selected_option=option, text=text or "")
    else:
        if text is None:
            what = "a chat message (or /done, /reject)" if pending.chat else f"{pending.text!r}"
            raise NoPendingQuestion(
                f"node '{pending.node_id}' asks for {what}: answer with --text"
                if pending.chat
                else f"node '{pending.node_id}' asks {what} for text: answer with --text"
            )
        answer = Answer(text, text=text)
    entry: dict[str, object] = {"answer": answer.to_json(), "execution": pending.execution}
    if pending.turn is not None:
        entry["turn"] = pending.turn
    entries = {"answer": entry}
    await SessionRecorder(store, int(session_id)).record(pending.node_id, "answer", entries)
    return pending, answer


class StoreInterviewer:
    """Waits for each question's answer to arrive in the store, from ``orchestra answer``
    in any process or machine that reaches the same store."""

    def __init__(self, store: Store, *, interval: float = POLL_INTERVAL) -> None:
        self.store = store
        self.interval = interval

    async def ask(self, question: Question) -> Answer:
        session_id = str(question.metadata.get("session_id") or "")
        execution = int(question.metadata.get("execution") or 0)
        turn = question.metadata.get("turn")
        if not session_id:
            raise OrchestraError(
                f"node '{question.stage}': the question carries no session to wait in"
            )
        while True:
            state = await load_session(self.store, session_id)
            answered = state.recorded.get(question.stage, {}).get("answer", {}).get("answer")
            if (
                isinstance(answered, Mapping)
                and answered.get("execution") == execution
                and answered.get("turn") == turn
            ):
                return Answer.from_json(answered["answer"])
            await anyio.sleep(self.interval)

    async def inform(self, message: str, stage: str) -> None:
        return None
