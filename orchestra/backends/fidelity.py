"""Context fidelity (spec §5.4): how much of the run so far a stage's LLM session starts with.

Pure logic, no I/O: which mode applies to a node (:func:`resolve_fidelity`), which session a
``full`` node reuses (:func:`resolve_thread`), what text starts a fresh session
(:func:`build_preamble`), and the one-hop degradation after a resume (§5.3,
:func:`degrade_after_resume`).

The preamble of each mode, within a budget estimated at ~4 characters per token:

============== ====== =============================================================
mode           tokens carries
============== ====== =============================================================
full           --     nothing: the session itself carries the conversation
truncate       200    the goal and the run id
compact        1000   bullets: each stage's outcome and note, context values
summary:low    600    prose: outcome counts, the last 5 stages, short context values
summary:medium 1500   + the last 20 stages with notes, response excerpts and files
summary:high   3000   + every stage that fits, tool calls, ``usage.*`` values
============== ====== =============================================================

When a preamble would not fit, the oldest stages go first, then the context values last in
key order; long values are cut short (``…``) and what was left out is counted. The budget
is a hard limit on the preamble's length in characters.

Context values never shown: ``graph.*`` (the goal has its own line; the rest is the
pipeline's configuration), ``internal.*`` (engine bookkeeping), and the keys the engine sets
after every stage (``outcome``, ``preferred_label``, ``current_node``, ``last_stage``,
``last_response``), which the stage list already tells better. ``usage.*`` (token counts and
cost per node) is shown only in ``summary:high``.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from attrs import field, frozen, validators

from orchestra.graph import Edge, Graph, Node

__all__ = [
    "DEFAULT_FIDELITY",
    "FIDELITY_MODES",
    "GRAPH_THREAD_ATTRIBUTE",
    "Fidelity",
    "StageSummary",
    "build_preamble",
    "degrade_after_resume",
    "resolve_fidelity",
    "resolve_thread",
]

FidelityMode = Literal["full", "truncate", "compact", "summary"]
SummaryLevel = Literal["low", "medium", "high"]

#: Spec §5.4: every mode as written in a pipeline.
FIDELITY_MODES: tuple[str, ...] = (
    "full",
    "truncate",
    "compact",
    "summary:low",
    "summary:medium",
    "summary:high",
)

#: The graph attribute naming the default thread (§5.4 step 3 leaves the name open; this is
#: the one real pipelines use).
GRAPH_THREAD_ATTRIBUTE = "context_thread_default"

_BUDGET_TOKENS: Mapping[str, int] = {
    "truncate": 200,
    "compact": 1000,
    "summary:low": 600,
    "summary:medium": 1500,
    "summary:high": 3000,
}
_CHARS_PER_TOKEN = 4


def _check_level(instance: Fidelity, attribute: Any, level: str | None) -> None:
    if instance.mode == "summary" and level not in ("low", "medium", "high"):
        raise ValueError(f"summary fidelity needs a level (low, medium or high), not {level!r}")
    if instance.mode != "summary" and level is not None:
        raise ValueError(f"{instance.mode} fidelity takes no level, got {level!r}")


@frozen
class Fidelity:
    """A fidelity mode: ``Fidelity("compact")``, ``Fidelity("summary", "high")``."""

    mode: FidelityMode = field(validator=validators.in_(("full", "truncate", "compact", "summary")))
    level: SummaryLevel | None = field(default=None, validator=_check_level)

    @classmethod
    def parse(cls, text: str) -> Fidelity:
        """The mode written as ``text`` (any case, surrounding spaces ignored).

        Raises ``ValueError`` naming the valid modes, and the closest one when there is one.
        """
        name = text.strip().lower()
        parsed = _BY_NAME.get(name)
        if parsed is not None:
            return parsed
        valid = ", ".join(FIDELITY_MODES)
        if not name:
            raise ValueError(f"empty fidelity mode; expected one of {valid}")
        if name == "summary":
            raise ValueError(
                "fidelity 'summary' needs a level: summary:low, summary:medium or summary:high"
            )
        close = difflib.get_close_matches(name, FIDELITY_MODES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown fidelity mode {text!r}: expected one of {valid}{hint}")

    @property
    def budget_tokens(self) -> int | None:
        """The preamble's budget in tokens (estimated at ~4 characters each); None for full."""
        return _BUDGET_TOKENS.get(str(self))

    def __str__(self) -> str:
        return f"{self.mode}:{self.level}" if self.level else self.mode


