"""The pipeline graph: frozen ``Graph``, ``Node`` and ``Edge`` with typed attribute accessors.

Attributes are kept as parsed (known ones already converted to their type, unknown ones as
strings); the accessors apply the spec's defaults (Appendix A). A graph is never modified in
place: transforms build a new one with :meth:`Graph.evolve` and :meth:`Node.evolve`.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from typing import Any

from attrs import evolve, field, frozen

from orchestra.attributes import Duration, Value, to_bool

__all__ = ["SHAPE_HANDLER_TYPES", "Edge", "Graph", "Node", "SourceLocation"]

#: Spec §2.8: the handler type a shape selects when a node has no explicit ``type``.
SHAPE_HANDLER_TYPES: Mapping[str, str] = types.MappingProxyType(
    {
        "Mdiamond": "start",
        "Msquare": "exit",
        "box": "codergen",
        "hexagon": "wait.human",
        "diamond": "conditional",
        "component": "parallel",
        "tripleoctagon": "parallel.fan_in",
        "parallelogram": "tool",
        "house": "stack.manager_loop",
    }
)

_START_IDS = ("start", "Start")
_EXIT_IDS = ("exit", "end")


def _frozen_mapping(value: Mapping[str, Value]) -> Mapping[str, Value]:
    if isinstance(value, types.MappingProxyType):
        return value
    return types.MappingProxyType(dict(value))


@frozen
class SourceLocation:
    """Where something was written: 1-based line and column in a DOT file."""

    line: int
    column: int
    file: str | None = None

    def __str__(self) -> str:
        return f"{self.file or '<string>'}:{self.line}:{self.column}"


def _string(attrs_: Mapping[str, Value], key: str, default: str = "") -> str:
    value = attrs_.get(key)
    return default if value is None else str(value)


def _int(attrs_: Mapping[str, Value], key: str) -> int | None:
    value = attrs_.get(key)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


@frozen
class Node:
    """A pipeline stage. ``attrs`` holds every attribute written for it, known or not."""

    id: str
    attrs: Mapping[str, Value] = field(factory=dict, converter=_frozen_mapping)
    #: classes from the ``class`` attribute and from enclosing subgraph labels (§2.10)
    classes: tuple[str, ...] = ()
    location: SourceLocation | None = field(default=None, eq=False)
    #: the owning graph's attributes, for inherited defaults (set by ``Graph``)
    graph_attrs: Mapping[str, Value] = field(
        factory=dict, converter=_frozen_mapping, eq=False, repr=False
    )

    def get(self, key: str, default: Value | None = None) -> Value | None:
        """An attribute by name, including ones the spec does not know."""
        return self.attrs.get(key, default)

    def evolve(self, **changes: Any) -> Node:
        return evolve(self, **changes)

    @property
    def label(self) -> str:
        return _string(self.attrs, "label", self.id) or self.id

    @property
    def shape(self) -> str:
        return _string(self.attrs, "shape", "box") or "box"

    @property
    def type(self) -> str:
        return _string(self.attrs, "type")

    @property
    def handler_type(self) -> str:
        """The explicit ``type``, else the type the shape maps to, else ``codergen`` (§2.8)."""
        return self.type or SHAPE_HANDLER_TYPES.get(self.shape, "codergen")

    @property
    def prompt(self) -> str:
        return _string(self.attrs, "prompt")

    @property
    def max_retries(self) -> int:
        """Own ``max_retries``, else the graph's ``default_max_retries`` (or legacy
        ``default_max_retry``), else 0."""
        for source, key in (
            (self.attrs, "max_retries"),
            (self.graph_attrs, "default_max_retries"),
            (self.graph_attrs, "default_max_retry"),
        ):
            value = _int(source, key)
            if value is not None:
                return max(value, 0)
        return 0

    @property
    def goal_gate(self) -> bool:
        return to_bool(self.attrs.get("goal_gate"))

    @property
    def retry_target(self) -> str:
        return _string(self.attrs, "retry_target")

    @property
    def fallback_retry_target(self) -> str:
        return _string(self.attrs, "fallback_retry_target")

    @property
    def fidelity(self) -> str:
        """Own ``fidelity``, else the graph's ``default_fidelity``; '' when neither is set."""
        return _string(self.attrs, "fidelity") or _string(self.graph_attrs, "default_fidelity")

    @property
    def thread_id(self) -> str:
        return _string(self.attrs, "thread_id")

    @property
    def timeout(self) -> Duration | None:
        value = self.attrs.get("timeout")
        return value if isinstance(value, Duration) else None

    @property
    def llm_model(self) -> str:
        return _string(self.attrs, "llm_model")

    @property
    def llm_provider(self) -> str:
        return _string(self.attrs, "llm_provider")

    @property
    def reasoning_effort(self) -> str:
        return _string(self.attrs, "reasoning_effort", "high") or "high"

    @property
    def auto_status(self) -> bool:
        return to_bool(self.attrs.get("auto_status"))

    @property
    def allow_partial(self) -> bool:
        return to_bool(self.attrs.get("allow_partial"))


