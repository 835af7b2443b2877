"""The ``direct`` backend: one model call, no tools, for analysis and synthesis nodes.

The model and prompt resolve as for the ``agent`` backend (node, agent layers, provider
tiers); the answer's status block sets the outcome the same way. The answer is recorded in
the store before the node completes, so a node resumed after a crash does not call the
model again for the same execution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from orchestra.agent.session import CONTINUE
from orchestra.backends.agent import (
    PreparedCall,
    Spent,
    answer_outcome,
    max_tokens,
    on_truncation,
    outcome_for_error,
    prepare_call,
    truncated_outcome,
    usage_updates,
    write_opening,
)
from orchestra.backends.base import StageReply
from orchestra.backends.chat import CHAT_CONTRACT, ChatLine, chat_messages
from orchestra.backends.threads import Threads
from orchestra.config import Config
from orchestra.engine.context import Context
from orchestra.graph import Node
from orchestra.handlers.base import StageRun
from orchestra.llm.client import Client
from orchestra.llm.errors import LLMError
from orchestra.llm.pricing import Prices, load_prices
from orchestra.llm.serialize import (
    message_from_data,
    message_to_data,
    usage_from_data,
    usage_to_data,
)
from orchestra.llm.types import Message, Request, Usage
from orchestra.outcome import Outcome

__all__ = ["DirectBackend"]

#: what the backend records for a node, per execution
_ANSWER = "direct.answer"
#: how many times an answer cut off at the output limit is continued
_CONTINUATIONS = 3


class DirectBackend:
    name = "direct"

    def __init__(
        self,
        config: Config,
        client: Client,
        *,
        prices: Prices | None = None,
        threads: Threads | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.prices = prices if prices is not None else load_prices(config.prices)
        self.threads = threads if threads is not None else Threads()

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome | StageReply:
        call = prepare_call(self.config, node, prompt, context, stage)
        recorded = stage.recorded.get(_ANSWER, {}).get(stage.key)
        if recorded is None:
            opening = self.threads.opening(node, call.user, context, stage)
            write_opening(stage, opening)
            asked = await self._ask(node, call, opening.messages)
            if isinstance(asked, Outcome):
                return asked
            self.threads.keep(opening, node, stage, (*opening.messages, asked["message"]))
            recorded = await self._record(stage, asked)
        return self._reply(node, call, recorded)

    async def chat(
        self, node: Node, prompt: str, context: Context, stage: StageRun, lines: Sequence[ChatLine]
    ) -> Outcome | StageReply:
        """The agent's reply ``stage.call`` in a chat: the opening the first reply was
        sent, then each reply as the model gave it and each message of the person."""
        call = prepare_call(self.config, node, prompt, context, stage, contract=CHAT_CONTRACT)
        answers = stage.recorded.get(_ANSWER, {})
        recorded = answers.get(stage.key)
        if recorded is None:
            first = answers.get(f"{stage.visit}.1") if stage.call > 1 else None
            if first is not None and first.get("opening"):
                opening = [message_from_data(m) for m in first["opening"]]
            elif stage.call > 1:  # nothing recorded (no store): the node's prompt
                opening = [Message.user(call.user)]
            else:
                begun = self.threads.opening(node, call.user, context, stage)
                write_opening(stage, begun)
                opening = list(begun.messages)
            asked = await self._ask(node, call, self._conversation(opening, lines, stage, answers))
            if isinstance(asked, Outcome):
                return asked
            if stage.call == 1:
                asked["opening"] = opening
            recorded = await self._record(stage, asked)
        return self._reply(node, call, recorded)

    async def _ask(
        self, node: Node, call: PreparedCall, messages: Sequence[Message]
    ) -> dict[str, Any] | Outcome:
        """The model's whole answer to ``messages`` (``message``, ``usage``, ``calls``), or
        the outcome when it could not be had or stayed cut off."""
        request = Request(
            model=call.model,
            messages=(Message.system(call.system), *messages),
            provider=call.provider,
            reasoning_effort=call.reasoning_effort,
            max_tokens=max_tokens(node),
        )
        try:
            message, usage, calls, complete = await self._complete(node, request)
        except LLMError as err:
            return outcome_for_error(err, call)
        if not complete:
            spent = Spent(usage, model_calls=calls)
            return truncated_outcome(node, usage_updates(node.id, call, spent, self.prices))
        return {"message": message, "usage": usage, "calls": calls}

    @staticmethod
    async def _record(stage: StageRun, asked: Mapping[str, Any]) -> dict[str, Any]:
        """Keep an answer for this call, so that it is not asked for again after a crash."""
        entry: dict[str, Any] = {
            "message": message_to_data(asked["message"]),
            "usage": usage_to_data(asked["usage"]),
            "calls": asked["calls"],
        }
        if "opening" in asked:
            entry["opening"] = [message_to_data(m) for m in asked["opening"]]
        if stage.record is not None:
            await stage.record(_ANSWER, {stage.key: entry})
        return entry

    def _reply(self, node: Node, call: PreparedCall, recorded: Mapping[str, Any]) -> StageReply:
        message = message_from_data(recorded["message"])
        usage = usage_from_data(recorded.get("usage") or {})
        spent = Spent(usage, model_calls=int(recorded.get("calls") or 1))
        return answer_outcome(
            node.id, message.text, usage_updates(node.id, call, spent, self.prices)
        )

    async def _complete(self, node: Node, request: Request) -> tuple[Message, Usage, int, bool]:
        """The model's answer to ``request``, whole: an answer cut off at the output limit
        is continued (``agent.on_truncation``, at most three times) and joined; False when
        it stays cut off. Also the number of model calls it took."""
        parts: list[str] = []
        usage = Usage()
        continuing = on_truncation(node) == "continue"
        while True:
            response = await self.client.complete(request)
            usage = usage + response.usage
            if response.finish_reason.reason != "length" or response.tool_calls:
                if not parts:
                    return response.message, usage, 1, True
                joined = Message.assistant("".join([*parts, response.text]))
                return joined, usage, len(parts) + 1, True
            parts.append(response.text)
            if not continuing or len(parts) > _CONTINUATIONS:
                return Message.assistant("".join(parts)), usage, len(parts), False
            messages = (*request.messages, response.message, Message.user(CONTINUE))
            request = attrs.evolve(request, messages=messages)

    @staticmethod
    def _conversation(
        opening: Sequence[Message],
        lines: Sequence[ChatLine],
        stage: StageRun,
        answers: Mapping[str, Any],
    ) -> list[Message]:
        """The opening and the lines, each reply of the agent as the model gave it (status
        block and all) where it was recorded."""
        messages = chat_messages(opening, lines)
        reply = 0
        for index, line in enumerate(lines):
            if line.who != "agent":
                continue
            reply += 1
            given = answers.get(f"{stage.visit}.{reply}")
            if given is not None:
                messages[len(opening) + index] = message_from_data(given["message"])
        return messages
