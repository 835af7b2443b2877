"""The handler registry (spec §4.2): type string -> handler, with shape-based resolution."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from orchestra.graph import SHAPE_HANDLER_TYPES, Graph, Node
from orchestra.handlers.base import Handler

__all__ = ["HandlerRegistry"]


class HandlerRegistry:
    def __init__(
        self, handlers: Mapping[str, Handler] | None = None, default: str = "codergen"
    ) -> None:
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._default = default

    def register(self, type_string: str, handler: Handler) -> None:
        """Add or replace the handler for ``type_string``."""
        self._handlers[type_string] = handler

    def type_for(self, node: Node, graph: Graph) -> str:
        """The type a node runs as: its explicit ``type`` if registered, else its shape's,
        else the default. A node that is the graph's start or exit by id alone runs as
        ``start`` or ``exit``."""
        if node.type and node.type in self._handlers:
            return node.type
        if "shape" not in node.attrs and not node.type:
            start, exit_node = graph.start_node, graph.exit_node
            if start is not None and start.id == node.id:
                return "start"
            if exit_node is not None and exit_node.id == node.id:
                return "exit"
        by_shape = SHAPE_HANDLER_TYPES.get(node.shape)
        if by_shape is not None and by_shape in self._handlers:
            return by_shape
        return self._default

    def resolve(self, node: Node, graph: Graph) -> Handler:
        return self._handlers[self.type_for(node, graph)]

    def __contains__(self, type_string: object) -> bool:
        return type_string in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def copy(self) -> HandlerRegistry:
        return HandlerRegistry(self._handlers, self._default)
