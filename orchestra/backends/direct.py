"""The ``direct`` backend: one model call, no tools, for analysis and synthesis nodes.

The model and prompt resolve as for the ``agent`` backend (node, agent layers, provider
tiers); the answer's status block sets the outcome the same way. The answer is recorded in
the store before the node completes, so a node resumed after a crash does not call the
model again for the same execution.
"""

from __future__ import annotations

from orchestra.backends.agent import (
    Spent,
    answer_outcome,
    outcome_for_error,
    prepare_call,
    usage_updates,
    write_opening,
)
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
from orchestra.llm.types import Message, Request
from orchestra.outcome import Outcome

__all__ = ["DirectBackend"]

#: what the backend records for a node, per execution
_ANSWER = "direct.answer"


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
    ) -> str | Outcome:
        call = prepare_call(self.config, node, prompt, context, stage)
        key = str(stage.execution)
        recorded = stage.recorded.get(_ANSWER, {}).get(key)
        if recorded is not None:
            message = message_from_data(recorded["message"])
            usage = usage_from_data(recorded.get("usage") or {})
        else:
            opening = self.threads.opening(node, call.user, context, stage)
            write_opening(stage, opening)
            request = Request(
                model=call.model,
                messages=(Message.system(call.system), *opening.messages),
                provider=call.provider,
                reasoning_effort=call.reasoning_effort,
            )
            try:
                response = await self.client.complete(request)
            except LLMError as err:
                return outcome_for_error(err, call)
            message, usage = response.message, response.usage
            self.threads.keep(opening, node, stage, (*opening.messages, message))
            if stage.record is not None:
                await stage.record(
                    _ANSWER,
                    {key: {"message": message_to_data(message), "usage": usage_to_data(usage)}},
                )
        spent = Spent(usage, model_calls=1)
        return answer_outcome(
            node.id, message.text, usage_updates(node.id, call, spent, self.prices)
        )
