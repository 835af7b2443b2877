"""The agent loop with a scripted model and the real tools in a temporary workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.agent.session import AgentSession, ModelTurn, ToolTurn, detect_loop
from orchestra.agent.tools import Toolset, Workspace
from orchestra.llm.client import Client
from orchestra.llm.errors import AuthenticationError
from orchestra.llm.types import (
    Message,
    Request,
    Response,
    Role,
    ToolCall,
)
from orchestra.testing import ScriptedModel, model_calls, model_says


def says(text: str) -> Response:
    return model_says(text)


def calls(*tool_calls: ToolCall) -> Response:
    return model_calls(*tool_calls)


def session(model: ScriptedModel, root: Path, **kwargs: object) -> AgentSession:
    return AgentSession(
        client=Client({"scripted": model}),
        model="m",
        system="You are a careful engineer.",
        toolset=Toolset(Workspace(root)),
        **kwargs,  # type: ignore[arg-type]
    )


def tool_messages(request: Request) -> list[Message]:
    return [m for m in request.messages if m.role is Role.TOOL]


class TestLoop:
    async def test_tool_round_trip_writes_the_file_and_answers(self, tmp_path: Path) -> None:
        """The model asks to write a file, gets the result, then answers: the file is in the
        workspace, and the second request carries the tool result."""
        model = ScriptedModel(
            [
                calls(ToolCall("c1", "write_file", {"file_path": "notes/a.txt", "content": "hi"})),
                says("written"),
            ]
        )
        result = await session(model, tmp_path).run("Write a note.")

        assert (tmp_path / "notes" / "a.txt").read_text() == "hi"
        assert (result.text, result.stopped) == ("written", "completed")
        assert (result.model_calls, result.tool_calls) == (2, 1)
        assert result.files_written == ("notes/a.txt",)
        assert result.usage.total_tokens == 30
        [results] = tool_messages(model.requests[1])
        assert results.content[0].tool_result is not None
        assert results.content[0].tool_result.tool_call_id == "c1"
        assert model.requests[0].messages[0].text == "You are a careful engineer."

    async def test_calls_of_one_response_come_back_in_one_message_in_order(
        self, tmp_path: Path
    ) -> None:
        """Two calls in one response run together; both results go back in one message,
        in call order, an error result included."""
        (tmp_path / "a.txt").write_text("alpha\n")
        model = ScriptedModel(
            [
                calls(
                    ToolCall("c1", "read_file", {"file_path": "a.txt"}),
                    ToolCall("c2", "read_file", {"file_path": "missing.txt"}),
                ),
                says("read"),
            ]
        )
        await session(model, tmp_path).run("Read them.")

        [results] = tool_messages(model.requests[1])
        parts = [p.tool_result for p in results.content if p.tool_result is not None]
        assert [(r.tool_call_id, r.is_error) for r in parts] == [("c1", False), ("c2", True)]
        assert "alpha" in parts[0].content

    async def test_unknown_tool_is_an_error_result_not_an_exception(self, tmp_path: Path) -> None:
        """A call to a tool that does not exist goes back to the model as an error."""
        model = ScriptedModel([calls(ToolCall("c1", "teleport", {})), says("sorry")])
        result = await session(model, tmp_path).run("Go.")
        [results] = tool_messages(model.requests[1])
        assert results.content[0].tool_result is not None
        assert results.content[0].tool_result.is_error
        assert "Unknown tool: teleport" in results.content[0].tool_result.content
        assert result.stopped == "completed"

    async def test_stops_at_the_limit_of_model_calls(self, tmp_path: Path) -> None:
        """A model that never stops calling tools is stopped after max_model_calls."""
        busy = [calls(ToolCall(f"c{i}", "glob", {"pattern": f"*{i}"})) for i in range(10)]
        result = await session(ScriptedModel(busy), tmp_path, max_model_calls=3).run("Go.")
        assert (result.stopped, result.model_calls, result.tool_calls) == ("turn_limit", 3, 3)

    async def test_a_repeating_pattern_gets_a_loop_warning(self, tmp_path: Path) -> None:
        """Ten identical calls in a row: the model is told it is looping."""
        same = [calls(ToolCall(f"c{i}", "glob", {"pattern": "*.py"})) for i in range(10)]
        model = ScriptedModel([*same, says("changing tack")])
        await session(model, tmp_path).run("Find files.")
        warned = [
            m for m in model.requests[-1].messages if m.role is Role.USER and "Loop" in m.text
        ]
        assert len(warned) == 1

    async def test_authentication_error_ends_the_session(self, tmp_path: Path) -> None:
        """An error retrying cannot fix reaches the caller."""
        model = ScriptedModel([AuthenticationError("bad key", provider="scripted")])
        with pytest.raises(AuthenticationError):
            await session(model, tmp_path).run("Go.")

    async def test_every_model_and_tool_call_is_reported_in_order(self, tmp_path: Path) -> None:
        """on_turn sees the model call, its tool call, then the final model call."""
        seen: list[str] = []

        def record(turn: ModelTurn | ToolTurn) -> None:
            name = turn.call.name if isinstance(turn, ToolTurn) else "model"
            seen.append(f"{turn.index}:{name}")

        model = ScriptedModel([calls(ToolCall("c1", "glob", {"pattern": "*"})), says("ok")])
        await session(model, tmp_path, on_turn=record).run("Go.")
        assert seen == ["1:model", "2:glob", "3:model"]

    async def test_recorded_history_continues_without_running_its_tools(
        self, tmp_path: Path
    ) -> None:
        """A session rebuilt from recorded turns asks the model for the next step and runs
        none of the recorded tool calls again."""
        write = ToolCall("c1", "write_file", {"file_path": "a.txt", "content": "first"})
        history = [
            Message.user("Write it."),
            calls(write).message,
            Message.tool_results([]),
        ]
        model = ScriptedModel([says("already done")])
        result = await session(model, tmp_path, history=history).run(None)
        assert result.text == "already done"
        assert not (tmp_path / "a.txt").exists()
        assert model.requests[0].messages[1:] == tuple(history)


class TestLoopDetection:
    @pytest.mark.parametrize(
        ("signatures", "looping"),
        [
            (["a"] * 10, True),
            (["a", "b"] * 5, True),
            (["a", "b", "c"] * 3 + ["a"], False),
            (["a"] * 9, False),
            ([*"abcdefghij"], False),
        ],
    )
    def test_patterns_of_one_or_two_repeating(self, signatures: list[str], looping: bool) -> None:
        """A window of ten that is one pattern of length 1 or 2 repeated is a loop."""
        assert detect_loop(signatures) is looping
