"""The agent's side of a chat node (``agent.mode="interactive"``), on any backend.

A chat is the node's prompt, then the agent's replies and the person's messages in turn.
:func:`chat_reply` gets the agent's next reply from a backend: one with a ``chat`` method
(``agent``, ``direct``, ``simulation``) continues the conversation itself, the model seeing
its earlier turns as they were; any other (``cli_agent``, a backend of the user's) is
asked with its ``run`` and a prompt holding the conversation so far (:func:`transcript_prompt`).

A backend's ``chat`` is called with ``stage.call`` numbering the replies (1, 2, …) and
``lines`` the conversation so far, the person's message to answer last (none for the
first reply). It records what it needs under ``stage.key``, so that a reply asked again
after a crash is not asked of the model twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import attrs

from orchestra.backends.base import CodergenBackend, StageReply
from orchestra.engine.context import Context
from orchestra.graph import Node
from orchestra.llm.types import Message
from orchestra.outcome import Outcome

if TYPE_CHECKING:
    from orchestra.handlers.base import StageRun

__all__ = [
    "CHAT_CONTRACT",
    "ChatBackend",
    "ChatLine",
    "chat_messages",
    "chat_reply",
    "transcript_prompt",
]

CHAT_CONTRACT = """\
You are in a conversation with a person, inside one stage of a pipeline. Reply to them, \
ask what you need to know, and keep each reply focused. The person ends the conversation \
when they are satisfied; your last reply is then the stage's result, so make it stand on \
its own.

Only when the person has clearly said the work is finished may you end the conversation \
yourself, with a status block at the end of your reply, exactly in this form:

```status
{"outcome": "success", "preferred_label": "", "context_updates": {}, "notes": "one line"}
```"""


@attrs.frozen
class ChatLine:
    """One message of a chat: the agent's reply or the person's message."""

    who: Literal["agent", "human"]
    text: str


@runtime_checkable
class ChatBackend(Protocol):
    """A backend that carries a chat's conversation itself."""

    async def chat(
        self, node: Node, prompt: str, context: Context, stage: StageRun, lines: Sequence[ChatLine]
    ) -> Outcome | StageReply: ...


async def chat_reply(
    backend: CodergenBackend,
    node: Node,
    prompt: str,
    context: Context,
    stage: StageRun,
    lines: Sequence[ChatLine],
) -> Outcome | StageReply:
    """The agent's reply to the last of ``lines`` (to ``prompt`` when there are none); an
    ``Outcome`` alone when the backend failed (the chat then ends with it)."""
    if isinstance(backend, ChatBackend):
        return await backend.chat(node, prompt, context, stage, lines)
    result = await backend.run(node, transcript_prompt(prompt, lines), context, stage)
    if isinstance(result, StageReply):
        return result
    if isinstance(result, Outcome):
        if not result.status.is_success:
            return result
        text = str(result.context_updates.get("last_response") or result.notes)
        return StageReply(text, result)
    return StageReply(result, Outcome.success(f"stage completed: {node.id}"))


def transcript_prompt(prompt: str, lines: Sequence[ChatLine]) -> str:
    """One prompt holding the whole conversation, for a backend that takes one prompt per
    call: the node's prompt, what was said, and the request to answer the last message."""
    if not lines:
        return f"{prompt}\n\n{_CHAT_NOTE}"
    said = "\n\n".join(
        f"**{'You' if line.who == 'agent' else 'The person'}:**\n{line.text}" for line in lines
    )
    return (
        f"{prompt}\n\n{_CHAT_NOTE}\n\n## The conversation so far\n\n{said}\n\n"
        "Reply to the person's last message."
    )


_CHAT_NOTE = (
    "This is a conversation with a person: reply to them, and they will answer. Do not end "
    "your reply with a status block unless they said the work is finished."
)


def chat_messages(opening: Sequence[Message], lines: Sequence[ChatLine]) -> list[Message]:
    """The conversation as model messages: the opening, then each line in turn."""
    messages = list(opening)
    for line in lines:
        messages.append(
            Message.assistant(line.text) if line.who == "agent" else Message.user(line.text)
        )
    return messages
