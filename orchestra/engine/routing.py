"""Choosing the next edge (spec §3.3), with Orchestra's ``max_visits`` on edges."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from orchestra.conditions import evaluate_condition
from orchestra.engine.context import Context
from orchestra.graph import Edge
from orchestra.outcome import Outcome

__all__ = ["accelerator_key", "normalize_label", "select_edge"]

_ACCELERATOR = re.compile(r"^\s*(?:\[(\w)\]\s*|(\w)\)\s+|(\w)\s+-\s+)")


def accelerator_key(label: str) -> str:
    """The shortcut key of a choice label: ``[K] Label``, ``K) Label``, ``K - Label``, else
    the first character (§4.6)."""
    match = _ACCELERATOR.match(label)
    if match:
        return next(g for g in match.groups() if g).upper()
    stripped = label.strip()
    return stripped[:1].upper()


def normalize_label(label: str) -> str:
    """Lowercase, trimmed, without an accelerator prefix: how labels are compared."""
    return _ACCELERATOR.sub("", label, count=1).strip().lower()


def _best(edges: Sequence[Edge]) -> Edge:
    return min(edges, key=lambda e: (-e.weight, e.target))


def select_edge(
    edges: Sequence[Edge],
    outcome: Outcome,
    context: Context,
    visits: Mapping[tuple[str, str], int] | None = None,
) -> Edge | None:
    """The edge to follow out of a node, by the five steps of §3.3.

    Edges that have used up their ``max_visits`` are not eligible. A FAIL outcome only
    follows an edge whose condition matches it (DESIGN §4.1): it never takes an
    unconditional edge.
    """
    visits = visits or {}
    eligible = [
        e
        for e in edges
        if e.max_visits is None or visits.get((e.source, e.target), 0) < e.max_visits
    ]
    if not eligible:
        return None
    values = context.as_mapping()
    matched = [
        e
        for e in eligible
        if e.condition.strip()
        and evaluate_condition(
            e.condition,
            outcome=outcome.status.value,
            preferred_label=outcome.preferred_label,
            context=values,
        )
    ]
    if matched:
        return _best(matched)
    unconditional = [e for e in eligible if not e.condition.strip()]
    if outcome.status.value == "fail" or not unconditional:
        return None
    if outcome.preferred_label:
        wanted = normalize_label(outcome.preferred_label)
        for edge in unconditional:
            if normalize_label(edge.label) == wanted:
                return edge
    for suggested in outcome.suggested_next_ids:
        for edge in unconditional:
            if edge.target == suggested:
                return edge
    return _best(unconditional)
