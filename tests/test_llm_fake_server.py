"""The scripted fake LLM server, driven by Orchestra's adapters and by the raw SDKs over
real HTTP on 127.0.0.1: step selection, tool and reasoning round trips, scripted errors,
holds, streaming, and the ``python -m orchestra.llm.fake_server`` process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import anyio
import anyio.to_thread
import httpx
import openai
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestra.llm.anthropic import AnthropicAdapter
from orchestra.llm.errors import NetworkError, RateLimitError, ServerError
from orchestra.llm.fake_server import FakeLLMServer, Script, ScriptError
from orchestra.llm.openai import OpenAIAdapter
from orchestra.llm.types import Message, Request, Response, ToolDefinition, ToolResult

API_KEY = "sk-fake-server-test-7c1d"

SHELL = ToolDefinition(
    name="shell",
    description="Run a command",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}},
)

TOOL_ROUND = {
    "conversations": [
        {
            "steps": [
                {"tool_calls": [{"name": "shell", "arguments": {"command": "ls"}}]},
                {"text": "Two files."},
            ]
        }
    ]
}


def request(*messages: Message, model: str = "fake-model") -> Request:
    return Request(model=model, messages=messages, tools=(SHELL,))


def after_tool_call(first: Request, answer: Response, output: str) -> Request:
    """``first`` continued with ``answer`` and one result for each of its tool calls."""
    results = [ToolResult(call.id, output) for call in answer.tool_calls]
    return request(*first.messages, answer.message, Message.tool_results(results))


@asynccontextmanager
async def anthropic_adapter(server: FakeLLMServer) -> AsyncIterator[AnthropicAdapter]:
    adapter = AnthropicAdapter(API_KEY, base_url=server.base_url, timeout=20)
    try:
        yield adapter
    finally:
        await adapter.close()


@asynccontextmanager
async def openai_adapter(server: FakeLLMServer) -> AsyncIterator[OpenAIAdapter]:
    adapter = OpenAIAdapter(API_KEY, base_url=server.openai_base_url, timeout=20)
    try:
        yield adapter
    finally:
        await adapter.close()


class TestScript:
    def test_bad_field_is_named_with_its_path(self) -> None:
        """A script error names the field by its path in the document."""
        bad = {"conversations": [{"steps": [{"text": "a"}, {"error": {"status": 200}}]}]}
        with pytest.raises(ScriptError, match=r"conversations\[0\]\.steps\[1\]\.error\.status"):
            Script.parse(bad)

    def test_unknown_field_is_rejected(self) -> None:
        """A misspelt step field is an error, not silently ignored."""
        with pytest.raises(ScriptError, match=r"steps\[0\]\.tool_call: unknown field"):
            Script.parse({"conversations": [{"steps": [{"tool_call": []}]}]})

    def test_match_wins_over_an_earlier_fallback(self) -> None:
        """A conversation whose match occurs wins even after a fallback; otherwise the
        fallback answers."""
        script = Script.parse(
            {
                "conversations": [
                    {"steps": [{"text": "fallback"}]},
                    {"match": "deploy", "steps": [{"text": "deploying"}]},
                ]
            }
        )
        assert script.select("please deploy now") == 1
        assert script.select("something else") == 0


class TestAnthropic:
    async def test_tool_round_trip(self) -> None:
        """A scripted tool call comes back as a ToolCall with a derived id; the request
        carrying its result gets the next step's text."""
        with FakeLLMServer(TOOL_ROUND) as server:
            async with anthropic_adapter(server) as adapter:
                first = request(Message.user("List the files."))
                called = await adapter.complete(first)
                done = await adapter.complete(after_tool_call(first, called, "a.txt\nb.txt"))
            logged = server.requests
        assert [(c.id, c.name, c.arguments) for c in called.tool_calls] == [
            ("toolu_fake_0_0_0", "shell", {"command": "ls"})
        ]
        assert called.finish_reason.reason == "tool_calls"
        assert called.model == "fake-model"
        assert done.text == "Two files."
        assert done.finish_reason.reason == "stop"
        assert [(entry["path"], entry["conversation"], entry["step"]) for entry in logged] == [
            ("/v1/messages", 0, 0),
            ("/v1/messages", 0, 1),
        ]
        tool_result = logged[1]["body"]["messages"][2]["content"][0]
        assert tool_result["tool_use_id"] == "toolu_fake_0_0_0"

    async def test_thinking_signature_round_trip(self) -> None:
        """A scripted thinking block keeps its signature, and the adapter sends it back
        verbatim on the next request."""
        script = {
            "conversations": [
                {
                    "steps": [
                        {
                            "thinking": {"text": "Look first.", "signature": "sig-42"},
                            "tool_calls": [{"name": "shell", "arguments": {"command": "ls"}}],
                        },
                        {"text": "Done."},
                    ]
                }
            ]
        }
        with FakeLLMServer(script) as server:
            async with anthropic_adapter(server) as adapter:
                first = request(Message.user("Look around."))
                called = await adapter.complete(first)
                done = await adapter.complete(after_tool_call(first, called, "a.txt"))
            second_body = server.requests[1]["body"]
        thinking = called.message.content[0].thinking
        assert thinking is not None
        assert (thinking.text, thinking.signature) == ("Look first.", "sig-42")
        assert second_body["messages"][1]["content"][0] == {
            "type": "thinking",
            "thinking": "Look first.",
            "signature": "sig-42",
        }
        assert done.text == "Done."

    async def test_scripted_429_is_a_rate_limit_error_with_retry_after(self) -> None:
        """An error with ``times: 1`` answers once, as RateLimitError with the scripted
        retry-after; the same request then gets the normal answer."""
        script = {
            "conversations": [
                {
                    "steps": [
                        {
                            "text": "Finally.",
                            "error": {"status": 429, "retry_after": 2, "times": 1},
                        }
                    ]
                }
            ]
        }
        with FakeLLMServer(script) as server:
            async with anthropic_adapter(server) as adapter:
                with pytest.raises(RateLimitError) as caught:
                    await adapter.complete(request(Message.user("Hi")))
                answered = await adapter.complete(request(Message.user("Hi")))
        assert caught.value.retry_after == 2.0
        assert caught.value.status_code == 429
        assert answered.text == "Finally."

    async def test_stream_with_the_sdk(self) -> None:
        """``messages.stream`` of the real SDK assembles thinking with its signature,
        text, a tool call's input, the stop reason and the usage."""
        script = {
            "conversations": [
                {
                    "steps": [
                        {
                            "thinking": {"text": "The user wants the weather.", "signature": "s1"},
                            "text": "Checking the weather in Paris for you now.",
                            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
                            "usage": {"input_tokens": 25, "output_tokens": 30},
                        }
                    ]
                }
            ]
        }
        with FakeLLMServer(script) as server:
            client = anthropic.AsyncAnthropic(
                api_key=API_KEY, base_url=server.base_url, max_retries=0
            )
            async with client.messages.stream(
                model="claude-fake",
                max_tokens=1024,
                messages=[{"role": "user", "content": "Weather?"}],
            ) as stream:
                kinds = {event.type async for event in stream}
                final = await stream.get_final_message()
            await client.close()
        assert {"text", "thinking", "signature", "input_json"} <= kinds
        thinking, text, tool_use = final.content
        assert thinking.type == "thinking"
        assert (thinking.thinking, thinking.signature) == ("The user wants the weather.", "s1")
        assert text.type == "text"
        assert text.text == "Checking the weather in Paris for you now."
        assert tool_use.type == "tool_use"
        assert (tool_use.id, tool_use.input) == ("toolu_fake_0_0_0", {"city": "Paris"})
        assert final.stop_reason == "tool_use"
        assert final.model == "claude-fake"
        assert (final.usage.input_tokens, final.usage.output_tokens) == (25, 30)


