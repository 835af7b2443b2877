"""Chat nodes (agent.mode="interactive"): the agent and a person talk until the person ends
it; every message is a turn, so a chat stopped midway resumes where it was."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestra.answers import StoreInterviewer, answer_question, pending_question
from orchestra.backends.agent import AgentBackend
from orchestra.backends.base import StageReply
from orchestra.backends.chat import ChatLine, chat_reply, transcript_prompt
from orchestra.backends.direct import DirectBackend
from orchestra.config import Config, ProviderConfig, Providers
from orchestra.engine.context import Context
from orchestra.engine.session import load_session
from orchestra.events import ChatMessage
from orchestra.graph import Node
from orchestra.handlers.base import StageRun
from orchestra.interviewer.base import (
    Answer,
    AutoApproveInterviewer,
    CallbackInterviewer,
    Interviewer,
    Question,
    QueueInterviewer,
)
from orchestra.llm.client import Client, RetryPolicy
from orchestra.llm.types import Response, Role, ToolCall, Usage
from orchestra.pipeline import Pipeline, resume
from orchestra.store.base import Store
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import EventRecorder, ScriptedBackend, ScriptedModel, model_calls, model_says

CHAT = """
digraph brainstorm {
    graph [goal="a team offsite"]
    start   [shape=Mdiamond]
    ideas   [prompt="Brainstorm ideas for $goal with me", agent.mode="interactive",
             llm_model="worker"]
    summary [prompt="Summarise this plan: {{ last_response }}", llm_model="worker"]
    exit    [shape=Msquare]
    start -> ideas -> summary -> exit
}
"""

CONFIG = Config(
    backend="agent",
    providers=Providers(
        default="anthropic",
        by_name={"anthropic": ProviderConfig(models={"worker": "claude-sonnet-4-5"})},
    ),
)

#: a last reply longer than the 200 characters of an ordinary stage's last_response
PLAN = "Final plan:" + " a lakeside cabin, a hike, and a cooking class;" * 8


def says(text: str) -> Response:
    return model_says(text, usage=Usage(100, 20), model="claude-sonnet-4-5", provider="anthropic")


def agent(model: ScriptedModel, tmp_path: Path) -> AgentBackend:
    (tmp_path / "ws").mkdir(exist_ok=True)
    return AgentBackend(CONFIG, Client({"anthropic": model}), workspace=tmp_path / "ws")


def load(
    backend: Any,
    store: Store,
    tmp_path: Path,
    interviewer: Interviewer,
    source: str = CHAT,
) -> Pipeline:
    return Pipeline.load(
        source, store=store, backend=backend, interviewer=interviewer, logs_root=tmp_path / "run"
    )


def conversation(requests: Sequence[Any], index: int) -> list[tuple[Role, str]]:
    """Request ``index``'s messages after the system prompt, as (role, text)."""
    return [(m.role, m.text) for m in requests[index].messages[1:]]


def reply_of(result: Any, node: str = "ideas") -> str:
    """The node's last_response, as its outcome set it (the run's is the last stage's)."""
    return str(result.node_outcomes[node]["context_updates"]["last_response"])


def chat_events(events: EventRecorder) -> list[tuple[str, str]]:
    return [(e.who, e.text) for e in events.of(ChatMessage)]


