"""``orchestra compile``: check a pipeline and show what the engine will do with it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from orchestra.dot import parse_dot
from orchestra.errors import DotSyntaxError, PipelineFileError
from orchestra.graph import Graph, Node
from orchestra.transforms import apply_transforms
from orchestra.validation import Diagnostic, Severity, validate

EXIT_OK = 0
EXIT_INVALID = 2

_LLM_HANDLERS = ("codergen",)
_COLOURS = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "blue"}


@click.command("compile")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the diagnostics as a JSON array (with --show: one JSON object holding the "
    "resolved graph and the diagnostics) instead of text.",
)
@click.option(
    "--show",
    is_flag=True,
    help="Also print the resolved graph: each node's handler type, model and provider after "
    "the stylesheet, retries, goal gates and timeout, and each edge's routing.",
)
def compile_command(file: Path, as_json: bool, show: bool) -> None:
    """Parse, transform and validate the pipeline FILE without running it.

    Diagnostics print as `FILE:LINE: severity rule: message (fix)`, followed by a
    one-line summary. Exits 0 when there are no errors (warnings allowed) and 2 when
    the file cannot be read or parsed or has validation errors.
    """
    name = str(file)
    try:
        parsed = parse_dot(file)
    except (PipelineFileError, DotSyntaxError) as err:
        _report_unreadable(err, name, as_json, show)
        sys.exit(EXIT_INVALID)
    graph = apply_transforms(parsed)
    diagnostics = _for_this_project(validate(graph), file)
    errors = sum(d.severity is Severity.ERROR for d in diagnostics)
    if as_json:
        payload: Any = [d.to_json(name) for d in diagnostics]
        if show:
            payload = {"graph": _graph_json(parsed, graph), "diagnostics": payload}
        click.echo(json.dumps(payload, indent=2))
    else:
        if show:
            _print_graph(parsed, graph, name)
        for diagnostic in diagnostics:
            _print_diagnostic(diagnostic, name)
        click.echo(_summary(diagnostics, name))
    sys.exit(EXIT_INVALID if errors else EXIT_OK)


def _for_this_project(diagnostics: list[Diagnostic], file: Path) -> list[Diagnostic]:
    """Without the warning on parallel agents sharing a directory when the nearest
    orchestra.yaml gives them git worktrees (read only when that warning is there)."""
    from orchestra.validation.rules import SHARED_WORKSPACE_RULE

    if not any(d.rule == SHARED_WORKSPACE_RULE for d in diagnostics):
        return diagnostics
    from orchestra.config.load import find_config, load_config
    from orchestra.errors import ConfigError

    found = find_config(file.resolve().parent)
    try:
        repos = load_config(found).workspace.repos if found is not None else {}
    except ConfigError:
        return diagnostics  # `orchestra run` and `doctor` report the file's mistakes
    if not repos:
        return diagnostics
    return [d for d in diagnostics if d.rule != SHARED_WORKSPACE_RULE]


def _report_unreadable(
    err: PipelineFileError | DotSyntaxError, name: str, as_json: bool, show: bool
) -> None:
    line = getattr(err, "line", None)
    column = getattr(err, "column", None)
    rule = "syntax" if isinstance(err, DotSyntaxError) else "file"
    message = err.message if isinstance(err, DotSyntaxError) else err.problem
    if as_json:
        record = {
            "file": name,
            "line": line,
            "column": column,
            "severity": "error",
            "rule": rule,
            "message": message,
            "node_id": None,
            "edge": None,
            "fix": None,
        }
        # The same shape as for a file that parses, so a consumer reads one schema.
        payload: Any = {"graph": None, "diagnostics": [record]} if show else [record]
        click.echo(json.dumps(payload, indent=2))
        return
    severity = click.style("error", fg="red", bold=True)
    click.echo(f"{_located(name, line, column)}: {severity} {rule}: {message}")
    if isinstance(err, DotSyntaxError) and err.excerpt():
        click.echo(err.excerpt())
    click.echo(f"{name}: invalid, cannot be compiled")


def _located(name: str, line: int | None, column: int | None) -> str:
    where = name
    if line is not None:
        where += f":{line}"
        if column is not None:
            where += f":{column}"
    return where


def _print_diagnostic(diagnostic: Diagnostic, name: str) -> None:
    where = _located(name, diagnostic.line, None)
    severity = click.style(str(diagnostic.severity), fg=_COLOURS[diagnostic.severity], bold=True)
    text = f"{where}: {severity} {diagnostic.rule}: {diagnostic.message}"
    if diagnostic.fix:
        text += f" ({diagnostic.fix})"
    click.echo(text)


def _summary(diagnostics: list[Diagnostic], name: str) -> str:
    counts = {s: sum(d.severity is s for d in diagnostics) for s in Severity}
    parts = [
        f"{counts[Severity.ERROR]} error{'s' * (counts[Severity.ERROR] != 1)}",
        f"{counts[Severity.WARNING]} warning{'s' * (counts[Severity.WARNING] != 1)}",
    ]
    verdict = "invalid" if counts[Severity.ERROR] else "valid"
    return f"{name}: {verdict}, {', '.join(parts)}"


def _model_origin(before: Node | None, after: Node, key: str) -> str:
    value = str(after.attrs.get(key, ""))
    if not value:
        return ""
    if before is not None and key not in before.attrs:
        return f"{value} (stylesheet)"
    return value


def _node_row(parsed: Graph, node: Node) -> dict[str, Any]:
    before = parsed.nodes.get(node.id)
    timeout = node.timeout
    return {
        "id": node.id,
        "label": node.label,
        "handler": node.handler_type,
        "model": _model_origin(before, node, "llm_model"),
        "provider": _model_origin(before, node, "llm_provider"),
        "reasoning_effort": node.reasoning_effort,
        "max_retries": node.max_retries,
        "goal_gate": node.goal_gate,
        "retry_target": node.retry_target or None,
        "timeout": str(timeout) if timeout else None,
        "classes": list(node.classes),
        "line": node.location.line if node.location else None,
    }


def _graph_json(parsed: Graph, graph: Graph) -> dict[str, Any]:
    start, exit_node = graph.start_node, graph.exit_node
    return {
        "name": graph.name,
        "goal": graph.goal,
        "start": start.id if start else None,
        "exit": exit_node.id if exit_node else None,
        "default_max_retries": graph.default_max_retries,
        "retry_target": graph.retry_target or None,
        "nodes": [_node_row(parsed, n) for n in graph.nodes.values()],
        "edges": [
            {
                "source": e.source,
                "target": e.target,
                "label": e.label or None,
                "condition": e.condition or None,
                "weight": e.weight,
                "max_visits": e.max_visits,
                "loop_restart": e.loop_restart,
                "line": e.location.line if e.location else None,
            }
            for e in graph.edges
        ],
    }


def _print_graph(parsed: Graph, graph: Graph, name: str) -> None:
    data = _graph_json(parsed, graph)
    click.echo(click.style(f"pipeline {data['name'] or '(unnamed)'}", bold=True) + f"  ({name})")
    if data["goal"]:
        click.echo(f"  goal: {data['goal']}")
    click.echo(
        f"  start: {data['start'] or '-'}   exit: {data['exit'] or '-'}   "
        f"default retries: {data['default_max_retries']}"
    )
    headers = ["node", "handler", "model", "provider", "effort", "retries", "goal gate", "timeout"]
    # Model settings matter only where an LLM is called; retries not at start and exit.
    rows = [
        [
            n["id"],
            n["handler"],
            (n["model"] or "(default)") if n["handler"] in _LLM_HANDLERS else "-",
            (n["provider"] or "(auto)") if n["handler"] in _LLM_HANDLERS else "-",
            n["reasoning_effort"] if n["handler"] in _LLM_HANDLERS else "-",
            "-" if n["handler"] in ("start", "exit") else str(n["max_retries"]),
            f"yes -> {n['retry_target']}"
            if n["goal_gate"] and n["retry_target"]
            else "yes"
            if n["goal_gate"]
            else "",
            n["timeout"] or "",
        ]
        for n in data["nodes"]
    ]
    click.echo()
    _table(headers, rows)
    click.echo()
    click.echo(click.style("edges", bold=True))
    for edge in data["edges"]:
        details = [f"{k}={edge[k]!s}" for k in ("label", "condition") if edge[k]]
        if edge["weight"]:
            details.append(f"weight={edge['weight']}")
        if edge["max_visits"] is not None:
            details.append(f"max_visits={edge['max_visits']}")
        if edge["loop_restart"]:
            details.append("loop_restart")
        suffix = f"  [{', '.join(details)}]" if details else ""
        click.echo(f"  {edge['source']} -> {edge['target']}{suffix}")
    click.echo()


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    click.echo(
        click.style(
            "  " + "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)),
            bold=True,
        ).rstrip()
    )
    for row in rows:
        click.echo(
            ("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
        )