class TestOpenAI:
    async def test_tool_round_trip(self) -> None:
        """A scripted function call comes back with a derived call id; the request with its
        output gets the next step's text."""
        with FakeLLMServer(TOOL_ROUND) as server:
            async with openai_adapter(server) as adapter:
                first = request(Message.user("List the files."))
                called = await adapter.complete(first)
                done = await adapter.complete(after_tool_call(first, called, "a.txt\nb.txt"))
            logged = server.requests
        assert [(c.id, c.name, c.arguments) for c in called.tool_calls] == [
            ("call_fake_0_0_0", "shell", {"command": "ls"})
        ]
        assert called.finish_reason.reason == "tool_calls"
        assert called.id == "resp_fake_0_0"
        assert done.text == "Two files."
        assert done.finish_reason.reason == "stop"
        assert [(entry["path"], entry["step"]) for entry in logged] == [
            ("/v1/responses", 0),
            ("/v1/responses", 1),
        ]

    async def test_reasoning_item_round_trip(self) -> None:
        """A scripted reasoning item comes back as thinking, and the adapter echoes the item
        with its encrypted content on the next request, which counts as one answer."""
        script = {
            "conversations": [
                {
                    "steps": [
                        {
                            "reasoning": {"summary": "Check the files.", "encrypted_content": "e1"},
                            "tool_calls": [{"name": "shell", "arguments": {"command": "ls"}}],
                        },
                        {"text": "Done."},
                    ]
                }
            ]
        }
        with FakeLLMServer(script) as server:
            async with openai_adapter(server) as adapter:
                first = request(Message.user("Look around."))
                called = await adapter.complete(first)
                done = await adapter.complete(after_tool_call(first, called, "a.txt"))
            second = server.requests[1]
        assert called.reasoning == "Check the files."
        echoed = second["body"]["input"][1]
        assert echoed["type"] == "reasoning"
        assert (echoed["id"], echoed["encrypted_content"]) == ("rs_fake_0_0", "e1")
        assert second["step"] == 1
        assert done.text == "Done."

    async def test_scripted_429_is_a_rate_limit_error_with_retry_after(self) -> None:
        """A scripted 429 reaches the OpenAI adapter as RateLimitError with retry_after."""
        script = {
            "conversations": [
                {"steps": [{"text": "ok", "error": {"status": 429, "retry_after": 1.5}}]}
            ]
        }
        with FakeLLMServer(script) as server:
            async with openai_adapter(server) as adapter:
                for _ in range(2):
                    with pytest.raises(RateLimitError) as caught:
                        await adapter.complete(request(Message.user("Hi")))
                    assert caught.value.retry_after == 1.5

    async def test_stream_with_the_sdk(self) -> None:
        """``responses.stream`` of the real SDK assembles the reasoning item, the text and
        the function call's arguments into the final response."""
        script = {
            "conversations": [
                {
                    "steps": [
                        {
                            "thinking": {"text": "The user wants the weather.", "signature": "s1"},
                            "text": "Checking the weather in Paris for you now.",
                            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
                        }
                    ]
                }
            ]
        }
        with FakeLLMServer(script) as server:
            client = openai.AsyncOpenAI(
                api_key=API_KEY, base_url=server.openai_base_url, max_retries=0
            )
            async with client.responses.stream(model="gpt-fake", input="Weather?") as stream:
                kinds = {event.type async for event in stream}
                final = await stream.get_final_response()
            await client.close()
        assert {
            "response.output_text.delta",
            "response.function_call_arguments.delta",
            "response.reasoning_summary_text.delta",
            "response.completed",
        } <= kinds
        reasoning, message, call = final.output
        assert reasoning.type == "reasoning"
        assert [part.text for part in reasoning.summary] == ["The user wants the weather."]
        assert reasoning.encrypted_content == "s1"
        assert message.type == "message"
        assert final.output_text == "Checking the weather in Paris for you now."
        assert call.type == "function_call"
        assert (call.call_id, json.loads(call.arguments)) == ("call_fake_0_0_0", {"city": "Paris"})
        assert final.model == "gpt-fake"


