"""From DOT source to a graph ready to run: parse, transform, validate (spec §9.1)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from orchestra.dot import parse_dot
from orchestra.graph import Graph
from orchestra.transforms import TransformLike, apply_transforms
from orchestra.validation import Diagnostic, LintRule, validate

__all__ = ["prepare_pipeline"]


def prepare_pipeline(
    source: str | os.PathLike[str],
    *,
    transforms: Iterable[TransformLike] = (),
    rules: Iterable[LintRule] = (),
    handler_types: Iterable[str] | None = None,
) -> tuple[Graph, list[Diagnostic]]:
    """Parse ``source`` (a path or DOT text), apply the built-in then ``transforms``, and
    lint the result with the built-in then ``rules``. Raises only for a file that cannot be
    read or parsed; lint findings, errors included, are returned for the caller to judge."""
    graph = apply_transforms(parse_dot(source), transforms)
    return graph, validate(graph, rules, handler_types=handler_types)
