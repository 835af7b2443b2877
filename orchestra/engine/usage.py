"""What LLM stages spent, read from the context keys their backends write.

A backend that calls a model puts ``usage.NODE.FIELD`` into its outcome's context updates:
``model``, ``input_tokens``, ``output_tokens``, ``cache_read_tokens``, ``model_calls``,
``tool_calls``, ``cost_usd``. Each checkpoint holds the keys written since the one before,
so adding up every checkpoint's usage keys counts each execution once, loops and retries
of a node included; the run's total is the sum over its nodes. Stages inside parallel
branches are not checkpointed one by one: the fan-out's outcome carries their keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SUMMED_FIELDS", "add_usage", "node_usage", "total_usage", "usage_keys"]

PREFIX = "usage."
#: the fields that add up across executions (the others, ``model``, keep the latest)
SUMMED_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "model_calls",
    "tool_calls",
    "cost_usd",
)


def _split(key: str) -> tuple[str, str] | None:
    if not key.startswith(PREFIX):
        return None
    node_id, dot, field = key[len(PREFIX) :].rpartition(".")
    return (node_id, field) if dot and node_id else None


def usage_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``usage.NODE.FIELD`` keys among ``values``, as they are."""
    return {key: value for key, value in values.items() if _split(key) is not None}


def node_usage(values: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    """The ``usage.NODE.*`` fields of one node among ``values``, by field name."""
    prefix = f"{PREFIX}{node_id}."
    return {
        key[len(prefix) :]: value
        for key, value in values.items()
        if key.startswith(prefix) and "." not in key[len(prefix) :]
    }


def add_usage(totals: dict[str, dict[str, Any]], values: Mapping[str, Any]) -> None:
    """Add the usage keys among ``values`` (one checkpoint's writes) into ``totals``, a
    map from node id to its fields; ``runs`` counts the checkpoints that brought a node's
    usage (a reviewer sent back by a critic runs twice)."""
    seen: set[str] = set()
    for key, value in values.items():
        split = _split(key)
        if split is None:
            continue
        node_id, field = split
        fields = totals.setdefault(node_id, {})
        seen.add(node_id)
        if field in SUMMED_FIELDS and isinstance(value, int | float):
            fields[field] = fields.get(field, 0) + value
        else:
            fields[field] = value
    for node_id in seen:
        totals[node_id]["runs"] = totals[node_id].get("runs", 0) + 1


def total_usage(usage: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The summed fields over every node; ``cost_usd`` only when some node has a price,
    and ``cost_complete`` False when some node that called a model has none."""
    total: dict[str, Any] = {}
    complete = True
    for fields in usage.values():
        for field in SUMMED_FIELDS:
            value = fields.get(field)
            if isinstance(value, int | float):
                total[field] = total.get(field, 0) + value
        if fields.get("model_calls") and "cost_usd" not in fields:
            complete = False
    if "cost_usd" in total:
        total["cost_usd"] = round(total["cost_usd"], 6)
        total["cost_complete"] = complete
    return total