class TestStepSelection:
    async def test_same_request_gets_the_same_step(self) -> None:
        """The step follows the conversation's position, not the request count: a request
        sent again (say after a crash) gets the same answer and the same ids."""
        with FakeLLMServer(TOOL_ROUND) as server:
            async with anthropic_adapter(server) as adapter:
                first = request(Message.user("List the files."))
                once = await adapter.complete(first)
                again = await adapter.complete(first)
            steps = [entry["step"] for entry in server.requests]
        assert once == again
        assert steps == [0, 0]

    async def test_openai_counts_runs_of_output_items(self) -> None:
        """In an OpenAI input, consecutive output items are one answer: reasoning plus a
        function call, then an assistant message, make two."""
        script = {"conversations": [{"steps": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}]}
        body = {
            "model": "gpt-fake",
            "input": [
                {"type": "message", "role": "user", "content": "Start"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
                {"type": "message", "role": "assistant", "content": "So far so good."},
                {"type": "message", "role": "user", "content": "Go on"},
            ],
        }
        with FakeLLMServer(script) as server:
            async with httpx.AsyncClient(headers={"authorization": "Bearer k"}) as http:
                answer = await http.post(f"{server.openai_base_url}/responses", json=body)
        assert answer.json()["output"][0]["content"][0]["text"] == "c"

    async def test_conversation_is_chosen_by_the_first_user_message(self) -> None:
        """The conversation whose match occurs in the first user message answers."""
        script = {
            "conversations": [
                {"steps": [{"text": "fallback"}]},
                {"match": "release notes", "steps": [{"text": "Notes written."}]},
            ]
        }
        with FakeLLMServer(script) as server:
            async with openai_adapter(server) as adapter:
                matched = await adapter.complete(request(Message.user("Write release notes.")))
                other = await adapter.complete(request(Message.user("Something else.")))
        assert (matched.text, other.text) == ("Notes written.", "fallback")

    async def test_running_out_of_steps_is_a_clear_server_error(self) -> None:
        """A request past the last step gets a 500 saying the script ran out."""
        script = {"conversations": [{"steps": [{"text": "only one"}]}]}
        with FakeLLMServer(script) as server:
            async with anthropic_adapter(server) as adapter:
                first = request(Message.user("Hi"))
                answered = await adapter.complete(first)
                follow_up = request(*first.messages, answered.message, Message.user("More?"))
                with pytest.raises(ServerError, match="script ran out"):
                    await adapter.complete(follow_up)

    async def test_request_without_api_key_is_refused_and_logged(self) -> None:
        """A request without an API key gets a 401; it is still logged."""
        with FakeLLMServer(TOOL_ROUND) as server:
            async with httpx.AsyncClient() as http:
                answer = await http.post(
                    f"{server.base_url}/v1/messages",
                    json={"model": "m", "max_tokens": 5, "messages": []},
                )
            logged = server.requests
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "authentication_error"
        assert len(logged) == 1


class TestHold:
    async def test_held_request_is_logged_then_answered_on_release(self) -> None:
        """A held step logs its request at once and answers only after ``release``."""
        script = {"conversations": [{"steps": [{"text": "Released.", "hold": True}]}]}
        answers: list[Response] = []
        with FakeLLMServer(script) as server:
            async with anthropic_adapter(server) as adapter, anyio.create_task_group() as tg:

                async def ask() -> None:
                    answers.append(await adapter.complete(request(Message.user("Wait."))))

                tg.start_soon(ask)
                await anyio.to_thread.run_sync(server.wait_for_requests, 1)
                assert answers == []
                server.release()
        assert [answer.text for answer in answers] == ["Released."]

    async def test_release_file_next_to_the_script_ends_the_hold(self, tmp_path: Path) -> None:
        """For a script read from a file, ``<script>.release`` appearing ends the hold."""
        script_file = tmp_path / "script.json"
        script_file.write_text(
            json.dumps({"conversations": [{"steps": [{"text": "Go.", "hold": True}]}]})
        )
        answers: list[Response] = []
        with FakeLLMServer(script_file) as server:
            async with openai_adapter(server) as adapter, anyio.create_task_group() as tg:

                async def ask() -> None:
                    answers.append(await adapter.complete(request(Message.user("Wait."))))

                tg.start_soon(ask)
                await anyio.to_thread.run_sync(server.wait_for_requests, 1)
                assert answers == []
                (tmp_path / "script.json.release").touch()
        assert [answer.text for answer in answers] == ["Go."]

    async def test_stopping_the_server_drops_held_requests(self) -> None:
        """A request still held when the server stops gets no answer: the connection
        closes, and stopping does not wait for a release."""
        script = {"conversations": [{"steps": [{"text": "Never.", "hold": True}]}]}
        server = FakeLLMServer(script)
        server.start()
        failures: list[Exception] = []
        async with anthropic_adapter(server) as adapter, anyio.create_task_group() as tg:

            async def ask() -> None:
                try:
                    await adapter.complete(request(Message.user("Wait.")))
                except NetworkError as exc:
                    failures.append(exc)

            tg.start_soon(ask)
            await anyio.to_thread.run_sync(server.wait_for_requests, 1)
            with anyio.fail_after(5):
                await anyio.to_thread.run_sync(server.close)
        assert len(failures) == 1


@asynccontextmanager
async def fake_process(*arguments: str | Path) -> AsyncIterator[dict[str, Any]]:
    """``python -m orchestra.llm.fake_server`` until the block ends, then SIGTERM; yields
    what it announces on stdout once listening."""
    command = [sys.executable, "-m", "orchestra.llm.fake_server", *map(str, arguments)]
    async with await anyio.open_process(command) as process:
        assert process.stdout is not None
        with anyio.fail_after(20):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 4096)
        yield json.loads(line)
        process.terminate()
        with anyio.fail_after(20):
            assert await process.wait() == 0


