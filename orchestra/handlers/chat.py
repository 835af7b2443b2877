"""Chat nodes: a codergen node with ``agent.mode="interactive"`` talks with a person.

The node opens with its prompt; the agent replies (on whatever backend runs the node, see
``orchestra.backends.chat``); the person answers through the interviewer; and so on until
the person types ``/done`` or ``/approve`` (the stage succeeds, ``last_response`` holding the
agent's last reply, whole) or ``/reject`` (the stage fails, "rejected by the human", and is
not retried). ``/help`` lists the commands. The agent may end the chat itself with a status
block, which then decides the outcome.

Every message is a turn of the session as it is said (kind ``chat``, keyed by the visit and
the message's number), and the person's message is durable before the model is asked to
answer it: a chat resumed after a crash or Ctrl-C shows its transcript again and goes on
where it was, without asking the model again for a reply it gave. A retry of the node (the
model could not be reached) continues the same chat. The whole transcript is in
``conversation.md`` and in the context as ``interactive.NODE.history``, so a second chat
node starts from its own prompt, not the first one's conversation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from orchestra.backends.base import StageReply
from orchestra.backends.chat import ChatLine, chat_reply
from orchestra.engine.context import Context
from orchestra.events import ChatMessage
from orchestra.graph import Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.interviewer.base import (
    Answer,
    AnswerValue,
    NoTerminalInterviewer,
    Question,
    QuestionType,
)
from orchestra.outcome import Outcome

__all__ = ["COMMANDS", "ChatHandler", "is_chat"]

#: what a person may type instead of a message
COMMANDS: Mapping[str, str] = {
    "/done": "end the chat: the stage succeeds with the agent's last reply",
    "/approve": "the same as /done",
    "/reject": "end the chat: the stage fails (rejected by the human)",
    "/help": "show these commands",
}
_ENDS = frozenset({"/done", "/approve"})
#: the kind a chat's messages are recorded under, keyed ``VISIT:NUMBER``
_LINES = "chat"
_ASK = "Your reply to the agent"
_START = "a chat: reply to the agent; /done ends it, /reject rejects it, /help lists commands"


def is_chat(node: Node) -> bool:
    return str(node.attrs.get("agent.mode") or "").strip().lower() == "interactive"


def help_text() -> str:
    """The commands, one per line."""
    width = max(len(name) for name in COMMANDS) + 2
    return "\n".join(f"{name:<{width}}{what}" for name, what in COMMANDS.items())


class ChatHandler:
    """Runs one chat node's conversation (called by the codergen handler)."""

    async def run(self, node: Node, prompt: str, context: Context, stage: StageRun) -> Outcome:
        if isinstance(stage.interviewer, NoTerminalInterviewer):  # before any model call
            await stage.interviewer.ask(Question(_ASK, QuestionType.FREEFORM, stage=node.id))
        lines, usage = _recorded(stage)
        await self._show(node, stage, prompt, lines)
        ended: Outcome | None = None
        said = lines[-1].text if lines and lines[-1].who == "human" else ""
        while said not in _ENDS:  # a chat ended before a crash is not taken up again
            if said == "/reject":
                outcome = Outcome.fail(
                    "rejected by the human", context_updates=_updates(node, lines, usage)
                )
                raise TerminalError("rejected by the human", outcome=outcome)
            if not lines or lines[-1].who == "human":
                replies = sum(1 for line in lines if line.who == "agent")
                call = attrs.evolve(stage, call=replies + 1)
                reply = await chat_reply(stage.backend, node, prompt, context, call, lines)
                if not isinstance(reply, StageReply):  # the model failed: RETRY or FAIL
                    return _with(reply, usage)
                usage = _add_usage(usage, reply.outcome.context_updates)
                lines = await self._say(node, stage, prompt, lines, "agent", reply.text, usage)
                if reply.stated:
                    ended = reply.outcome
                    break
            said = await self._listen(node, stage, lines)
            if said == "/help":
                await self._emit(node, stage, "orchestra", help_text(), len(lines))
                continue
            lines = await self._say(node, stage, prompt, lines, "human", said, usage)
        updates = _updates(node, lines, usage)
        if ended is not None:
            return attrs.evolve(ended, context_updates={**ended.context_updates, **updates})
        return Outcome.success(
            f"chat ended by the human after {len(_said(lines))} messages",
            context_updates=updates,
        )

    async def _show(
        self, node: Node, stage: StageRun, prompt: str, lines: Sequence[ChatLine]
    ) -> None:
        """The prompt, and after a resume the messages said before it."""
        await self._emit(node, stage, "prompt", prompt, 0, replayed=bool(lines))
        for number, line in enumerate(lines, 1):
            await self._emit(node, stage, line.who, line.text, number, replayed=True)
        if not lines:
            await self._emit(node, stage, "orchestra", _START, 0)

    async def _say(
        self,
        node: Node,
        stage: StageRun,
        prompt: str,
        lines: Sequence[ChatLine],
        who: str,
        text: str,
        usage: Mapping[str, Any],
    ) -> list[ChatLine]:
        """Record a message, emit it and rewrite ``conversation.md``."""
        line = ChatLine("agent" if who == "agent" else "human", text)
        number = len(lines) + 1
        if stage.record is not None:
            entry: dict[str, Any] = {"who": line.who, "text": text}
            if who == "agent":
                entry["usage"] = dict(usage)
            await stage.record(_LINES, {f"{stage.visit}:{number:04d}": entry})
        said = [*lines, line]
        _write_conversation(stage, node, prompt, said)
        await self._emit(node, stage, line.who, text, number)
        return said

    async def _listen(self, node: Node, stage: StageRun, lines: Sequence[ChatLine]) -> str:
        """The person's next message or command (an answer recorded for it before a crash,
        from ``orchestra answer`` say, is taken as it is)."""
        number = len(lines) + 1
        recorded = stage.recorded.get("answer", {}).get("answer")
        if (
            isinstance(recorded, Mapping)
            and recorded.get("execution") == stage.visit
            and recorded.get("turn") == number
        ):
            return _text(Answer.from_json(recorded["answer"]))
        question = Question(
            _ASK,
            QuestionType.FREEFORM,
            stage=node.id,
            chat=True,
            details=lines[-1].text if lines else "",
            metadata={"session_id": stage.session_id, "execution": stage.visit, "turn": number},
        )
        while True:
            if stage.record is not None:  # `orchestra answer` may answer it
                await stage.record("question", _question_entry(question, stage.visit, number))
            answer = await stage.interviewer.ask(question)
            if answer.value is AnswerValue.TIMEOUT:
                raise TerminalError(f"chat node '{node.id}': no reply from the human in time")
            if answer.value is AnswerValue.SKIPPED:
                raise TerminalError(
                    f"chat node '{node.id}': the human left the chat without /done or /reject"
                )
            text = _text(answer)
            command = text.strip().lower()
            if command.startswith("/"):
                if command in COMMANDS:
                    return command
                await self._emit(
                    node, stage, "orchestra", f"unknown command {text.strip()}\n{help_text()}", 0
                )
                continue
            if text.strip():
                return text

    @staticmethod
    async def _emit(
        node: Node, stage: StageRun, who: str, text: str, turn: int, *, replayed: bool = False
    ) -> None:
        await stage.emit(
            ChatMessage(
                session_id=stage.session_id,
                node_id=node.id,
                who=who,
                text=text,
                turn=turn,
                replayed=replayed,
                branch=stage.branch,
            )
        )


