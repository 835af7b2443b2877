"""A scriptable fake LLM server on 127.0.0.1, for end-to-end tests of ``orchestra run``.

It speaks Anthropic's Messages API (``POST /v1/messages``) and OpenAI's Responses API
(``POST /v1/responses``): whole JSON answers, or with ``"stream": true`` each API's own SSE
event sequence (``llm-sdks.md`` §2.3, §5.4 b), which the real SDKs parse. An ``orchestra
run`` in a process of its own reaches it through ``ANTHROPIC_BASE_URL=<base_url>`` or
``OPENAI_BASE_URL=<base_url>/v1``. Standard library only: it never imports a provider SDK.

The script (JSON) says what the model answers::

    {"conversations": [
        {"match": "Fix the bug",            # optional
         "steps": [{"tool_calls": [{"name": "shell", "arguments": {"command": "ls"}}]},
                   {"text": "Fixed."}]},
        {"steps": [{"text": "fallback answer"}]}
    ]}

A request belongs to the first conversation whose ``match`` occurs in the request's first
user message; failing that, to the first conversation without ``match``. Its step is the
number of model answers already in the request (Anthropic: assistant messages; OpenAI: runs
of consecutive output items, i.e. ``function_call``, ``reasoning`` and assistant messages,
in ``input``), so the same request always gets the same step, across a client's crash and
resume too. A request past the last step, or matching no conversation, gets a 500 error
that says so.

A step has any of these fields:

- ``text``: the assistant's text;
- ``tool_calls``: ``[{"name", "arguments": {...}, "id"?}]``;
- ``thinking``: ``{"text", "signature"?}``, an Anthropic thinking block; ``reasoning``:
  ``{"id"?, "summary"?: str | [str], "encrypted_content"?}``, an OpenAI reasoning item.
  Either one is answered on both APIs (a thinking block becomes a reasoning item whose
  summary is its text and whose encrypted content is its signature, and the other way
  round), so one script serves both providers;
- ``usage``: ``{"input_tokens"?: 10, "output_tokens"?: 5, "cache_read_tokens"?,
  "cache_write_tokens"?, "reasoning_tokens"?}``;
- ``error``: ``{"status", "type"?, "message"?, "retry_after"?, "times"?}``: answer this
  error (in the API's error body, with a ``retry-after`` header when given) to the first
  ``times`` requests of the step, then the normal answer; without ``times``, always;
- ``hold``: ``true``: log the request, then answer it only once released, by
  :meth:`FakeLLMServer.release` or by the release file (``<script>.release`` for a script
  read from a file) existing; it is polled every 20 ms. A release lasts.

Ids are derived from the conversation, step and call indices (``msg_fake_0_1``,
``toolu_fake_0_1_0``, ``resp_fake_0_1``, ``call_fake_0_1_0``...), so a step answers
identically every time; the model is the request's own. Every request is logged, in
memory and to the JSONL ``log`` file when given, as ``{"path", "conversation", "step",
"body"}`` (headers, and so the API key, are never logged). A request without an API key
(``authorization`` or ``x-api-key``) gets a 401.

Run as a process for tests that start ``orchestra`` in a subprocess::

    python -m orchestra.llm.fake_server --script SCRIPT.json --port-file PATH
        [--log REQUESTS.jsonl] [--port N]

It writes ``{"port", "base_url", "openai_base_url"}`` as JSON to PATH once listening (and
the same line to stdout), and serves until SIGTERM or SIGINT, then exits 0. Held requests
are dropped without an answer when the server stops.

Left out: stop reasons other than end of turn and tool use, redacted thinking, errors in
the middle of a stream, and every other route (404).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "Conversation",
    "FakeLLMServer",
    "Script",
    "ScriptError",
    "ScriptedError",
    "ScriptedReasoning",
    "ScriptedThinking",
    "ScriptedToolCall",
    "ScriptedUsage",
    "Step",
    "main",
]

ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATH = "/v1/responses"

#: how often a held request looks for its release
_HOLD_POLL_SECONDS = 0.02

#: how often the serving loop looks whether it should stop
_SHUTDOWN_POLL_SECONDS = 0.05

#: the creation time of every OpenAI response: answers are the same byte for byte
_CREATED_AT = 1_700_000_000

#: characters per text or JSON delta in a stream
_DELTA_SIZE = 16

#: the error type of a status when the script names none (Anthropic's names)
_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_OUTPUT_ITEM_TYPES = frozenset({"function_call", "custom_tool_call", "reasoning"})


class ScriptError(ValueError):
    """A script that does not follow the format; the message names the field, e.g.
    ``conversations[0].steps[1].error.status: expected an integer from 400 to 599``."""


@dataclasses.dataclass(frozen=True)
class ScriptedToolCall:
    name: str
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: the call's id; derived from its position when None
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class ScriptedThinking:
    text: str
    signature: str | None = None


@dataclasses.dataclass(frozen=True)
class ScriptedReasoning:
    id: str | None = None
    summary: tuple[str, ...] = ()
    encrypted_content: str | None = None


@dataclasses.dataclass(frozen=True)
class ScriptedUsage:
    input_tokens: int = 10
    output_tokens: int = 5
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclasses.dataclass(frozen=True)
class ScriptedError:
    status: int
    type: str = ""
    message: str = ""
    retry_after: float | None = None
    #: answered to this many requests of the step, then the normal answer; None: always
    times: int | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    text: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    thinking: ScriptedThinking | None = None
    reasoning: ScriptedReasoning | None = None
    usage: ScriptedUsage = ScriptedUsage()
    error: ScriptedError | None = None
    hold: bool = False


@dataclasses.dataclass(frozen=True)
class Conversation:
    steps: tuple[Step, ...]
    match: str | None = None


@dataclasses.dataclass(frozen=True)
class Script:
    conversations: tuple[Conversation, ...]

    @classmethod
    def parse(cls, document: object) -> Script:
        """The script a decoded JSON document describes; raises :class:`ScriptError`."""
        fields = _fields(document, "script", required=("conversations",))
        _known(fields, "script", ("conversations",))
        conversations = _list(fields["conversations"], "conversations", non_empty=True)
        return cls(
            tuple(
                _conversation(value, f"conversations[{index}]")
                for index, value in enumerate(conversations)
            )
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Script:
        """The script in the JSON file at ``path``; raises :class:`ScriptError`."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ScriptError(f"{path}: {exc}") from None
        try:
            return cls.parse(document)
        except ScriptError as exc:
            raise ScriptError(f"{path}: {exc}") from None

    def select(self, first_user_text: str) -> int | None:
        """The index of the conversation a request with this first user message is in."""
        for index, conversation in enumerate(self.conversations):
            if conversation.match is not None and conversation.match in first_user_text:
                return index
        for index, conversation in enumerate(self.conversations):
            if conversation.match is None:
                return index
        return None


