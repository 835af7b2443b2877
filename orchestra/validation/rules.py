"""The built-in lint rules of spec §7.2, plus Orchestra's attribute checks.

Each rule is a ``LintRule``: a ``name`` and ``apply(graph) -> list[Diagnostic]``. A plain
function becomes one with :func:`lint_rule`.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

import attrs

from orchestra.attributes import (
    EDGE_ATTRIBUTES,
    GRAPH_ATTRIBUTES,
    GRAPHVIZ_ATTRIBUTES,
    NODE_ATTRIBUTES,
    AttrType,
)
from orchestra.conditions import parse_condition
from orchestra.config.model import BACKENDS
from orchestra.errors import ConditionSyntaxError, StylesheetSyntaxError
from orchestra.graph import SHAPE_HANDLER_TYPES, Edge, Graph, Node, SourceLocation
from orchestra.transforms.stylesheet import parse_stylesheet
from orchestra.validation.diagnostics import Diagnostic, Severity

__all__ = [
    "BUILT_IN_HANDLER_TYPES",
    "BUILT_IN_RULES",
    "SHARED_WORKSPACE_RULE",
    "LintRule",
    "branch_agents",
    "lint_rule",
]

ERROR, WARNING = Severity.ERROR, Severity.WARNING

BUILT_IN_HANDLER_TYPES = frozenset(SHAPE_HANDLER_TYPES.values())
FIDELITY_MODES = ("full", "truncate", "compact", "summary:low", "summary:medium", "summary:high")
_CHOICES: Mapping[str, tuple[str, ...]] = {
    "reasoning_effort": ("low", "medium", "high"),
    "retry_policy": ("standard", "aggressive", "linear", "patient", "none"),
    "join_policy": ("wait_all", "first_success"),
}


@runtime_checkable
class LintRule(Protocol):
    @property
    def name(self) -> str: ...

    def apply(self, graph: Graph) -> list[Diagnostic]: ...


@attrs.frozen
class _FunctionRule:
    name: str
    function: Callable[[Graph], Iterable[Diagnostic]]

    def apply(self, graph: Graph) -> list[Diagnostic]:
        return list(self.function(graph))


def lint_rule(name: str) -> Callable[[Callable[[Graph], Iterable[Diagnostic]]], LintRule]:
    """Make ``function(graph) -> Iterable[Diagnostic]`` a ``LintRule`` called ``name``."""

    def wrap(function: Callable[[Graph], Iterable[Diagnostic]]) -> LintRule:
        return _FunctionRule(name, function)

    return wrap


def _node(
    rule: str, severity: Severity, node: Node, message: str, fix: str | None = None
) -> Diagnostic:
    return Diagnostic(rule, severity, message, node_id=node.id, fix=fix, location=node.location)


def _edge(
    rule: str, severity: Severity, edge: Edge, message: str, fix: str | None = None
) -> Diagnostic:
    return Diagnostic(
        rule, severity, message, edge=(edge.source, edge.target), fix=fix, location=edge.location
    )


def _names(nodes: list[Node]) -> str:
    return ", ".join(f"'{n.id}'" for n in nodes)


@lint_rule("start_node")
def _start_node(graph: Graph) -> Iterable[Diagnostic]:
    starts = graph.start_nodes()
    if not starts:
        yield Diagnostic(
            "start_node",
            ERROR,
            "the pipeline has no start node",
            fix="add 'start [shape=Mdiamond]' and an edge from it",
        )
    elif len(starts) > 1:
        yield _node(
            "start_node",
            ERROR,
            starts[1],
            f"the pipeline has {len(starts)} start nodes ({_names(starts)}); it needs exactly one",
            fix="keep one node with shape=Mdiamond",
        )


@lint_rule("terminal_node")
def _terminal_node(graph: Graph) -> Iterable[Diagnostic]:
    exits = graph.exit_nodes()
    if not exits:
        yield Diagnostic(
            "terminal_node",
            ERROR,
            "the pipeline has no exit node",
            fix="add 'exit [shape=Msquare]' and an edge to it",
        )
    elif len(exits) > 1:
        yield _node(
            "terminal_node",
            ERROR,
            exits[1],
            f"the pipeline has {len(exits)} exit nodes ({_names(exits)}); it needs exactly one",
            fix="keep one node with shape=Msquare and route the others to it",
        )


@lint_rule("reachability")
def _reachability(graph: Graph) -> Iterable[Diagnostic]:
    start = graph.start_node
    if start is None:
        return
    seen = {start.id}
    queue = deque([start.id])
    while queue:
        for edge in graph.outgoing(queue.popleft()):
            if edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    for node in graph.nodes.values():
        if node.id not in seen:
            yield _node(
                "reachability",
                ERROR,
                node,
                f"node '{node.id}' cannot be reached from the start node '{start.id}'",
                fix=f"add an edge into '{node.id}' or remove it",
            )


@lint_rule("edge_target_exists")
def _edge_target_exists(graph: Graph) -> Iterable[Diagnostic]:
    for edge in graph.edges:
        for end in (edge.source, edge.target):
            if end not in graph.nodes:
                yield _edge(
                    "edge_target_exists",
                    ERROR,
                    edge,
                    f"edge {edge.source} -> {edge.target} refers to '{end}', which is not a node",
                )


@lint_rule("start_no_incoming")
def _start_no_incoming(graph: Graph) -> Iterable[Diagnostic]:
    start = graph.start_node
    if start is not None:
        for edge in graph.incoming(start.id):
            yield _edge(
                "start_no_incoming",
                ERROR,
                edge,
                f"the start node '{start.id}' has an incoming edge from '{edge.source}'",
                fix="route loops back to the first real stage instead of the start node",
            )


@lint_rule("exit_no_outgoing")
def _exit_no_outgoing(graph: Graph) -> Iterable[Diagnostic]:
    exit_node = graph.exit_node
    if exit_node is not None:
        for edge in graph.outgoing(exit_node.id):
            yield _edge(
                "exit_no_outgoing",
                ERROR,
                edge,
                f"the exit node '{exit_node.id}' has an outgoing edge to '{edge.target}'",
                fix="remove the edge; the pipeline ends at the exit node",
            )


@lint_rule("condition_syntax")
def _condition_syntax(graph: Graph) -> Iterable[Diagnostic]:
    for edge in graph.edges:
        if not edge.condition.strip():
            continue
        try:
            parse_condition(edge.condition)
        except ConditionSyntaxError as err:
            yield _edge(
                "condition_syntax",
                ERROR,
                edge,
                f"edge {edge.source} -> {edge.target}: condition {edge.condition!r}, "
                f"column {err.column}: {err.message}",
            )


@lint_rule("stylesheet_syntax")
def _stylesheet_syntax(graph: Graph) -> Iterable[Diagnostic]:
    if not graph.model_stylesheet.strip():
        return
    try:
        parse_stylesheet(graph.model_stylesheet)
    except StylesheetSyntaxError as err:
        yield Diagnostic(
            "stylesheet_syntax",
            ERROR,
            f"model_stylesheet line {err.line}, column {err.column}: {err.message}",
            location=_stylesheet_location(graph, err.line, err.column),
        )


_STYLESHEET_VALUE = re.compile(r'"?model_stylesheet"?\s*=\s*"')
_STRING_CONCATENATION = re.compile(r'\s*\+\s*"')
_DECODED_WIDTH = {'"': 1, "\\": 1, "n": 1, "t": 1, "\n": 0}


def _stylesheet_location(graph: Graph, line: int, column: int) -> SourceLocation | None:
    """Where in the DOT source the stylesheet's ``line``/``column`` was written.

    The stylesheet is a decoded DOT string: it may start on the key's line or a later one,
    ``\\n`` escapes add lines that the source does not have, and ``"a" + "b"`` joins pieces.
    So walk the quoted source text, decoding as the parser does, to the error's offset.
    """
    base = graph.attr_locations.get("model_stylesheet")
    source = graph.source
    if base is None or source is None:
        return base
    source_lines = source.split("\n")
    key_offset = sum(len(text) + 1 for text in source_lines[: base.line - 1]) + base.column - 1
    opening = _STYLESHEET_VALUE.match(source, key_offset)
    if opening is None:
        return base
    sheet_lines = graph.model_stylesheet.split("\n")
    target = sum(len(text) + 1 for text in sheet_lines[: line - 1]) + column - 1
    pos, decoded = opening.end(), 0
    while decoded < target and pos < len(source):
        char = source[pos]
        if char == "\\" and pos + 1 < len(source):
            decoded += _DECODED_WIDTH.get(source[pos + 1], 2)
            pos += 2
        elif char == '"':
            joined = _STRING_CONCATENATION.match(source, pos + 1)
            if joined is None:
                break
            pos = joined.end()
        else:
            decoded += 1
            pos += 1
    line_start = source.rfind("\n", 0, pos) + 1
    return SourceLocation(source.count("\n", 0, pos) + 1, pos - line_start + 1, base.file)


def type_known_rule(known: frozenset[str]) -> LintRule:
    """``type_known`` against a set of handler types (the engine passes its registry's)."""

    def check(graph: Graph) -> Iterable[Diagnostic]:
        for node in graph.nodes.values():
            if node.type and node.type not in known:
                close = difflib.get_close_matches(node.type, sorted(known), n=1)
                yield _node(
                    "type_known",
                    WARNING,
                    node,
                    f"node '{node.id}' has type '{node.type}', which no handler is registered for",
                    fix=f"did you mean '{close[0]}'?"
                    if close
                    else f"known types: {', '.join(sorted(known))}",
                )

    return _FunctionRule("type_known", check)


@lint_rule("fidelity_valid")
def _fidelity_valid(graph: Graph) -> Iterable[Diagnostic]:
    expected = f"use one of {', '.join(FIDELITY_MODES)}"
    default = graph.default_fidelity
    if default and default not in FIDELITY_MODES:
        yield Diagnostic(
            "fidelity_valid",
            WARNING,
            f"graph default_fidelity '{default}' is not a fidelity mode",
            fix=expected,
            location=graph.attr_locations.get("default_fidelity"),
        )
    for node in graph.nodes.values():
        value = str(node.attrs.get("fidelity", ""))
        if value and value not in FIDELITY_MODES:
            yield _node(
                "fidelity_valid",
                WARNING,
                node,
                f"node '{node.id}' has fidelity '{value}', not a fidelity mode",
                expected,
            )
    for edge in graph.edges:
        if edge.fidelity and edge.fidelity not in FIDELITY_MODES:
            yield _edge(
                "fidelity_valid",
                WARNING,
                edge,
                f"edge {edge.source} -> {edge.target} has fidelity '{edge.fidelity}', "
                "not a fidelity mode",
                expected,
            )


@lint_rule("backend_known")
def _backend_known(graph: Graph) -> Iterable[Diagnostic]:
    known = (*BACKENDS, "langgraph")
    for node in graph.nodes.values():
        value = str(node.attrs.get("backend", "")).strip()
        if value and value not in known:
            close = difflib.get_close_matches(value, BACKENDS, n=1)
            yield _node(
                "backend_known",
                ERROR,
                node,
                f"node '{node.id}' has backend '{value}', which is not a backend",
                (f"did you mean '{close[0]}'? " if close else "")
                + f"use one of {', '.join(BACKENDS)}",
            )


@lint_rule("retry_target_exists")
def _retry_target_exists(graph: Graph) -> Iterable[Diagnostic]:
    for key in ("retry_target", "fallback_retry_target"):
        target = str(graph.attrs.get(key, ""))
        if target and target not in graph.nodes:
            yield Diagnostic(
                "retry_target_exists",
                WARNING,
                f"graph {key} '{target}' is not a node",
                location=graph.attr_locations.get(key),
            )
        for node in graph.nodes.values():
            target = str(node.attrs.get(key, ""))
            if target and target not in graph.nodes:
                yield _node(
                    "retry_target_exists",
                    WARNING,
                    node,
                    f"node '{node.id}' has {key} '{target}', which is not a node",
                )


@lint_rule("goal_gate_has_retry")
def _goal_gate_has_retry(graph: Graph) -> Iterable[Diagnostic]:
    graph_target = graph.retry_target or graph.fallback_retry_target
    for node in graph.nodes.values():
        if node.goal_gate and not (node.retry_target or node.fallback_retry_target or graph_target):
            yield _node(
                "goal_gate_has_retry",
                WARNING,
                node,
                f"goal gate '{node.id}' has no retry_target: if it fails, the run fails",
                fix=f"add retry_target=<node> to '{node.id}' or to the graph",
            )


@lint_rule("prompt_on_llm_nodes")
def _prompt_on_llm_nodes(graph: Graph) -> Iterable[Diagnostic]:
    terminals = {n.id for n in graph.start_nodes() + graph.exit_nodes()}
    for node in graph.nodes.values():
        if node.handler_type != "codergen" or node.id in terminals:
            continue
        if not node.prompt.strip() and "label" not in node.attrs:
            yield _node(
                "prompt_on_llm_nodes",
                WARNING,
                node,
                f"LLM node '{node.id}' has no prompt or label; the model is given only its id",
                fix=f"add prompt=\"...\" to '{node.id}'",
            )


@lint_rule("agent_mode")
def _agent_mode(graph: Graph) -> Iterable[Diagnostic]:
    """``agent.mode`` is ``autonomous`` (the default) or ``interactive`` (a chat with a
    person), and a chat needs an LLM node to talk to."""
    for node in graph.nodes.values():
        mode = str(node.attrs.get("agent.mode") or "").strip()
        if not mode or mode == "autonomous":
            continue
        if mode != "interactive":
            yield _node(
                "agent_mode",
                ERROR,
                node,
                f"node '{node.id}': unknown agent.mode '{mode}'",
                fix='agent.mode is "autonomous" (the default) or "interactive" (a chat)',
            )
        elif node.handler_type != "codergen":
            yield _node(
                "agent_mode",
                ERROR,
                node,
                f"node '{node.id}': agent.mode=\"interactive\" makes a chat with an LLM "
                f"agent, and this node is a {node.handler_type} node",
                fix="put the chat on an LLM node (shape=box), or ask at a hexagon gate",
            )


@lint_rule("tool_command_quoting")
def _tool_command_quoting(graph: Graph) -> Iterable[Diagnostic]:
    """A ``tool_command`` placeholder the shell would not read as one quoted word: inside
    quotes, backticks or a heredoc, or in code run by ``eval`` or ``sh -c``. Its value could
    run as shell code, so the pipeline does not run."""
    from orchestra.shellwords import placeholder_problems

    for node in graph.nodes.values():
        command = node.attrs.get("tool_command")
        if not isinstance(command, str) or "{{" not in command:
            continue
        for problem in placeholder_problems(command):
            yield _node(
                "tool_command_quoting",
                ERROR,
                node,
                f"node '{node.id}' tool_command: {problem.message}, where a value could run "
                "as shell code",
                fix=problem.fix,
            )


#: the rule that warns of parallel agents sharing one directory; a run with
#: ``workspace.repos`` configured drops it (each branch then has its own git worktree)
SHARED_WORKSPACE_RULE = "parallel_shared_workspace"
#: backends whose stages cannot write files
_NO_WRITES = frozenset({"direct", "simulation"})


def branch_agents(graph: Graph, fan_out: Node) -> list[str]:
    """The LLM stages in a fan-out's branches (up to its fan-in) that may write files in the
    shared working directory: not on a backend that cannot write, no ``workspace=`` of
    their own."""
    found: list[str] = []
    seen = {fan_out.id}
    queue = deque(edge.target for edge in graph.outgoing(fan_out.id))
    while queue:
        current = queue.popleft()
        node = graph.nodes.get(current)
        if current in seen or node is None or node.handler_type == "parallel.fan_in":
            continue
        seen.add(current)
        backend = str(node.attrs.get("backend") or "")
        if (
            node.handler_type == "codergen"
            and backend not in _NO_WRITES
            and not str(node.attrs.get("workspace") or "").strip()
        ):
            found.append(node.id)
        queue.extend(edge.target for edge in graph.outgoing(current))
    return found


@lint_rule(SHARED_WORKSPACE_RULE)
def _parallel_shared_workspace(graph: Graph) -> Iterable[Diagnostic]:
    for node in graph.nodes.values():
        if node.handler_type != "parallel":
            continue
        agents = branch_agents(graph, node)
        if len(agents) < 2:
            continue
        yield _node(
            SHARED_WORKSPACE_RULE,
            WARNING,
            node,
            f"the parallel agents of '{node.id}' ({', '.join(agents)}) would share the "
            "working directory; without workspace.repos each branch works in a directory "
            "of its own under the run directory, and sees none of the project's files",
            fix="configure workspace.repos in orchestra.yaml to give each branch its own git "
            "worktree of the project",
        )


_ALL_SCOPES: Mapping[str, Mapping[str, AttrType]] = {
    "graph": GRAPH_ATTRIBUTES,
    "node": NODE_ATTRIBUTES,
    "edge": EDGE_ATTRIBUTES,
}


def _unknown_attribute(
    scope: str, schema: Mapping[str, AttrType], key: str
) -> tuple[str, str, str, str | None]:
    """A key this scope does not know: a typo of one it does, one that belongs elsewhere,
    or simply unknown (kept for handlers)."""
    close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.75)
    if close:
        return (
            "attribute_typo",
            key,
            f"{scope} has attribute '{key}', a likely typo",
            f"did you mean '{close[0]}'?",
        )
    for other, other_schema in _ALL_SCOPES.items():
        if other_schema is not schema and key in other_schema:
            return (
                "attribute_unknown",
                key,
                f"{scope} has attribute '{key}', which is {_article(other)} attribute and has no "
                "effect here",
                f"move '{key}' to the {other} it is meant for",
            )
    for other_schema in _ALL_SCOPES.values():
        close = difflib.get_close_matches(key, list(other_schema), n=1, cutoff=0.75)
        if close:
            return (
                "attribute_typo",
                key,
                f"{scope} has attribute '{key}', a likely typo",
                f"did you mean '{close[0]}' ({_article(_scope_of(close[0]))} attribute)?",
            )
    return (
        "attribute_unknown",
        key,
        f"{scope} has attribute '{key}', which Orchestra does not know; "
        "it is kept for handlers to read",
        None,
    )