@frozen
class Edge:
    """A transition from ``source`` to ``target``."""

    source: str
    target: str
    attrs: Mapping[str, Value] = field(factory=dict, converter=_frozen_mapping)
    location: SourceLocation | None = field(default=None, eq=False)

    def get(self, key: str, default: Value | None = None) -> Value | None:
        return self.attrs.get(key, default)

    def evolve(self, **changes: Any) -> Edge:
        return evolve(self, **changes)

    @property
    def label(self) -> str:
        return _string(self.attrs, "label")

    @property
    def condition(self) -> str:
        return _string(self.attrs, "condition")

    @property
    def weight(self) -> int:
        return _int(self.attrs, "weight") or 0

    @property
    def fidelity(self) -> str:
        return _string(self.attrs, "fidelity")

    @property
    def thread_id(self) -> str:
        return _string(self.attrs, "thread_id")

    @property
    def loop_restart(self) -> bool:
        return to_bool(self.attrs.get("loop_restart"))

    @property
    def max_visits(self) -> int | None:
        """Orchestra: the edge is eligible at most this many times per run (None: no limit)."""
        return _int(self.attrs, "max_visits")


def _terminals(nodes: Mapping[str, Node], shape: str, ids: tuple[str, ...]) -> tuple[Node, ...]:
    """Nodes with ``shape``, or, when no node has it, the nodes named one of ``ids``."""
    by_shape = tuple(n for n in nodes.values() if n.shape == shape)
    return by_shape or tuple(n for n in nodes.values() if n.id in ids)


def _bind_nodes(graph: Graph) -> None:
    # Nodes read inherited defaults (default_max_retries, default_fidelity) from their graph.
    bound = {
        node_id: node if node.graph_attrs is graph.attrs else evolve(node, graph_attrs=graph.attrs)
        for node_id, node in graph.nodes.items()
    }
    object.__setattr__(graph, "nodes", types.MappingProxyType(bound))


@frozen
class Graph:
    """A parsed pipeline: graph attributes, nodes in declaration order, edges in order."""

    name: str
    attrs: Mapping[str, Value] = field(factory=dict, converter=_frozen_mapping)
    nodes: Mapping[str, Node] = field(factory=dict)
    edges: tuple[Edge, ...] = ()
    #: the file it was read from, or None for text
    path: str | None = field(default=None, eq=False)
    #: the DOT source it was parsed from
    source: str | None = field(default=None, eq=False, repr=False)
    #: where each top-level graph attribute was written
    attr_locations: Mapping[str, SourceLocation] = field(factory=dict, eq=False, repr=False)
    _outgoing: Mapping[str, tuple[Edge, ...]] = field(
        init=False, eq=False, repr=False, factory=dict
    )
    _incoming: Mapping[str, tuple[Edge, ...]] = field(
        init=False, eq=False, repr=False, factory=dict
    )
    _starts: tuple[Node, ...] = field(init=False, eq=False, repr=False, default=())
    _exits: tuple[Node, ...] = field(init=False, eq=False, repr=False, default=())

    def __attrs_post_init__(self) -> None:
        _bind_nodes(self)
        outgoing: dict[str, list[Edge]] = {}
        incoming: dict[str, list[Edge]] = {}
        for edge in self.edges:
            outgoing.setdefault(edge.source, []).append(edge)
            incoming.setdefault(edge.target, []).append(edge)
        object.__setattr__(self, "_outgoing", {k: tuple(v) for k, v in outgoing.items()})
        object.__setattr__(self, "_incoming", {k: tuple(v) for k, v in incoming.items()})
        # Looked up for every node the engine runs: found once, not by a scan each time.
        object.__setattr__(self, "_starts", _terminals(self.nodes, "Mdiamond", _START_IDS))
        object.__setattr__(self, "_exits", _terminals(self.nodes, "Msquare", _EXIT_IDS))

    def evolve(self, **changes: Any) -> Graph:
        return evolve(self, **changes)

    def with_node(self, node: Node) -> Graph:
        """A copy with ``node`` replacing the node of the same id."""
        return self.evolve(nodes={**self.nodes, node.id: node})

    def get(self, key: str, default: Value | None = None) -> Value | None:
        return self.attrs.get(key, default)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    @property
    def goal(self) -> str:
        return _string(self.attrs, "goal")

    @property
    def label(self) -> str:
        return _string(self.attrs, "label")

    @property
    def model_stylesheet(self) -> str:
        return _string(self.attrs, "model_stylesheet")

    @property
    def default_max_retries(self) -> int:
        for key in ("default_max_retries", "default_max_retry"):
            value = _int(self.attrs, key)
            if value is not None:
                return max(value, 0)
        return 0

    @property
    def retry_target(self) -> str:
        return _string(self.attrs, "retry_target")

    @property
    def fallback_retry_target(self) -> str:
        return _string(self.attrs, "fallback_retry_target")

    @property
    def default_fidelity(self) -> str:
        return _string(self.attrs, "default_fidelity")

    def start_nodes(self) -> list[Node]:
        """Nodes that are a start: shape Mdiamond, or (when none has it) id start/Start."""
        return list(self._starts)

    def exit_nodes(self) -> list[Node]:
        """Nodes that are an exit: shape Msquare, or (when none has it) id exit/end."""
        return list(self._exits)

    @property
    def start_node(self) -> Node | None:
        """The start node, or None when there is not exactly one."""
        return self._starts[0] if len(self._starts) == 1 else None

    @property
    def exit_node(self) -> Node | None:
        """The exit node, or None when there is not exactly one."""
        return self._exits[0] if len(self._exits) == 1 else None

    def outgoing(self, node_id: str) -> tuple[Edge, ...]:
        """Edges leaving ``node_id``, in declaration order."""
        return self._outgoing.get(node_id, ())

    def incoming(self, node_id: str) -> tuple[Edge, ...]:
        """Edges entering ``node_id``, in declaration order."""
        return self._incoming.get(node_id, ())