_BY_NAME: Mapping[str, Fidelity] = {
    "full": Fidelity("full"),
    "truncate": Fidelity("truncate"),
    "compact": Fidelity("compact"),
    "summary:low": Fidelity("summary", "low"),
    "summary:medium": Fidelity("summary", "medium"),
    "summary:high": Fidelity("summary", "high"),
}

#: Spec §5.4: the mode when neither the edge, the node nor the graph sets one.
DEFAULT_FIDELITY = _BY_NAME["compact"]


def resolve_fidelity(node: Node, incoming: Edge | None, graph: Graph) -> Fidelity:
    """The fidelity for running ``node`` entered through ``incoming`` (None: no edge, as for
    the start node or a resumed run).

    Precedence (§5.4): the edge's ``fidelity``, the node's own, the graph's
    ``default_fidelity``, then ``compact``. A value that is not a mode counts as unset (the
    ``fidelity_valid`` lint rule reports it), so the next one down applies.
    """
    candidates = (
        incoming.fidelity if incoming is not None else "",
        node.fidelity,
        graph.default_fidelity,
    )
    for text in candidates:
        parsed = _BY_NAME.get(text.strip().lower())
        if parsed is not None:
            return parsed
    return DEFAULT_FIDELITY


def resolve_thread(node: Node, incoming: Edge | None, graph: Graph, previous_node: str) -> str:
    """The thread key of a ``full``-fidelity session: nodes with the same key share one.

    Precedence (§5.4): the node's ``thread_id`` (including one from a subgraph's ``node [...]``
    defaults), the incoming edge's ``thread_id``, the graph's ``context_thread_default``, the
    class derived from the innermost enclosing subgraph's label (§2.10), then
    ``previous_node``, the id of the node run before this one.
    """
    for key in (
        node.thread_id,
        incoming.thread_id if incoming is not None else "",
        str(graph.get(GRAPH_THREAD_ATTRIBUTE, "")),
        _subgraph_class(node),
    ):
        if key.strip():
            return key.strip()
    return previous_node


def _subgraph_class(node: Node) -> str:
    # ``Node.classes`` lists the ``class`` attribute's names first, then the classes derived
    # from enclosing subgraphs, outermost first; a derived class that repeats an explicit
    # one cannot be told apart from it and is not used.
    explicit = {name.strip() for name in str(node.get("class", "")).split(",")}
    derived = [name for name in node.classes if name not in explicit]
    return derived[-1] if derived else ""


def degrade_after_resume(fidelity: Fidelity) -> Fidelity:
    """§5.3: the first node after a resume cannot reuse an in-memory session, so ``full``
    becomes ``summary:high`` for that one hop; every other mode is kept."""
    return _BY_NAME["summary:high"] if fidelity.mode == "full" else fidelity