# -- script parsing: every error names its field


def _fields(value: object, where: str, *, required: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScriptError(f"{where}: expected an object")
    missing = sorted(set(required) - set(value))
    if missing:
        raise ScriptError(f"{where}.{missing[0]}: required")
    return value


def _known(fields: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ScriptError(
            f"{where}.{unknown[0]}: unknown field (expected one of {', '.join(allowed)})"
        )


def _list(value: object, where: str, *, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise ScriptError(f"{where}: expected a list")
    if non_empty and not value:
        raise ScriptError(f"{where}: expected at least one entry")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ScriptError(f"{where}: expected a string")
    return value


def _optional_string(fields: Mapping[str, Any], key: str, where: str) -> str | None:
    return None if fields.get(key) is None else _string(fields[key], f"{where}.{key}")


def _count(value: object, where: str, *, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ScriptError(f"{where}: expected an integer of at least {least}")
    return value


def _conversation(value: object, where: str) -> Conversation:
    fields = _fields(value, where, required=("steps",))
    _known(fields, where, ("match", "steps"))
    steps = _list(fields["steps"], f"{where}.steps", non_empty=True)
    return Conversation(
        steps=tuple(_step(step, f"{where}.steps[{index}]") for index, step in enumerate(steps)),
        match=_optional_string(fields, "match", where),
    )


def _step(value: object, where: str) -> Step:
    fields = _fields(value, where)
    _known(fields, where, ("text", "tool_calls", "thinking", "reasoning", "usage", "error", "hold"))
    calls = _list(fields.get("tool_calls", []), f"{where}.tool_calls")
    hold = fields.get("hold", False)
    if not isinstance(hold, bool):
        raise ScriptError(f"{where}.hold: expected true or false")
    return Step(
        text=_optional_string(fields, "text", where) or "",
        tool_calls=tuple(
            _tool_call(call, f"{where}.tool_calls[{index}]") for index, call in enumerate(calls)
        ),
        thinking=None if "thinking" not in fields else _thinking(fields["thinking"], where),
        reasoning=None if "reasoning" not in fields else _reasoning(fields["reasoning"], where),
        usage=ScriptedUsage() if "usage" not in fields else _usage(fields["usage"], where),
        error=None if "error" not in fields else _error(fields["error"], f"{where}.error"),
        hold=hold,
    )


def _tool_call(value: object, where: str) -> ScriptedToolCall:
    fields = _fields(value, where, required=("name",))
    _known(fields, where, ("name", "arguments", "id"))
    arguments = fields.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ScriptError(f"{where}.arguments: expected an object")
    return ScriptedToolCall(
        name=_string(fields["name"], f"{where}.name"),
        arguments=arguments,
        id=_optional_string(fields, "id", where),
    )


def _thinking(value: object, step: str) -> ScriptedThinking:
    where = f"{step}.thinking"
    fields = _fields(value, where, required=("text",))
    _known(fields, where, ("text", "signature"))
    return ScriptedThinking(
        text=_string(fields["text"], f"{where}.text"),
        signature=_optional_string(fields, "signature", where),
    )


def _reasoning(value: object, step: str) -> ScriptedReasoning:
    where = f"{step}.reasoning"
    fields = _fields(value, where)
    _known(fields, where, ("id", "summary", "encrypted_content"))
    summary = fields.get("summary", [])
    if isinstance(summary, str):
        summary = [summary]
    parts = _list(summary, f"{where}.summary")
    return ScriptedReasoning(
        id=_optional_string(fields, "id", where),
        summary=tuple(
            _string(part, f"{where}.summary[{index}]") for index, part in enumerate(parts)
        ),
        encrypted_content=_optional_string(fields, "encrypted_content", where),
    )


def _usage(value: object, step: str) -> ScriptedUsage:
    where = f"{step}.usage"
    fields = _fields(value, where)
    names = [field.name for field in dataclasses.fields(ScriptedUsage)]
    _known(fields, where, names)
    counts = {name: _count(number, f"{where}.{name}") for name, number in fields.items()}
    return ScriptedUsage(**counts)


def _error(value: object, where: str) -> ScriptedError:
    fields = _fields(value, where, required=("status",))
    _known(fields, where, ("status", "type", "message", "retry_after", "times"))
    status = fields["status"]
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ScriptError(f"{where}.status: expected an integer from 400 to 599")
    retry_after = fields.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int | float) or retry_after < 0
    ):
        raise ScriptError(f"{where}.retry_after: expected a number of seconds")
    kind = _optional_string(fields, "type", where) or _ERROR_TYPES.get(status, "api_error")
    return ScriptedError(
        status=status,
        type=kind,
        message=_optional_string(fields, "message", where) or f"scripted {status} {kind}",
        retry_after=retry_after,
        times=None if fields.get("times") is None else _count(fields["times"], f"{where}.times"),
    )


# -- where a request is in its conversation


def _text_of(content: object) -> str:
    """The text of a message's content: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(
        block["text"]
        for block in content
        if isinstance(block, dict)
        and block.get("type") in ("text", "input_text")
        and isinstance(block.get("text"), str)
    )


def _anthropic_position(body: Mapping[str, Any]) -> tuple[str, int]:
    """The first user message's text and the number of assistant messages."""
    messages = body.get("messages")
    messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    first_user: dict[str, Any] = next((m for m in messages if m.get("role") == "user"), {})
    answers = sum(1 for m in messages if m.get("role") == "assistant")
    return _text_of(first_user.get("content")), answers


def _openai_position(body: Mapping[str, Any]) -> tuple[str, int]:
    """The first user message's text and the number of runs of consecutive output items."""
    items = body.get("input")
    if isinstance(items, str):
        return items, 0
    items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
    first_user: dict[str, Any] = next(
        (i for i in items if i.get("role") == "user" and i.get("type", "message") == "message"),
        {},
    )
    answers = 0
    in_answer = False
    for item in items:
        is_output = item.get("type") in _OUTPUT_ITEM_TYPES or (
            item.get("type", "message") == "message" and item.get("role") == "assistant"
        )
        if is_output and not in_answer:
            answers += 1
        in_answer = is_output
    return _text_of(first_user.get("content")), answers


# -- answers


@dataclasses.dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _json_reply(status: int, document: object, headers: Mapping[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(document).encode(), headers=headers or {})


def _sse_reply(events: Sequence[Mapping[str, Any]], headers: Mapping[str, str]) -> _Reply:
    body = "".join(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events)
    return _Reply(200, body.encode(), "text/event-stream", {"cache-control": "no-cache", **headers})


def _error_reply(
    api: str, status: int, kind: str, message: str, retry_after: float | None = None
) -> _Reply:
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    if api == "openai":
        document: dict[str, Any] = {
            "error": {"message": message, "type": kind, "param": None, "code": kind}
        }
    else:
        document = {"type": "error", "error": {"type": kind, "message": message}}
    return _json_reply(status, document, headers)


def _chunks(text: str) -> list[str]:
    return [text[start : start + _DELTA_SIZE] for start in range(0, len(text), _DELTA_SIZE)]


def _thinking_of(step: Step) -> ScriptedThinking | None:
    if step.thinking is not None:
        return step.thinking
    if step.reasoning is not None:
        return ScriptedThinking(
            "\n\n".join(step.reasoning.summary), step.reasoning.encrypted_content
        )
    return None


def _reasoning_of(step: Step) -> ScriptedReasoning | None:
    if step.reasoning is not None:
        return step.reasoning
    if step.thinking is not None:
        return ScriptedReasoning(None, (step.thinking.text,), step.thinking.signature)
    return None


def _anthropic_message(step: Step, prefix: str, model: object) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    thinking = _thinking_of(step)
    if thinking is not None:
        signature = thinking.signature or f"sig_fake_{prefix}"
        content.append({"type": "thinking", "thinking": thinking.text, "signature": signature})
    if step.text:
        content.append({"type": "text", "text": step.text})
    for index, call in enumerate(step.tool_calls):
        content.append(
            {
                "type": "tool_use",
                "id": call.id or f"toolu_fake_{prefix}_{index}",
                "name": call.name,
                "input": dict(call.arguments),
            }
        )
    usage: dict[str, Any] = {
        "input_tokens": step.usage.input_tokens,
        "output_tokens": step.usage.output_tokens,
    }
    if step.usage.cache_read_tokens is not None:
        usage["cache_read_input_tokens"] = step.usage.cache_read_tokens
    if step.usage.cache_write_tokens is not None:
        usage["cache_creation_input_tokens"] = step.usage.cache_write_tokens
    return {
        "id": f"msg_fake_{prefix}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if step.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def _anthropic_events(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SSE events of ``message``: message_start, each block's start, deltas and stop,
    message_delta (stop reason, output tokens), message_stop."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {**message, "content": [], "stop_reason": None, "usage": start_usage},
        }
    ]
    for index, block in enumerate(message["content"]):
        opened: dict[str, Any]
        deltas: list[dict[str, Any]]
        if block["type"] == "thinking":
            opened = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": t} for t in _chunks(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] == "text":
            opened = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in _chunks(block["text"])]
        else:
            opened = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in _chunks(json.dumps(block["input"]))
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": opened})
        events.extend(
            {"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas
        )
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return events


def _openai_response(step: Step, prefix: str, model: object) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    reasoning = _reasoning_of(step)
    if reasoning is not None:
        output.append(
            {
                "type": "reasoning",
                "id": reasoning.id or f"rs_fake_{prefix}",
                "summary": [{"type": "summary_text", "text": text} for text in reasoning.summary],
                "encrypted_content": reasoning.encrypted_content or f"enc_fake_{prefix}",
                "status": "completed",
            }
        )
    if step.text:
        output.append(
            {
                "type": "message",
                "id": f"msg_fake_{prefix}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": step.text, "annotations": []}],
            }
        )
    for index, call in enumerate(step.tool_calls):
        output.append(
            {
                "type": "function_call",
                "id": f"fc_fake_{prefix}_{index}",
                "call_id": call.id or f"call_fake_{prefix}_{index}",
                "name": call.name,
                "arguments": json.dumps(dict(call.arguments)),
                "status": "completed",
            }
        )
    usage = step.usage
    return {
        "id": f"resp_fake_{prefix}",
        "object": "response",
        "created_at": _CREATED_AT,
        "model": model,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "input_tokens_details": {
                "cached_tokens": usage.cache_read_tokens or 0,
                "cache_write_tokens": usage.cache_write_tokens or 0,
            },
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        },
    }


