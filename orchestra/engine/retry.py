"""Retry policies (spec §3.5-3.6): how many attempts a node gets and how long to wait.

``max_retries`` (or the graph's ``default_max_retries``) sets the attempts; a node or graph
``retry_policy`` picks a preset for the backoff, and its attempts when ``max_retries`` is
not written anywhere.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from orchestra.graph import Graph, Node

__all__ = ["PRESETS", "Backoff", "RetryPolicy", "policy_for"]


@attrs.frozen
class Backoff:
    initial_delay: float = 0.2  # seconds
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True

    def delay_for_attempt(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        delay = min(self.initial_delay * self.factor ** (attempt - 1), self.max_delay)
        if self.jitter:
            delay *= 0.5 + rand()  # uniform in [0.5, 1.5)
        return delay


@attrs.frozen
class RetryPolicy:
    max_attempts: int = 1
    backoff: Backoff = Backoff()
    name: str = "default"


PRESETS: dict[str, RetryPolicy] = {
    "none": RetryPolicy(1, Backoff(0.0, 1.0, 0.0, jitter=False), "none"),
    "standard": RetryPolicy(5, Backoff(0.2, 2.0), "standard"),
    "aggressive": RetryPolicy(5, Backoff(0.5, 2.0), "aggressive"),
    "linear": RetryPolicy(3, Backoff(0.5, 1.0), "linear"),
    "patient": RetryPolicy(3, Backoff(2.0, 3.0), "patient"),
}


def _explicit_retries(node: Node, graph: Graph) -> bool:
    return any(
        key in source
        for source, key in (
            (node.attrs, "max_retries"),
            (graph.attrs, "default_max_retries"),
            (graph.attrs, "default_max_retry"),
        )
    )


def policy_for(node: Node, graph: Graph) -> RetryPolicy:
    """The node's policy: its ``retry_policy`` (else the graph's, else ``standard`` backoff),
    with ``max_retries + 1`` attempts wherever ``max_retries`` is set."""
    name = str(node.attrs.get("retry_policy") or graph.attrs.get("retry_policy") or "")
    preset = PRESETS.get(name)
    if preset is None:
        preset = RetryPolicy(1, PRESETS["standard"].backoff, "default")
    if _explicit_retries(node, graph) or name not in PRESETS:
        return attrs.evolve(preset, max_attempts=node.max_retries + 1)
    return preset
