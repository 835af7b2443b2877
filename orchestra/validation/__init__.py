"""Lint a pipeline graph (spec §7): ``validate`` returns diagnostics, ``validate_or_raise``
refuses a graph with errors. Custom rules are appended to the built-in ones."""

from __future__ import annotations

from collections.abc import Iterable

from orchestra.errors import ValidationError
from orchestra.graph import Graph
from orchestra.validation.diagnostics import Diagnostic as Diagnostic
from orchestra.validation.diagnostics import Severity as Severity
from orchestra.validation.rules import BUILT_IN_HANDLER_TYPES as BUILT_IN_HANDLER_TYPES
from orchestra.validation.rules import BUILT_IN_RULES as BUILT_IN_RULES
from orchestra.validation.rules import LintRule as LintRule
from orchestra.validation.rules import lint_rule as lint_rule
from orchestra.validation.rules import type_known_rule

__all__ = [
    "BUILT_IN_HANDLER_TYPES",
    "BUILT_IN_RULES",
    "Diagnostic",
    "LintRule",
    "Severity",
    "lint_rule",
    "validate",
    "validate_or_raise",
]


def validate(
    graph: Graph,
    extra_rules: Iterable[LintRule] = (),
    *,
    handler_types: Iterable[str] | None = None,
) -> list[Diagnostic]:
    """Every diagnostic the built-in rules and ``extra_rules`` find, errors first, each
    group in source order.

    ``handler_types`` are the types ``type_known`` accepts (default: the built-in ones).
    """
    rules = list(BUILT_IN_RULES)
    if handler_types is not None:
        known = frozenset(handler_types) | BUILT_IN_HANDLER_TYPES
        rules = [type_known_rule(known) if r.name == "type_known" else r for r in rules]
    rules += list(extra_rules)
    diagnostics = [d for rule in rules for d in rule.apply(graph)]
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(diagnostics, key=lambda d: (order[d.severity], d.line or 0))


def validate_or_raise(
    graph: Graph,
    extra_rules: Iterable[LintRule] = (),
    *,
    handler_types: Iterable[str] | None = None,
) -> list[Diagnostic]:
    """``validate``, raising ``ValidationError`` if any diagnostic is an error."""
    diagnostics = validate(graph, extra_rules, handler_types=handler_types)
    if any(d.severity is Severity.ERROR for d in diagnostics):
        raise ValidationError(diagnostics, file=graph.path)
    return diagnostics