def _openai_events(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SSE events of ``response``: response.created and .in_progress, each output item
    added, its deltas and done, then response.completed with the whole response."""
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for index, item in enumerate(response["output"]):
        at: dict[str, Any] = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "reasoning":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "summary": [], "status": "in_progress"},
            )
            for number, part in enumerate(item["summary"]):
                empty = {"type": "summary_text", "text": ""}
                emit(
                    "response.reasoning_summary_part.added", **at, summary_index=number, part=empty
                )
                for delta in _chunks(part["text"]):
                    emit(
                        "response.reasoning_summary_text.delta",
                        **at,
                        summary_index=number,
                        delta=delta,
                    )
                emit(
                    "response.reasoning_summary_text.done",
                    **at,
                    summary_index=number,
                    text=part["text"],
                )
                emit("response.reasoning_summary_part.done", **at, summary_index=number, part=part)
        elif item["type"] == "message":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            for number, part in enumerate(item["content"]):
                at_part: dict[str, Any] = {**at, "content_index": number}
                blank = {"type": "output_text", "text": "", "annotations": []}
                emit("response.content_part.added", **at_part, part=blank)
                for delta in _chunks(part["text"]):
                    emit("response.output_text.delta", **at_part, delta=delta, logprobs=[])
                emit("response.output_text.done", **at_part, text=part["text"], logprobs=[])
                emit("response.content_part.done", **at_part, part=part)
        else:
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            for delta in _chunks(item["arguments"]):
                emit("response.function_call_arguments.delta", **at, delta=delta)
            emit(
                "response.function_call_arguments.done",
                **at,
                name=item["name"],
                arguments=item["arguments"],
            )
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=response)
    return events


# -- the server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, fake: FakeLLMServer) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        has_key = bool(self.headers.get("authorization") or self.headers.get("x-api-key"))
        reply = self.server.fake._answer(self.path, raw, has_key=has_key)
        if reply is None:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        self.send_header("content-length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def do_GET(self) -> None:
        body = b'{"error": {"type": "not_found_error", "message": "only POST is served"}}'
        self.send_response(404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeLLMServer:
    """``with FakeLLMServer(script) as server:`` serves ``script`` (a :class:`Script`, its
    JSON document, or the path of its JSON file) on 127.0.0.1 until the block ends.

    ``base_url`` is what Anthropic's SDK takes, ``openai_base_url`` (with ``/v1``) what
    OpenAI's takes. ``port`` 0 picks a free port. ``log`` is a JSONL file every request is
    appended to; ``release_file`` ends every hold once it exists (by default
    ``<script>.release`` for a script read from a file). ``requests`` and
    :meth:`wait_for_requests` show the logged requests in memory.
    """

    def __init__(
        self,
        script: Script | Mapping[str, Any] | str | os.PathLike[str],
        *,
        port: int = 0,
        log: str | os.PathLike[str] | None = None,
        release_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(script, Script):
            self.script = script
        elif isinstance(script, Mapping):
            self.script = Script.parse(dict(script))
        else:
            self.script = Script.load(script)
            if release_file is None:
                release_file = f"{os.fspath(script)}.release"
        self.release_file = Path(release_file) if release_file is not None else None
        self.log_file = Path(log) if log is not None else None
        self._port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._requests: list[dict[str, Any]] = []
        self._answered: dict[tuple[int, int], int] = {}
        self._released = threading.Event()
        self._closing = threading.Event()

    # -- lifecycle

    def start(self) -> None:
        """Listen and serve on a thread of its own."""
        if self._server is not None:
            raise RuntimeError("the fake LLM server is already running")
        self._server = _HTTPServer(self._port, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # shutdown() waits up to one poll interval
            kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
            name="fake-llm-server",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving; held requests are dropped without an answer."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeLLMServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake LLM server is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The base URL for Anthropic's SDK (``ANTHROPIC_BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The base URL for OpenAI's SDK (``OPENAI_BASE_URL``): it must end in ``/v1``."""
        return f"{self.base_url}/v1"

    # -- for tests

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request so far, as logged: ``{"path", "conversation", "step", "body"}``."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The logged requests once there are at least ``count``; raises TimeoutError when
        ``timeout`` seconds pass first. Blocking: call it from a worker thread in async
        code."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._requests)} request(s) reached the fake LLM server "
                    f"within {timeout:g}s, not {count}"
                )
            return list(self._requests)

    def release(self) -> None:
        """End every hold, now and later."""
        self._released.set()

    # -- answering (on the server's request threads)

    def _answer(self, path: str, raw: bytes, *, has_key: bool) -> _Reply | None:
        api = {ANTHROPIC_PATH: "anthropic", OPENAI_PATH: "openai"}.get(path.split("?")[0])
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if api is None:
            self._record({"path": path, "conversation": None, "step": None, "body": body})
            return _error_reply("anthropic", 404, "not_found_error", f"no route {path}")
        if not isinstance(body, dict):
            self._record({"path": path, "conversation": None, "step": None, "body": body})
            return _error_reply(api, 400, "invalid_request_error", "the body is not a JSON object")
        first_user, step_index = (
            _anthropic_position(body) if api == "anthropic" else _openai_position(body)
        )
        conversation_index = self.script.select(first_user)
        self._record(
            {"path": path, "conversation": conversation_index, "step": step_index, "body": body}
        )
        if not has_key:
            return _error_reply(api, 401, "authentication_error", "no API key was sent")
        if conversation_index is None:
            return _error_reply(
                api,
                500,
                "api_error",
                f"fake LLM script: no conversation matches the first user message "
                f"{first_user[:200]!r} and none is a fallback (without match)",
            )
        steps = self.script.conversations[conversation_index].steps
        if step_index >= len(steps):
            return _error_reply(
                api,
                500,
                "api_error",
                f"fake LLM script ran out: conversation {conversation_index} has "
                f"{len(steps)} step(s), the request asks for step {step_index} "
                f"(it carries {step_index} model answer(s))",
            )
        step = steps[step_index]
        with self._lock:
            seen = self._answered.get((conversation_index, step_index), 0)
            self._answered[(conversation_index, step_index)] = seen + 1
        if step.hold and not self._wait_for_release():
            return None
        error = step.error
        if error is not None and (error.times is None or seen < error.times):
            return _error_reply(api, error.status, error.type, error.message, error.retry_after)
        prefix = f"{conversation_index}_{step_index}"
        headers = {"request-id": f"req_fake_{prefix}", "x-request-id": f"req_fake_{prefix}"}
        model = body.get("model")
        stream = body.get("stream") is True
        if api == "anthropic":
            message = _anthropic_message(step, prefix, model)
            if stream:
                return _sse_reply(_anthropic_events(message), headers)
            return _json_reply(200, message, headers)
        response = _openai_response(step, prefix, model)
        if stream:
            return _sse_reply(_openai_events(response), headers)
        return _json_reply(200, response, headers)

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(entry)
            if self.log_file is not None:
                with self.log_file.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")
            self._lock.notify_all()

    def _wait_for_release(self) -> bool:
        """Whether the hold ended by a release (not by the server stopping)."""
        while not self._closing.is_set():
            if self._released.is_set() or (
                self.release_file is not None and self.release_file.exists()
            ):
                return True
            self._closing.wait(_HOLD_POLL_SECONDS)
        return False


# -- the process


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m orchestra.llm.fake_server``: serve the script until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m orchestra.llm.fake_server",
        description="A scripted fake LLM server (Anthropic Messages, OpenAI Responses) "
        "on 127.0.0.1, for tests.",
    )
    parser.add_argument("--script", type=Path, required=True, help="the JSON script")
    parser.add_argument(
        "--port-file", type=Path, required=True, help="where to write the port, as JSON"
    )
    parser.add_argument("--log", type=Path, help="append every request to this JSONL file")
    parser.add_argument("--port", type=int, default=0, help="the port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        script = Script.load(args.script)
    except ScriptError as exc:
        parser.error(str(exc))
    stop = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server's threads start, so they inherit the mask and the signals
    # wait for sigwait on this thread.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    server = FakeLLMServer(
        script, port=args.port, log=args.log, release_file=f"{args.script}.release"
    )
    with server:
        announcement = json.dumps(
            {
                "port": server.port,
                "base_url": server.base_url,
                "openai_base_url": server.openai_base_url,
            }
        )
        _write_atomically(args.port_file, announcement)
        print(announcement, flush=True)
        signal.sigwait(stop)


if __name__ == "__main__":
    main(sys.argv[1:])
