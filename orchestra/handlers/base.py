"""The handler interface (spec §4.1) and what the engine hands a handler besides the node.

A handler is anything with ``async execute(node, context, graph, stage) -> Outcome``.
``stage`` carries the run's logs root and this node's directory (the spec's ``logs_root``),
the run variables, the event bus, the interviewer and the LLM backend, so handlers reach
services without importing the engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from orchestra.engine.context import Context
from orchestra.events import Event
from orchestra.graph import Edge, Graph, Node
from orchestra.outcome import Outcome
from orchestra.store.base import Store

if TYPE_CHECKING:
    from orchestra.backends.base import CodergenBackend
    from orchestra.handlers.registry import HandlerRegistry
    from orchestra.interviewer.base import Interviewer

__all__ = ["BranchResult", "BranchRunner", "Handler", "StageRun", "TerminalError"]


class TerminalError(Exception):
    """Raised by a handler for a failure that retrying cannot fix (bad configuration, a
    missing file): the node fails at once, without using its retries (DESIGN §4.2)."""


@attrs.frozen
class BranchResult:
    """How a parallel branch ended: its last node's outcome and the nodes it ran."""

    outcome: Outcome
    completed_nodes: tuple[str, ...]
    #: the ``usage.NODE.*`` keys its LLM stages wrote, all of them (a branch's context is
    #: its own, and its last outcome holds only its last node's)
    usage: Mapping[str, Any] = attrs.field(factory=dict)


#: Runs the branch that starts at a node, on its own context, named ``branch``.
BranchRunner = Callable[[str, Context, str], Awaitable[BranchResult]]


@attrs.frozen
class StageRun:
    """Everything about this execution of a node that is not the node, context or graph."""

    session_id: str
    logs_root: Path
    stage_dir: Path
    #: retry attempt of this visit (1-based)
    attempt: int
    #: how many times this node has run in the session, this time included (1-based)
    execution: int
    variables: Mapping[str, str]
    emit: Callable[[Event], Awaitable[None]]
    interviewer: Interviewer
    backend: CodergenBackend
    run_branch: BranchRunner
    #: what this node's handler recorded before a crash, by kind then key
    recorded: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: ``await record(kind, {key: data, ...})`` makes entries durable before returning
    record: Callable[[str, Mapping[str, Any]], Awaitable[None]] | None = None
    branch: str | None = None
    #: the session's store and handlers, for handlers that start sessions of their own
    #: (the manager loop's child runs with the parent's custom handlers too)
    store: Store | None = None
    handlers: HandlerRegistry | None = None
    #: the pipeline's graph (the node's own; a manager's child runs its own)
    graph: Graph | None = None
    #: how the run got here: the edge taken (None for the start node, after a resume, or
    #: for a failure's jump to a retry target) and the node before ('' when none)
    incoming: Edge | None = None
    previous_node: str = ""
    #: True for the first node a resumed session runs (an LLM session held in memory before
    #: the crash is gone: ``full`` fidelity starts afresh once, spec §5.3)
    resumed: bool = False
    #: the nodes completed so far, in order, and each one's latest outcome (``to_json``);
    #: the engine's own records, to read and not to change
    completed_nodes: Sequence[str] = ()
    node_outcomes: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)


@runtime_checkable
class Handler(Protocol):
    """Returns the node's outcome; None means "no status written" (see ``auto_status``)."""

    async def execute(
        self, node: Node, context: Context, graph: Graph, stage: StageRun
    ) -> Outcome | None: ...
