"""Transforms (spec §9.1-9.3): functions ``Graph -> Graph`` run between parsing and validation.

The built-in ones run first (``$goal`` expansion, then the model stylesheet), then custom
transforms in the order they were given. A transform returns a new graph; ``Graph`` is frozen,
so the input cannot be changed in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from orchestra.errors import TransformError
from orchestra.graph import Graph
from orchestra.transforms.stylesheet import StylesheetTransform, apply_stylesheet

__all__ = [
    "BUILT_IN_TRANSFORMS",
    "GoalExpansionTransform",
    "StylesheetTransform",
    "Transform",
    "apply_stylesheet",
    "apply_transforms",
    "expand_goal",
    "goal_text",
]


@runtime_checkable
class Transform(Protocol):
    """Anything with ``apply(graph) -> Graph``; a plain callable works too."""

    def apply(self, graph: Graph) -> Graph: ...


TransformLike = Transform | Callable[[Graph], Graph]


def goal_text(goal: str) -> str:
    """The goal as it is put into a prompt: literal text, even if it holds ``{{`` or ``{%``
    (prompts are rendered with Jinja2 later, and a goal is data, not template code)."""
    if "{{" in goal or "{%" in goal or "{#" in goal:
        return (
            "{% raw %}"
            + goal.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}")
            + "{% endraw %}"
        )
    return goal


def expand_goal(graph: Graph) -> Graph:
    """Replace ``$goal`` in every node's ``prompt`` with the graph's ``goal`` (§9.2)."""
    goal = goal_text(graph.goal)
    changed = {
        node.id: node.evolve(attrs={**node.attrs, "prompt": node.prompt.replace("$goal", goal)})
        for node in graph.nodes.values()
        if "$goal" in node.prompt
    }
    if not changed:
        return graph
    return graph.evolve(nodes={**graph.nodes, **changed})


class GoalExpansionTransform:
    name = "goal_expansion"

    def apply(self, graph: Graph) -> Graph:
        return expand_goal(graph)


BUILT_IN_TRANSFORMS: tuple[Transform, ...] = (GoalExpansionTransform(), StylesheetTransform())


def apply_transforms(graph: Graph, custom: Iterable[TransformLike] = ()) -> Graph:
    """The built-in transforms, then ``custom`` in order."""
    for transform in (*BUILT_IN_TRANSFORMS, *custom):
        result = transform.apply(graph) if isinstance(transform, Transform) else transform(graph)
        if not isinstance(result, Graph):
            name = getattr(transform, "name", None) or getattr(
                transform, "__name__", type(transform).__name__
            )
            raise TransformError(
                f"transform {name!r} returned {type(result).__name__}, not a Graph; "
                "a transform must return the (new) graph"
            )
        graph = result
    return graph