def _strings(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(value)


@frozen
class StageSummary:
    """What a preamble tells about one completed stage."""

    node_id: str
    #: the outcome's status: ``success``, ``partial_success``, ``retry``, ``fail``, ``skipped``
    status: str
    notes: str = ""
    failure_reason: str = ""
    preferred_label: str = ""
    #: the start of the stage's response
    response: str = ""
    #: one short line per tool call, e.g. ``shell: pytest -q``
    tool_calls: tuple[str, ...] = field(default=(), converter=_strings)
    #: files the stage wrote
    files: tuple[str, ...] = field(default=(), converter=_strings)


@frozen
class _Detail:
    """How much of each thing one mode shows (lengths in characters)."""

    goal: int
    max_stages: int | None
    note: int
    response: int
    files: int
    tool_calls: int
    value: int
    usage: bool
    #: the share of the room that stages keep when both stages and context overflow
    stage_share: float = 0.6


_DETAIL: Mapping[str, _Detail] = {
    "truncate": _Detail(500, None, 0, 0, 0, 0, 0, usage=False),
    "compact": _Detail(800, None, 120, 0, 0, 0, 80, usage=False),
    "summary:low": _Detail(500, 5, 100, 0, 0, 0, 60, usage=False),
    "summary:medium": _Detail(1000, 20, 240, 200, 5, 0, 160, usage=False),
    "summary:high": _Detail(2000, None, 400, 600, 20, 10, 300, usage=True),
}

_RUN_ID_CHARS = 120
_KEY_CHARS = 80
_COUNTS_CHARS = 300
_HIDDEN_PREFIXES = ("graph.", "internal.")
_USAGE_PREFIX = "usage."
#: set by the engine after every stage; the stage list says the same
_STAGE_KEYS = frozenset(
    ("outcome", "preferred_label", "current_node", "last_stage", "last_response")
)

_STATUS_ORDER = ("success", "partial_success", "retry", "fail", "skipped")
_COUNTED = {
    "success": "succeeded",
    "partial_success": "partially succeeded",
    "retry": "asked to retry",
    "fail": "failed",
    "skipped": "skipped",
}
_DID = {**_COUNTED, "skipped": "was skipped"}


def build_preamble(
    fidelity: Fidelity,
    *,
    goal: str,
    run_id: str,
    stages: Sequence[StageSummary],
    context: Mapping[str, Any],
) -> str:
    """The text that starts a fresh session under ``fidelity``; "" for ``full``.

    ``stages`` are the completed stages, oldest first; ``context`` is the run context. The
    result depends only on the arguments, and never exceeds ``fidelity.budget_tokens`` at
    ~4 characters per token (see the module's docstring for what each mode shows).
    """
    name = str(fidelity)
    if fidelity.mode == "full":
        return ""
    budget = _BUDGET_TOKENS[name] * _CHARS_PER_TOKEN
    detail = _DETAIL[name]
    if fidelity.mode == "truncate":
        return "\n".join(_head(goal, run_id, detail, ""))
    values = _context_items(context, detail)
    if fidelity.mode == "compact":
        head = [
            "Context carried over from earlier stages of this pipeline run.",
            *_head(goal, run_id, detail, "- "),
        ]
        return _fit(
            budget,
            detail,
            head,
            stage_title="Stages run, oldest first:",
            stage_lines=[_compact_stage(stage, detail) for stage in stages],
            stage_note=lambda n: f"- ({n} earlier stages not shown)",
            context_title="Context values:",
            context_lines=[f"- {key}: {value}" for key, value in values],
            context_note=lambda n: f"- ({n} more context values not shown)",
        )
    head = ["Summary of this pipeline run so far.", *_head(goal, run_id, detail, "")]
    head.append(_counts(stages))
    return _fit(
        budget,
        detail,
        head,
        stage_title="Stages, oldest first:",
        stage_lines=[_summary_stage(stage, detail) for stage in stages],
        stage_note=lambda n: f"({n} earlier stages not shown)",
        context_title="Context values:",
        context_lines=[f"{key} = {value}" for key, value in values],
        context_note=lambda n: f"({n} more context values not shown)",
    )


def _clip(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _head(goal: str, run_id: str, detail: _Detail, bullet: str) -> list[str]:
    lines = [f"{bullet}Goal: {_clip(goal, detail.goal)}"] if goal.strip() else []
    lines.append(f"{bullet}Run ID: {_clip(run_id, _RUN_ID_CHARS)}")
    return lines


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _context_items(context: Mapping[str, Any], detail: _Detail) -> list[tuple[str, str]]:
    items = []
    for key in sorted(context):
        if key.startswith(_HIDDEN_PREFIXES) or key in _STAGE_KEYS:
            continue
        if key.startswith(_USAGE_PREFIX) and not detail.usage:
            continue
        items.append((_clip(key, _KEY_CHARS), _clip(_render_value(context[key]), detail.value)))
    return items


def _compact_stage(stage: StageSummary, detail: _Detail) -> str:
    line = f"- {_clip(stage.node_id, _KEY_CHARS)}: {_clip(stage.status, 40)}"
    if stage.preferred_label:
        line += f' (chose "{_clip(stage.preferred_label, 60)}")'
    said = stage.failure_reason or stage.notes
    if said.strip():
        line += f" - {_clip(said, detail.note)}"
    return line


def _summary_stage(stage: StageSummary, detail: _Detail) -> str:
    status = stage.status.strip().lower()
    did = _DID.get(status, f"ended with status '{_clip(stage.status, 40)}'")
    parts = [f"{_clip(stage.node_id, _KEY_CHARS)} {did}"]
    if stage.preferred_label:
        parts[0] += f' and chose "{_clip(stage.preferred_label, 60)}"'
    parts[0] += "."
    if stage.failure_reason.strip():
        parts.append(_sentence(f"Reason: {_clip(stage.failure_reason, detail.note)}"))
    if stage.notes.strip():
        parts.append(_sentence(f"Notes: {_clip(stage.notes, detail.note)}"))
    if detail.response and stage.response.strip():
        parts.append(f'Response: "{_clip(stage.response, detail.response)}"')
    if detail.files and stage.files:
        parts.append(f"Files: {_listing(stage.files, detail.files)}.")
    if detail.tool_calls and stage.tool_calls:
        parts.append(f"Tool calls: {_listing(stage.tool_calls, detail.tool_calls, '; ')}.")
    return " ".join(parts)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def _listing(items: Sequence[str], limit: int, separator: str = ", ") -> str:
    shown = separator.join(_clip(item, 80) for item in items[:limit])
    more = len(items) - limit
    return f"{shown}{separator}and {more} more" if more > 0 else shown


def _counts(stages: Sequence[StageSummary]) -> str:
    if not stages:
        return "No stages have run yet."
    counts = Counter(stage.status.strip().lower() for stage in stages)
    order = [s for s in _STATUS_ORDER if s in counts]
    order += sorted(s for s in counts if s not in _STATUS_ORDER)
    described = ", ".join(
        f"{counts[s]} {_COUNTED.get(s, f'ended {_clip(s, 40)!r}')}" for s in order
    )
    noun = "stage has" if len(stages) == 1 else "stages have"
    return _clip(f"{len(stages)} {noun} run: {described}.", _COUNTS_CHARS)


def _fit(
    budget: int,
    detail: _Detail,
    head: list[str],
    *,
    stage_title: str,
    stage_lines: list[str],
    stage_note: Callable[[int], str],
    context_title: str,
    context_lines: list[str],
    context_note: Callable[[int], str],
) -> str:
    """Head, then the newest stages and the first context values that fit in ``budget``."""
    capped = stage_lines[-detail.max_stages :] if detail.max_stages else stage_lines

    def render(n_stages: int, n_values: int) -> str:
        lines = list(head)
        if stage_lines:
            kept = capped[len(capped) - n_stages :] if n_stages else []
            omitted = len(stage_lines) - len(kept)
            lines += [stage_title, *([stage_note(omitted)] if omitted else []), *kept]
        if context_lines:
            omitted = len(context_lines) - n_values
            lines += [context_title, *context_lines[:n_values]]
            lines += [context_note(omitted)] if omitted else []
        return "\n".join(lines)

    # Every kept line costs its length plus a newline, and keeping lines only shortens the
    # "not shown" notes, so the room left by keeping none is a safe bound.
    room = budget - len(render(0, 0))
    stage_costs = [len(line) + 1 for line in reversed(capped)]
    value_costs = [len(line) + 1 for line in context_lines]
    if sum(stage_costs) + sum(value_costs) <= room:
        return render(len(capped), len(context_lines))
    stage_room = max(int(room * detail.stage_share), room - sum(value_costs))
    n_stages, used = _take(stage_costs, stage_room)
    n_values, _ = _take(value_costs, room - used)
    return render(n_stages, n_values)


def _take(costs: Sequence[int], room: int) -> tuple[int, int]:
    """How many of ``costs``, from the first, fit in ``room``, and what they use."""
    used = 0
    for count, cost in enumerate(costs):
        if used + cost > room:
            return count, used
        used += cost
    return len(costs), used