async def log_lines(log: Path, count: int) -> list[dict[str, Any]]:
    """The log's entries once it has ``count`` of them (polled, for at most 10 s)."""
    with anyio.fail_after(10):
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
            await anyio.sleep(0.02)


class TestProcess:
    async def test_process_serves_logs_and_stops_on_sigterm(self, tmp_path: Path) -> None:
        """The process writes its port file, answers from the script, logs each request
        (never the key) and exits 0 on SIGTERM."""
        script_file = tmp_path / "script.json"
        script_file.write_text(json.dumps(TOOL_ROUND))
        port_file, log = tmp_path / "port.json", tmp_path / "requests.jsonl"
        arguments = ("--script", script_file, "--port-file", port_file, "--log", log)
        async with fake_process(*arguments) as announced:
            ports = json.loads(port_file.read_text())
            assert ports == announced
            assert ports["base_url"] == f"http://127.0.0.1:{ports['port']}"
            assert ports["openai_base_url"] == f"{ports['base_url']}/v1"
            adapter = AnthropicAdapter(API_KEY, base_url=ports["base_url"], timeout=20)
            try:
                called = await adapter.complete(request(Message.user("List the files.")))
            finally:
                await adapter.close()
        assert called.tool_calls[0].id == "toolu_fake_0_0_0"
        (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
        assert (entry["path"], entry["conversation"], entry["step"]) == ("/v1/messages", 0, 0)
        assert entry["body"]["model"] == "fake-model"
        assert API_KEY not in log.read_text()

    async def test_hold_ends_when_the_release_file_appears(self, tmp_path: Path) -> None:
        """A held request is in the log before it is answered; touching
        ``<script>.release`` lets the answer through."""
        script_file = tmp_path / "script.json"
        script_file.write_text(
            json.dumps({"conversations": [{"steps": [{"text": "Go.", "hold": True}]}]})
        )
        log = tmp_path / "requests.jsonl"
        arguments = ("--script", script_file, "--port-file", tmp_path / "port", "--log", log)
        answers: list[Response] = []
        async with fake_process(*arguments) as ports:
            adapter = OpenAIAdapter(API_KEY, base_url=ports["openai_base_url"], timeout=20)
            try:
                async with anyio.create_task_group() as tg:

                    async def ask() -> None:
                        answers.append(await adapter.complete(request(Message.user("Wait."))))

                    tg.start_soon(ask)
                    (entry,) = await log_lines(log, 1)
                    assert entry["step"] == 0
                    assert answers == []
                    (tmp_path / "script.json.release").touch()
            finally:
                await adapter.close()
        assert [answer.text for answer in answers] == ["Go."]

    def test_bad_script_is_reported_by_field(self, tmp_path: Path) -> None:
        """A script that does not follow the format stops the process with the field's
        path in the message."""
        script_file = tmp_path / "script.json"
        script_file.write_text(json.dumps({"conversations": []}))
        command = [
            sys.executable,
            "-m",
            "orchestra.llm.fake_server",
            "--script",
            str(script_file),
            "--port-file",
            str(tmp_path / "port"),
        ]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert finished.returncode == 2
        assert "conversations: expected at least one entry" in finished.stderr
