"""``parse_dot``: DOT text or a file -> :class:`~orchestra.graph.Graph`.

The path a file takes: read it (a missing, unreadable, empty or binary file is a
``PipelineFileError``), check the Attractor subset over its tokens (``subset.py``, which
reports any problem at its line and column), let pydot build the graph from the normalised
text, then flatten pydot's statements in source order into ``Graph``: default blocks apply to
the nodes and edges that follow them in their scope, subgraphs are flattened, and subgraph
labels become node classes (§2.10).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from orchestra.attributes import (
    EDGE_ATTRIBUTES,
    GRAPH_ATTRIBUTES,
    NODE_ATTRIBUTES,
    AttrType,
    Value,
    convert,
)
from orchestra.dot.lexer import SourceText
from orchestra.dot.subset import CheckedSource, check_subset, unescape
from orchestra.errors import DotSyntaxError, PipelineFileError
from orchestra.graph import Edge, Graph, Node, SourceLocation

__all__ = ["parse_dot", "read_pipeline_text"]

# pydot's parser is module-global pyparsing state and not thread-safe.
_PYDOT_LOCK = threading.Lock()
_DEFAULT_KINDS = ("graph", "node", "edge")


def read_pipeline_text(path: str | os.PathLike[str]) -> str:
    """The text of a DOT file, or a ``PipelineFileError`` that says what is wrong with it."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise PipelineFileError(name, "no such file") from None
    except IsADirectoryError:
        raise PipelineFileError(name, "is a directory, not a DOT file") from None
    except OSError as err:
        raise PipelineFileError(name, f"cannot be read: {err.strerror or err}") from None
    except ValueError:
        # the OS cannot take a name with a NUL in it; pathlib says so with a ValueError
        raise PipelineFileError(name, "is not a valid path: it contains a NUL character") from None
    if b"\x00" in data:
        raise PipelineFileError(name, "is a binary file, not DOT text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise PipelineFileError(
            name, f"line {line}: is not UTF-8 text (byte 0x{data[err.start]:02x})"
        ) from None
    if not text.strip():
        raise PipelineFileError(name, "is empty: expected 'digraph name { ... }'")
    return text


def _looks_like_path(value: str) -> bool:
    return "\n" not in value and "{" not in value and value.strip() != ""


def parse_dot(source: str | os.PathLike[str], *, file: str | None = None) -> Graph:
    """Parse a pipeline from a path or from DOT text.

    A ``str`` without a newline or ``{`` is taken as a path. ``file`` names DOT text in
    error messages. Raises ``PipelineFileError`` for a file that cannot be read and
    ``DotSyntaxError`` (with file, line and column) for text outside the Attractor subset.
    """
    if isinstance(source, os.PathLike) or _looks_like_path(source):
        path: str | None = os.fspath(source)
        text = read_pipeline_text(source)
        file = path
    else:
        path = None
        text = str(source)
    src = SourceText(text, file)
    checked = check_subset(src)
    dot = _pydot_parse(checked, src)
    return _GraphBuilder(src, checked, path).build(dot)


def _pydot_parse(checked: CheckedSource, src: SourceText) -> Any:
    import pydot.dot_parser
    import pyparsing

    try:
        with _PYDOT_LOCK, _memoised(checked.subgraph_nesting >= 2):
            graphs = pydot.dot_parser.GraphParser.parser.parse_string(
                checked.normalised, parse_all=True
            )
    except pyparsing.ParseBaseException as err:
        # The subset check accepts only what pydot reads, so this is a gap between the two;
        # map pydot's position back to the source and report it like any other error.
        index = max(bisect.bisect_right(checked.normalised_offsets, err.loc) - 1, 0)
        offset = checked.source_offsets[index] if checked.source_offsets else 0
        raise src.error(offset, f"cannot parse: {err.msg}") from None
    except RecursionError:
        raise DotSyntaxError("pipeline is nested too deeply to parse", file=src.file) from None
    return graphs[0]


@contextlib.contextmanager
def _memoised(wanted: bool) -> Iterator[None]:
    """pyparsing's packrat memo, on for the duration if ``wanted`` and not already on.

    pydot's grammar reads every subgraph statement first as an edge endpoint and, when no
    '->' follows, again as a subgraph, so each level of nesting doubles the work: twenty
    nested subgraphs would take about an hour. The memo makes it linear, but it also makes flat
    pipelines (nearly all of them) about twice as slow, so only nested ones use it.
    """
    import pyparsing

    element = pyparsing.ParserElement
    switch = wanted and not element._packratEnabled and not element._left_recursion_enabled
    if switch:
        element.enable_packrat(None)
    try:
        yield
    finally:
        if switch:
            element.disable_memoization()


def _unquote(raw: str | None) -> str:
    if raw is None:
        return "true"
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        return unescape(raw)
    return raw


def _typed(attributes: Mapping[str, Any], schema: Mapping[str, AttrType]) -> dict[str, Value]:
    typed: dict[str, Value] = {}
    for raw_key, raw_value in attributes.items():
        key = _unquote(raw_key)
        value = _unquote(raw_value)
        kind = schema.get(key)
        # Values of known attributes were checked by the subset pass.
        typed[key] = convert(value, kind) if kind is not None else value
    return typed