def _text(answer: Answer) -> str:
    if answer.text:
        return answer.text
    value = answer.value
    return value.value if isinstance(value, AnswerValue) else str(value)


def _question_entry(question: Question, visit: int, turn: int) -> dict[str, Any]:
    """The ``question`` turn's entries: what ``orchestra status`` shows and ``orchestra
    answer`` answers (see ``orchestra.answers``)."""
    return {
        "question": {
            "execution": visit,
            "turn": turn,
            "text": question.text,
            "type": question.type.value,
            "options": [],
            "details": question.details,
            "chat": True,
        }
    }


def _recorded(stage: StageRun) -> tuple[list[ChatLine], dict[str, Any]]:
    """This visit's messages so far, in order, and the usage of the agent's replies."""
    prefix = f"{stage.visit}:"
    entries = stage.recorded.get(_LINES, {})
    lines: list[ChatLine] = []
    usage: dict[str, Any] = {}
    for key in sorted(k for k in entries if k.startswith(prefix)):
        data = entries[key]
        text = str(data.get("text") or "")
        lines.append(ChatLine("agent" if data.get("who") == "agent" else "human", text))
        if isinstance(data.get("usage"), Mapping):
            usage = dict(data["usage"])
    return lines, usage


def _add_usage(total: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """The ``usage.*`` keys of a reply added to the chat's: counts and cost summed, the
    model named by the latest."""
    summed = dict(total)
    for key, value in updates.items():
        if not key.startswith("usage."):
            continue
        earlier = summed.get(key)
        if isinstance(value, int | float) and isinstance(earlier, int | float):
            summed[key] = round(earlier + value, 6) if isinstance(value, float) else earlier + value
        else:
            summed[key] = value
    return summed


def _said(lines: Sequence[ChatLine]) -> list[ChatLine]:
    """The messages, without the person's commands (``/done``)."""
    return [ln for ln in lines if not (ln.who == "human" and ln.text in COMMANDS)]


def _updates(node: Node, lines: Sequence[ChatLine], usage: Mapping[str, Any]) -> dict[str, Any]:
    last = next((line.text for line in reversed(lines) if line.who == "agent"), "")
    history = [{"who": ln.who, "text": ln.text} for ln in _said(lines)]
    return {
        "last_stage": node.id,
        "last_response": last,
        f"interactive.{node.id}.history": history,
        **usage,
    }


def _with(outcome: Outcome, usage: Mapping[str, Any]) -> Outcome:
    if not usage:
        return outcome
    return attrs.evolve(outcome, context_updates={**outcome.context_updates, **usage})


def _write_conversation(
    stage: StageRun, node: Node, prompt: str, lines: Sequence[ChatLine]
) -> None:
    """``conversation.md``: the prompt and every message, in order."""
    parts = [f"# Chat: {node.label or node.id}", f"## prompt\n\n{prompt.strip()}"]
    for line in lines:
        parts.append(f"## {line.who}\n\n{line.text.strip()}")
    stage.stage_dir.mkdir(parents=True, exist_ok=True)
    (stage.stage_dir / "conversation.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