def _article(scope: str) -> str:
    return f"an {scope}" if scope[0] in "aeiou" else f"a {scope}"


def _scope_of(key: str) -> str:
    return next(name for name, schema in _ALL_SCOPES.items() if key in schema)


def _attribute_checks(
    scope: str, schema: Mapping[str, AttrType], attributes: Mapping[str, object]
) -> Iterable[tuple[str, str, str, str | None]]:
    """(rule, key, message, fix) for each misspelt, unknown or out-of-range attribute."""
    for key, value in attributes.items():
        if key in schema:
            choices = _CHOICES.get(key)
            if choices and str(value) not in choices:
                yield (
                    "attribute_value",
                    key,
                    f"{scope} has {key}={value!s}, not one of {', '.join(choices)}",
                    None,
                )
        elif key not in GRAPHVIZ_ATTRIBUTES:
            yield _unknown_attribute(scope, schema, key)


@lint_rule("attributes")
def _attributes(graph: Graph) -> Iterable[Diagnostic]:
    """Typos and bad values are reported where they are; an unknown name once per scope."""
    places: list[tuple[str, str, Mapping[str, AttrType], Mapping[str, object], dict[str, object]]]
    places = [("graph", "graph", GRAPH_ATTRIBUTES, graph.attrs, {})]
    places += [
        (
            "node",
            f"node '{n.id}'",
            NODE_ATTRIBUTES,
            n.attrs,
            {"node_id": n.id, "location": n.location},
        )
        for n in graph.nodes.values()
    ]
    places += [
        (
            "edge",
            f"edge {e.source} -> {e.target}",
            EDGE_ATTRIBUTES,
            e.attrs,
            {"edge": (e.source, e.target), "location": e.location},
        )
        for e in graph.edges
    ]
    unknown_seen: set[tuple[str, str]] = set()
    for kind, scope, schema, attributes, where in places:
        for rule, key, message, fix in _attribute_checks(scope, schema, attributes):
            if rule == "attribute_unknown":
                if (kind, key) in unknown_seen:
                    continue
                unknown_seen.add((kind, key))
            location = where.get("location") or (
                graph.attr_locations.get(key) if kind == "graph" else None
            )
            yield Diagnostic(
                rule,
                WARNING,
                message,
                fix=fix,
                node_id=where.get("node_id"),  # type: ignore[arg-type]
                edge=where.get("edge"),  # type: ignore[arg-type]
                location=location,  # type: ignore[arg-type]
            )


BUILT_IN_RULES: tuple[LintRule, ...] = (
    _start_node,
    _terminal_node,
    _reachability,
    _edge_target_exists,
    _start_no_incoming,
    _exit_no_outgoing,
    _condition_syntax,
    _stylesheet_syntax,
    type_known_rule(BUILT_IN_HANDLER_TYPES),
    _fidelity_valid,
    _backend_known,
    _retry_target_exists,
    _goal_gate_has_retry,
    _prompt_on_llm_nodes,
    _parallel_shared_workspace,
    _agent_mode,
    _tool_command_quoting,
    _attributes,
)
