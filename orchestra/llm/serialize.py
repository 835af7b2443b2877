"""Messages and usage as plain JSON-able data, for recording an agent's turns in the store
and reading them back on resume (msgpack carries the same shapes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestra.llm.types import (
    ContentKind,
    ContentPart,
    Message,
    Role,
    ThinkingData,
    ToolCall,
    ToolResult,
    Usage,
)

__all__ = ["message_from_data", "message_to_data", "usage_from_data", "usage_to_data"]


def _part_to_data(part: ContentPart) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": part.kind.value}
    if part.text is not None:
        data["text"] = part.text
    if part.tool_call is not None:
        call = part.tool_call
        arguments = call.arguments if isinstance(call.arguments, str) else dict(call.arguments)
        data["tool_call"] = {"id": call.id, "name": call.name, "arguments": arguments}
    if part.tool_result is not None:
        result = part.tool_result
        data["tool_result"] = {
            "tool_call_id": result.tool_call_id,
            "content": result.content,
            "is_error": result.is_error,
        }
    if part.thinking is not None:
        thinking = part.thinking
        data["thinking"] = {
            "text": thinking.text,
            "signature": thinking.signature,
            "redacted": thinking.redacted,
            "provider": thinking.provider,
        }
    return data


def _part_from_data(data: Mapping[str, Any]) -> ContentPart:
    call = data.get("tool_call")
    result = data.get("tool_result")
    thinking = data.get("thinking")
    return ContentPart(
        ContentKind(data["kind"]),
        text=data.get("text"),
        tool_call=ToolCall(call["id"], call["name"], call["arguments"]) if call else None,
        tool_result=(
            ToolResult(result["tool_call_id"], result["content"], bool(result["is_error"]))
            if result
            else None
        ),
        thinking=(
            ThinkingData(
                thinking["text"],
                thinking.get("signature"),
                bool(thinking.get("redacted")),
                str(thinking.get("provider") or ""),
            )
            if thinking
            else None
        ),
    )


def message_to_data(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {
        "role": message.role.value,
        "content": [_part_to_data(part) for part in message.content],
    }
    if message.provider_items:
        data["provider_items"] = {
            provider: [dict(item) for item in items]
            for provider, items in message.provider_items.items()
        }
    return data


def message_from_data(data: Mapping[str, Any]) -> Message:
    return Message(
        Role(data["role"]),
        tuple(_part_from_data(part) for part in data.get("content") or ()),
        {
            str(provider): tuple(items)
            for provider, items in (data.get("provider_items") or {}).items()
        },
    )


def usage_to_data(usage: Usage) -> dict[str, int]:
    """The counts that are known (None counts are left out)."""
    data = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }
    return {key: value for key, value in data.items() if value is not None}


def usage_from_data(data: Mapping[str, Any]) -> Usage:
    def count(key: str) -> int | None:
        value = data.get(key)
        return int(value) if value is not None else None

    return Usage(
        int(data.get("input_tokens") or 0),
        int(data.get("output_tokens") or 0),
        count("reasoning_tokens"),
        count("cache_read_tokens"),
        count("cache_write_tokens"),
    )
