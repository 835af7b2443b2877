"""The attributes Orchestra knows, their types, and how DOT text becomes a typed value.

The tables follow the Attractor spec's Appendix A plus the handler attributes of its §4 and
Orchestra's own extensions. The parser converts a known attribute to its type (and reports a
value of the wrong type with its line and column); an unknown attribute is kept as a string.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

import attrs

__all__ = [
    "EDGE_ATTRIBUTES",
    "GRAPHVIZ_ATTRIBUTES",
    "GRAPH_ATTRIBUTES",
    "NODE_ATTRIBUTES",
    "AttrType",
    "Duration",
    "Value",
    "convert",
]


@attrs.frozen
class Duration:
    """A span of time written as ``900s``, ``15m``, ``250ms``, ``2h`` or ``1d``."""

    seconds: float
    text: str

    def __str__(self) -> str:
        return self.text


Value = str | int | float | bool | Duration


class AttrType(enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DURATION = "duration"


S, INT, B, D = (
    AttrType.STRING,
    AttrType.INTEGER,
    AttrType.BOOLEAN,
    AttrType.DURATION,
)

GRAPH_ATTRIBUTES: Mapping[str, AttrType] = {
    "goal": S,
    "label": S,
    "model_stylesheet": S,
    "default_max_retries": INT,
    "default_max_retry": INT,
    "retry_target": S,
    "fallback_retry_target": S,
    "default_fidelity": S,
    "context_thread_default": S,
    "retry_policy": S,
    "stack.child_dotfile": S,
    "stack.child_workdir": S,
    "tool_hooks.pre": S,
    "tool_hooks.post": S,
    "tool_env_passthrough": S,
    "llm.max_tokens": INT,
}

NODE_ATTRIBUTES: Mapping[str, AttrType] = {
    "label": S,
    "shape": S,
    "type": S,
    "prompt": S,
    "max_retries": INT,
    "goal_gate": B,
    "retry_target": S,
    "fallback_retry_target": S,
    "fidelity": S,
    "thread_id": S,
    "class": S,
    "timeout": D,
    "llm_model": S,
    "llm_provider": S,
    "reasoning_effort": S,
    "auto_status": B,
    "allow_partial": B,
    "retry_policy": S,
    # handlers (spec §4)
    "tool_command": S,
    "tool_env_passthrough": S,
    "human.default_choice": S,
    "human.timeout": D,
    "human.input": S,
    "human.show": S,
    "join_policy": S,
    "error_policy": S,
    "max_parallel": INT,
    "rerun_only": S,
    "manager.poll_interval": D,
    "manager.max_cycles": INT,
    "manager.stop_condition": S,
    "manager.actions": S,
    "stack.child_dotfile": S,
    "stack.child_autostart": B,
    # Orchestra
    "agent": S,
    "agent.mode": S,
    "agent.max_turns": INT,
    "backend": S,
    "cli_agent": S,
    "workspace": S,
    "tool_hooks.pre": S,
    "tool_hooks.post": S,
    "sim_outcomes": S,
    "sim_context": S,
    "agent.tools": S,
    "agent.on_truncation": S,
    "llm.max_tokens": INT,
}

EDGE_ATTRIBUTES: Mapping[str, AttrType] = {
    "label": S,
    "condition": S,
    "weight": INT,
    "fidelity": S,
    "thread_id": S,
    "loop_restart": B,
    "max_visits": INT,
}

#: Graphviz's own layout and style attributes: kept, never reported as unknown.
GRAPHVIZ_ATTRIBUTES = frozenset(
    (
        "rankdir",
        "rank",
        "ranksep",
        "nodesep",
        "splines",
        "compound",
        "concentrate",
        "newrank",
        "ordering",
        "size",
        "ratio",
        "margin",
        "pad",
        "dpi",
        "bgcolor",
        "center",
        "fontname",
        "fontsize",
        "fontcolor",
        "fontpath",
        "labelloc",
        "labeljust",
        "color",
        "fillcolor",
        "style",
        "penwidth",
        "peripheries",
        "width",
        "height",
        "fixedsize",
        "regular",
        "sides",
        "skew",
        "distortion",
        "orientation",
        "tooltip",
        "URL",
        "href",
        "target",
        "id",
        "xlabel",
        "headlabel",
        "taillabel",
        "labelfontname",
        "labelfontsize",
        "labelfontcolor",
        "arrowhead",
        "arrowtail",
        "arrowsize",
        "dir",
        "constraint",
        "minlen",
        "headport",
        "tailport",
        "lhead",
        "ltail",
        "samehead",
        "sametail",
        "decorate",
        "group",
        "layer",
        "image",
        "imagescale",
        "nojustify",
        "comment",
        "charset",
        "layout",
        "overlap",
        "sep",
        "esep",
        "outputorder",
        "pack",
        "packmode",
        "mclimit",
        "remincross",
        "searchsize",
        "showboxes",
        "stylesheet",
        "truecolor",
        "clusterrank",
        "quantum",
    )
)

_DURATION = re.compile(r"(-?\d+)(ms|s|m|h|d)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTEGER = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")

_EXPECTED = {
    AttrType.INTEGER: "an integer such as 3",
    AttrType.FLOAT: "a number such as 0.5",
    AttrType.BOOLEAN: "true or false",
    AttrType.DURATION: "a duration such as 900s, 15m, 250ms, 2h or 1d",
}


def convert(text: str, kind: AttrType) -> Value:
    """Convert an attribute's text to ``kind``; raise ``ValueError`` saying what was expected.

    A duration without a unit is seconds (``timeout=600``), as other Attractor pipelines
    write it.
    """
    value = text.strip()
    if kind is AttrType.STRING:
        return text
    if kind is AttrType.INTEGER and _INTEGER.fullmatch(value):
        return int(value)
    if kind is AttrType.FLOAT and _FLOAT.fullmatch(value):
        return float(value)
    if kind is AttrType.BOOLEAN and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind is AttrType.DURATION:
        match = _DURATION.fullmatch(value)
        if match:
            amount, unit = int(match.group(1)), match.group(2) or "s"
            return Duration(seconds=amount * _UNIT_SECONDS[unit], text=value)
    raise ValueError(f"expected {_EXPECTED[kind]}, got {text!r}")


def to_bool(value: Value | None, default: bool = False) -> bool:
    """Truthiness of an attribute whose value may have come from an unknown key."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")