_CLASS_STRIP = re.compile(r"[^a-z0-9-]")


def derive_class(label: str) -> str:
    """§2.10: lowercase, spaces to hyphens, drop everything but letters, digits, hyphens."""
    return _CLASS_STRIP.sub("", label.strip().lower().replace(" ", "-"))


class _Scope:
    def __init__(
        self,
        node_defaults: dict[str, Value],
        edge_defaults: dict[str, Value],
        classes: tuple[str, ...],
    ) -> None:
        self.node_defaults = node_defaults
        self.edge_defaults = edge_defaults
        self.classes = classes

    def child(self, classes: tuple[str, ...]) -> _Scope:
        return _Scope(dict(self.node_defaults), dict(self.edge_defaults), classes)


class _GraphBuilder:
    def __init__(self, src: SourceText, checked: CheckedSource, path: str | None) -> None:
        self.src = src
        self.checked = checked
        self.path = path
        self.graph_attrs: dict[str, Value] = {}
        self.node_attrs: dict[str, dict[str, Value]] = {}
        self.node_classes: dict[str, list[str]] = {}
        self.edges: list[tuple[str, str, dict[str, Value]]] = []

    def location(self, offset: int) -> SourceLocation:
        line, column = self.src.position(offset)
        return SourceLocation(line=line, column=column, file=self.src.file)

    def build(self, dot: Any) -> Graph:
        self.walk(dot.obj_dict, _Scope({}, {}, ()), top=True)
        nodes: dict[str, Node] = {}
        for node_id, node_attrs in self.node_attrs.items():
            explicit = [c.strip() for c in str(node_attrs.get("class", "")).split(",")]
            classes = [c for c in explicit if c] + self.node_classes[node_id]
            offset = self.checked.node_offsets.get(node_id)
            nodes[node_id] = Node(
                id=node_id,
                attrs=node_attrs,
                classes=tuple(dict.fromkeys(classes)),
                location=self.location(offset) if offset is not None else None,
            )
        positions: dict[tuple[str, str], list[int]] = {}
        for source, target, offset in reversed(self.checked.edge_offsets):
            positions.setdefault((source, target), []).append(offset)
        edges = []
        for source, target, edge_attrs in self.edges:
            pending = positions.get((source, target))
            location = self.location(pending.pop()) if pending else None
            edges.append(Edge(source, target, edge_attrs, location=location))
        return Graph(
            name=_unquote(dot.obj_dict.get("name") or ""),
            attrs=self.graph_attrs,
            nodes=nodes,
            edges=tuple(edges),
            path=self.path,
            source=self.src.text,
            attr_locations={
                key: self.location(offset)
                for key, offset in self.checked.graph_attr_offsets.items()
            },
        )

    def walk(self, obj: Mapping[str, Any], scope: _Scope, top: bool) -> None:
        elements: list[tuple[int, str, Any]] = []
        for name, entries in obj["nodes"].items():
            elements += [(e["sequence"], name, e) for e in entries]
        for entries in obj["edges"].values():
            elements += [(e["sequence"], "", e) for e in entries]
        for entries in obj["subgraphs"].values():
            elements += [(e["sequence"], "", e) for e in entries]
        elements.sort(key=lambda item: item[0])
        for _, name, element in elements:
            kind = element["type"]
            if kind == "node" and name in _DEFAULT_KINDS:
                self.defaults(name, element["attributes"], scope, top)
            elif kind == "node":
                self.node(name, _typed(element["attributes"], NODE_ATTRIBUTES), scope)
            elif kind == "edge":
                source, target = element["points"]
                self.node(source, {}, scope)
                self.node(target, {}, scope)
                attributes = _typed(element["attributes"], EDGE_ATTRIBUTES)
                self.edges.append((source, target, {**scope.edge_defaults, **attributes}))
            else:
                self.subgraph(element, scope)

    def defaults(self, kind: str, attributes: Mapping[str, Any], scope: _Scope, top: bool) -> None:
        if kind == "node":
            scope.node_defaults.update(_typed(attributes, NODE_ATTRIBUTES))
        elif kind == "edge":
            scope.edge_defaults.update(_typed(attributes, EDGE_ATTRIBUTES))
        elif top:
            self.graph_attrs.update(_typed(attributes, GRAPH_ATTRIBUTES))

    def subgraph(self, obj: Mapping[str, Any], scope: _Scope) -> None:
        attributes: dict[str, Value] = {}
        for entry in obj["nodes"].get("graph", []):
            attributes.update(_typed(entry["attributes"], GRAPH_ATTRIBUTES))
        label = str(attributes.get("label", ""))
        derived = derive_class(label) if label else ""
        classes = (*scope.classes, derived) if derived else scope.classes
        self.walk(obj, scope.child(classes), top=False)

    def node(self, node_id: str, attributes: dict[str, Value], scope: _Scope) -> None:
        existing = self.node_attrs.get(node_id)
        if existing is None:
            self.node_attrs[node_id] = {**scope.node_defaults, **attributes}
            self.node_classes[node_id] = list(scope.classes)
        else:
            existing.update(attributes)
            self.node_classes[node_id] += scope.classes