class TestChatOnTheAgentBackend:
    async def test_three_messages_then_done(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """Three messages and /done: the model sees the whole conversation each time, the
        stage succeeds with the agent's last reply in full, and the next stage's prompt,
        the context, conversation.md and the events all hold it."""
        model = ScriptedModel(
            [says("Idea A"), says("Idea B"), says("Idea C"), says(PLAN), says("Summary.")],
            name="anthropic",
        )
        events = EventRecorder()
        interviewer = QueueInterviewer(["hiking?", "cheaper please", "sounds good", "/done"])
        result = await load(agent(model, tmp_path), store, tmp_path, interviewer).run(
            on_event=events
        )

        assert result.succeeded, result.failure_reason
        assert list(result.completed_nodes) == ["start", "ideas", "summary", "exit"]
        assert len(model.requests) == 5
        opening = "Brainstorm ideas for a team offsite with me"
        third = conversation(model.requests, 2)
        assert opening in third[0][1]
        assert third[1:] == [
            (Role.ASSISTANT, "Idea A"),
            (Role.USER, "hiking?"),
            (Role.ASSISTANT, "Idea B"),
            (Role.USER, "cheaper please"),
        ]
        assert "conversation with a person" in model.requests[0].messages[0].text
        assert PLAN in model.requests[4].messages[-1].text  # the whole reply
        run = tmp_path / "run"
        assert (run / "ideas" / "response.md").read_text() == PLAN
        transcript = (run / "ideas" / "conversation.md").read_text()
        said = ["Idea A", "hiking?", "Idea B", "cheaper please", "Idea C", "sounds good", "/done"]
        positions = [transcript.index(text) for text in said]
        assert positions == sorted(positions)
        history = result.context["interactive.ideas.history"]
        assert [line["text"] for line in history] == [*said[:6], PLAN]
        assert result.context["usage.ideas.model_calls"] == 4
        assert result.context["usage.ideas.input_tokens"] == 400
        who = [w for w, _ in chat_events(events)]
        assert who == ["prompt", "orchestra", *["agent", "human"] * 4]

    async def test_reject_fails_the_stage_without_a_retry(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """/reject fails the stage with "rejected by the human", and its retries are not
        used: a person's no is not asked again."""
        model = ScriptedModel([says("Idea A")], name="anthropic")
        source = CHAT.replace(
            'agent.mode="interactive",', 'agent.mode="interactive", max_retries=2,'
        )
        events = EventRecorder()
        pipeline = load(
            agent(model, tmp_path), store, tmp_path, QueueInterviewer(["/reject"]), source
        )
        result = await pipeline.run(on_event=events)

        assert not result.succeeded
        assert result.failure_reason == "rejected by the human"
        assert events.attempts("ideas") == [1]
        assert len(model.requests) == 1

    async def test_help_lists_the_commands_and_is_not_a_message(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """/help shows the commands; it is not sent to the model nor kept in the history;
        an unknown command is refused the same way."""
        model = ScriptedModel([says("Idea A"), says("Summary.")], name="anthropic")
        events = EventRecorder()
        interviewer = QueueInterviewer(["/help", "/nope", "/done"])
        result = await load(agent(model, tmp_path), store, tmp_path, interviewer).run(
            on_event=events
        )

        assert result.succeeded
        notes = [text for who, text in chat_events(events) if who == "orchestra"]
        assert any("/reject" in note and "/approve" in note for note in notes[1:])
        assert any("unknown command /nope" in note for note in notes)
        assert len(model.requests) == 2  # the opening reply, then the summary
        assert [ln["text"] for ln in result.context["interactive.ideas.history"]] == ["Idea A"]

    async def test_the_agent_may_end_the_chat_with_its_status_block(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A status block in a reply ends the chat with the outcome it states; the person is
        not asked again and the block is not part of the reply."""
        ending = 'Booked.\n\n```status\n{"outcome": "success", "notes": "agreed"}\n```'
        model = ScriptedModel([says("Idea A"), says(ending), says("Summary.")], name="anthropic")
        interviewer = QueueInterviewer(["book it, we are done"])
        result = await load(agent(model, tmp_path), store, tmp_path, interviewer).run()

        assert result.succeeded
        assert interviewer.answers == []
        assert reply_of(result) == "Booked."
        assert result.node_outcomes["ideas"]["notes"] == "agreed"

    async def test_tools_in_a_reply_stay_in_the_conversation(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A reply that used a tool: the next reply's request holds the tool call and its
        result before the person's message, and the file is in the workspace."""
        write = ToolCall("c1", "write_file", {"file_path": "ideas.md", "content": "- hike"})
        model = ScriptedModel(
            [
                model_calls(write, model="claude-sonnet-4-5", provider="anthropic"),
                says("Wrote ideas.md"),
                says("Added more"),
                says("Summary."),
            ],
            name="anthropic",
        )
        interviewer = QueueInterviewer(["add more", "/done"])
        result = await load(agent(model, tmp_path), store, tmp_path, interviewer).run()

        assert result.succeeded
        assert (tmp_path / "ws" / "ideas.md").read_text() == "- hike"
        roles = [role for role, _ in conversation(model.requests, 2)]
        assert roles == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT, Role.USER]
        assert result.context["usage.ideas.tool_calls"] == 1

    async def test_a_second_chat_starts_from_its_own_prompt(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Two chat nodes: the second one's model sees its own prompt, not the first chat's
        conversation, and each node keeps its own history."""
        source = CHAT.replace(
            'summary [prompt="Summarise this plan: {{ last_response }}", llm_model="worker"]',
            'summary [prompt="Plan the budget", agent.mode="interactive", llm_model="worker"]',
        )
        model = ScriptedModel(
            [says("Idea A"), says("Idea B"), says("Budget 1"), says("Budget 2")], name="anthropic"
        )
        interviewer = QueueInterviewer(["more", "/done", "cheaper", "/done"])
        result = await load(agent(model, tmp_path), store, tmp_path, interviewer, source).run()

        assert result.succeeded
        second = conversation(model.requests, 2)
        assert [role for role, _ in second] == [Role.USER]
        assert "Plan the budget" in second[0][1]
        assert "Idea B" not in second[0][1]
        assert "more" not in second[0][1].split()
        assert [ln["text"] for ln in result.context["interactive.summary.history"]] == [
            "Budget 1",
            "cheaper",
            "Budget 2",
        ]
        assert len(result.context["interactive.ideas.history"]) == 3


class TestResumingAChat:
    async def test_a_crash_during_a_reply_resumes_without_asking_again(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The run stops while the model answers the second message (as a crash or Ctrl-C
        would). Resumed: the transcript is shown again, the person is not asked again for
        the message already sent, and the model is asked only for the reply it owed."""
        scope = anyio.CancelScope()
        first = ScriptedModel([says("Idea A"), says("Idea B"), scope.cancel], name="anthropic")
        pipeline = load(
            agent(first, tmp_path), store, tmp_path, QueueInterviewer(["hiking?", "cheaper"])
        )
        with scope:
            await pipeline.run()
        assert pipeline.session_id is not None

        second = ScriptedModel([says("Idea C"), says("Summary.")], name="anthropic")
        events = EventRecorder()
        interviewer = QueueInterviewer(["/done"])
        resumed = await resume(
            pipeline.session_id,
            store=store,
            backend=agent(second, tmp_path),
            interviewer=interviewer,
            on_event=events,
        )

        assert resumed.succeeded, resumed.failure_reason
        assert len(second.requests) == 2
        assert conversation(second.requests, 0)[1:] == [
            (Role.ASSISTANT, "Idea A"),
            (Role.USER, "hiking?"),
            (Role.ASSISTANT, "Idea B"),
            (Role.USER, "cheaper"),
        ]
        replayed = [(e.who, e.text) for e in events.of(ChatMessage) if e.replayed]
        assert replayed[1:] == [
            ("agent", "Idea A"),
            ("human", "hiking?"),
            ("agent", "Idea B"),
            ("human", "cheaper"),
        ]
        assert reply_of(resumed) == "Idea C"

    async def test_a_crash_while_the_person_thinks_calls_no_model(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Stopped while waiting for the person: resumed, the question is asked again
        before any model call, and the reply already given is not asked for again."""
        scope = anyio.CancelScope()

        async def walk_away(question: Question) -> Answer:
            scope.cancel()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        first = ScriptedModel([says("Idea A")], name="anthropic")
        pipeline = load(agent(first, tmp_path), store, tmp_path, CallbackInterviewer(walk_away))
        with scope:
            await pipeline.run()
        assert pipeline.session_id is not None

        second = ScriptedModel([says("Summary.")], name="anthropic")
        asked: list[Question] = []

        def done(question: Question) -> Answer:
            asked.append(question)
            return Answer("/done", text="/done")

        resumed = await resume(
            pipeline.session_id,
            store=store,
            backend=agent(second, tmp_path),
            interviewer=CallbackInterviewer(done),
        )
        assert resumed.succeeded
        assert len(second.requests) == 1  # the summary's
        assert asked[0].details == "Idea A"
        assert reply_of(resumed, "summary") == "Summary."

    async def test_a_retry_continues_the_same_chat(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The model cannot be reached for a reply: the node is retried, and the retry
        carries on the conversation instead of starting it over."""
        from orchestra.llm.errors import RateLimitError
        from orchestra.testing import RecordingSleep

        model = ScriptedModel(
            [
                says("Idea A"),
                RateLimitError("slow down", provider="anthropic"),
                says("Idea B"),
                says("Summary."),
            ],
            name="anthropic",
        )
        source = CHAT.replace(
            'agent.mode="interactive",', 'agent.mode="interactive", max_retries=1,'
        )
        interviewer = QueueInterviewer(["hiking?", "/done"])
        (tmp_path / "ws").mkdir()
        client = Client({"anthropic": model}, retry=RetryPolicy(max_retries=0))
        backend = AgentBackend(CONFIG, client, workspace=tmp_path / "ws")
        pipeline = load(backend, store, tmp_path, interviewer, source)
        pipeline.sleep = RecordingSleep()
        events = EventRecorder()
        result = await pipeline.run(on_event=events)

        assert result.succeeded, result.failure_reason
        assert events.attempts("ideas") == [1, 2]
        assert conversation(model.requests, 2)[1:] == [
            (Role.ASSISTANT, "Idea A"),
            (Role.USER, "hiking?"),
        ]
        assert [ln["text"] for ln in result.context["interactive.ideas.history"]] == [
            "Idea A",
            "hiking?",
            "Idea B",
        ]


class TestOtherBackends:
    async def test_simulation_chats_without_a_model(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """On simulation each reply names its number and the message it answers."""
        result = await load(
            "simulation", store, tmp_path, QueueInterviewer(["hiking?", "/approve"])
        ).run()
        assert result.succeeded
        assert reply_of(result) == '[Simulated] Reply 2 for stage: ideas to "hiking?"'

    async def test_direct_backend_sends_the_conversation(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The direct backend: one call per reply with the opening, each reply as the model
        gave it and each message of the person."""
        model = ScriptedModel([says("Idea A"), says("Idea B"), says("Sum")], name="anthropic")
        backend = DirectBackend(CONFIG, Client({"anthropic": model}))
        result = await load(backend, store, tmp_path, QueueInterviewer(["hiking?", "/done"])).run()
        assert result.succeeded
        assert conversation(model.requests, 1)[1:] == [
            (Role.ASSISTANT, "Idea A"),
            (Role.USER, "hiking?"),
        ]
        assert reply_of(result) == "Idea B"

    async def test_a_backend_without_chat_gets_the_transcript_as_its_prompt(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A backend with only ``run`` (a CLI agent, a user's own) is asked each reply with
        one prompt holding the conversation so far."""
        backend = ScriptedBackend({"ideas": ["Idea A", "Idea B"]})
        result = await load(backend, store, tmp_path, QueueInterviewer(["hiking?", "/done"])).run()
        assert result.succeeded
        prompts = [prompt for node, prompt in backend.prompts if node == "ideas"]
        assert len(prompts) == 2
        assert "hiking?" not in prompts[0]
        assert prompts[1] == transcript_prompt(
            "Brainstorm ideas for a team offsite with me",
            [ChatLine("agent", "Idea A"), ChatLine("human", "hiking?")],
        )

    async def test_replies_keep_their_own_records(self, tmp_path: Path) -> None:
        """Each reply of a chat is a call of its own (``StageRun.key``): a recorded reply
        is returned as it was, without the backend being called."""
        recorded: dict[str, dict[str, Any]] = {}

        async def record(kind: str, entries: Any) -> None:
            recorded.setdefault(kind, {}).update(entries)

        model = ScriptedModel([says("one"), says("two")], name="anthropic")
        backend = DirectBackend(CONFIG, Client({"anthropic": model}))
        node = Node("ideas", {"prompt": "p", "llm_model": "worker", "agent.mode": "interactive"})
        stage = _stage(tmp_path, recorded, record)
        replies = []
        for call, lines in (
            (1, []),
            (2, [ChatLine("agent", "one"), ChatLine("human", "more")]),
            (1, []),
        ):
            reply = await chat_reply(
                backend, node, "p", Context(), _evolve(stage, call=call), lines
            )
            assert isinstance(reply, StageReply)
            replies.append(reply.text)
        assert replies == ["one", "two", "one"]
        assert len(model.requests) == 2
        assert sorted(recorded["direct.answer"]) == ["1.1", "1.2"]


class TestHumans:
    async def test_auto_approve_ends_the_chat_at_once(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """--auto-approve's interviewer answers a chat with /done: one reply, then the
        stage succeeds with it."""
        model = ScriptedModel([says("Idea A"), says("Summary.")], name="anthropic")
        result = await load(agent(model, tmp_path), store, tmp_path, AutoApproveInterviewer()).run()
        assert result.succeeded
        assert result.context["interactive.ideas.history"] == [{"who": "agent", "text": "Idea A"}]

    async def test_an_async_callback_drives_a_chat(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The callback gets each question as a chat question showing the agent's last
        reply, and answers it."""
        seen: list[Question] = []

        async def person(question: Question) -> Answer:
            seen.append(question)
            text = "cheaper" if len(seen) == 1 else "/done"
            return Answer(text, text=text)

        result = await load("simulation", store, tmp_path, CallbackInterviewer(person)).run()
        assert result.succeeded
        assert all(q.chat for q in seen)
        assert seen[0].details == "[Simulated] Reply 1 for stage: ideas"
        assert seen[1].details == '[Simulated] Reply 2 for stage: ideas to "cheaper"'

    async def test_messages_through_the_store(self, any_store: Store, tmp_path: Path) -> None:
        """A chat run with --wait-for-answers takes its messages from `orchestra answer`:
        the pending question is the chat's, with the agent's last reply; each answer is
        the next message; /done ends it. On both stores."""
        pipeline = load(
            "simulation", any_store, tmp_path, StoreInterviewer(any_store, interval=0.01)
        )
        pending: list[Any] = []

        async def person() -> None:
            for message in ("hiking?", "/done"):
                while True:
                    await anyio.sleep(0.01)
                    if pipeline.session_id is None:
                        continue
                    state = await load_session(any_store, pipeline.session_id)
                    waiting = pending_question(state)
                    if waiting is not None and (not pending or waiting.turn != pending[-1].turn):
                        break
                pending.append(waiting)
                await answer_question(any_store, pipeline.session_id, text=message)

        result: list[Any] = []

        async def run() -> None:
            result.append(await pipeline.run())

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(run)
                group.start_soon(person)

        assert result[0].succeeded
        assert [p.chat for p in pending] == [True, True]
        assert pending[0].details == "[Simulated] Reply 1 for stage: ideas"
        assert pending[1].turn == pending[0].turn + 2
        assert reply_of(result[0]).endswith('to "hiking?"')


def _stage(tmp_path: Path, recorded: dict[str, Any], record: Any) -> StageRun:
    async def emit(event: Any) -> None:
        return None

    async def no_branch(*args: Any) -> Any:
        raise AssertionError("no branches here")

    return StageRun(
        session_id="1",
        logs_root=tmp_path,
        stage_dir=tmp_path / "ideas",
        attempt=1,
        execution=1,
        variables={},
        emit=emit,
        interviewer=QueueInterviewer([]),
        backend=ScriptedBackend(),
        run_branch=no_branch,
        recorded=recorded,
        record=record,
    )


def _evolve(stage: StageRun, **changes: Any) -> StageRun:
    import attrs

    return attrs.evolve(stage, **changes)


@pytest.mark.parametrize("text", ["/done", "/approve"])
async def test_both_ending_commands_succeed(
    text: str, tmp_path: Path, store: EmbeddedStore
) -> None:
    result = await load("simulation", store, tmp_path, QueueInterviewer([text])).run()
    assert result.succeeded
    assert json.loads((tmp_path / "run" / "ideas" / "status.json").read_text())["outcome"] == (
        "success"
    )
