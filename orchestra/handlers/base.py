"""The handler interface (spec §4.1) and what the engine hands a handler besides the node.

A handler is anything with ``async execute(node, context, graph, stage) -> Outcome``.
``stage`` carries the run's logs root and this node's directory (the spec's ``logs_root``),
the run variables, the event bus, the interviewer and the LLM backend, so handlers reach
services without importing the engine.
"""

from __future__ import annotations

import sys
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

__all__ = [
    "BranchResult",
    "BranchRunner",
    "Handler",
    "StageRun",
    "StageWorkspace",
    "TerminalError",
    "Workspaces",
]


class TerminalError(Exception):
    """Raised by a handler for a failure that retrying cannot fix (bad configuration, a
    missing file, a person's "no"): the node fails at once, without using its retries
    (DESIGN §4.2), with ``outcome`` when given (a FAIL), else one stating the message."""

    def __init__(self, message: str, *, outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


@attrs.frozen
class BranchResult:
    """How a parallel branch ended: its last node's outcome and the nodes it ran."""

    outcome: Outcome
    completed_nodes: tuple[str, ...]
    #: the ``usage.NODE.*`` keys its LLM stages wrote, all of them (a branch's context is
    #: its own, and its last outcome holds only its last node's)
    usage: Mapping[str, Any] = attrs.field(factory=dict)
    #: how many times each node it ran (nested branches' included) has run in the session:
    #: kept with the branch's result, as its nodes are not checkpointed one by one
    executions: Mapping[str, int] = attrs.field(factory=dict)


class StageWorkspace(Protocol):
    """The git worktree a stage works in (``orchestra.workspace`` provides it when
    ``workspace.repos`` is configured): one repository's worktree, or a directory holding
    one worktree per repository."""

    @property
    def root(self) -> Path: ...

    @property
    def worktrees(self) -> Mapping[str, Path]:
        """Each repository's worktree for this stage, by repository name."""
        ...

    @property
    def tools(self) -> Mapping[str, Mapping[str, str]]:
        """``workspace.tools``: per repository, tool name -> shell command."""
        ...

    def locate(self, given: Path) -> Path | None:
        """Where ``given`` (a configured repository's path, or a path inside it) is in this
        stage's worktrees; None when it is in none of the repositories."""
        ...

    async def commit(
        self,
        paths: Sequence[str] | None,
        *,
        model: str = "",
        turn: str = "",
        untracked: bool = False,
        summary: str = "",
    ) -> None:
        """Commit ``paths`` (relative to ``root``), or with None every change to tracked
        files (and, with ``untracked``, new files ``.gitignore`` does not exclude).
        ``summary`` is the message's first line; without it one is written from the diff."""
        ...


class Workspaces(Protocol):
    """A session's worktrees, as the engine and the parallel handlers use them."""

    def for_stage(self, node_id: str, branch: str | None) -> StageWorkspace: ...

    async def announce(self) -> None:
        """Called once the run has started (after ``PipelineStarted``): emit the events of
        checking the worktrees out."""
        ...

    async def fork(
        self, node_id: str, parent: str | None, branches: Sequence[str], keep: Sequence[str]
    ) -> None:
        """Give each parallel branch a worktree of its own from ``parent``'s head (None: the
        session's), except the ``keep`` ones, finished before a resume, left as they are."""
        ...

    def heads_of(self, branch: str | None) -> Mapping[str, str]: ...

    async def merge(
        self, node_id: str, into: str | None, branches: Sequence[str]
    ) -> Mapping[str, Mapping[str, str]]:
        """Merge the branches' worktrees into ``into``'s in the order given; returns the
        conflicts (repository -> file -> text with conflict markers), {} when none."""
        ...

    def take_changes(self) -> Mapping[str, str]:
        """The worktree heads that moved since the last call, to record with the next turn."""
        ...

    async def checkpointed(self) -> None:
        """Called after each checkpoint (pushes a moved branch when configured to)."""
        ...


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
    #: what this node's handler recorded, by kind then key: before a crash, and as it
    #: records (the runner keeps it up to date)
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
    #: the session's git worktrees, and this stage's, when ``workspace.repos`` is configured
    workspaces: Workspaces | None = None
    workspace: StageWorkspace | None = None
    #: which backend call of this visit this is: 0 for a node's one call per execution;
    #: 1, 2, … for the agent's replies in a chat (``agent.mode="interactive"``)
    call: int = 0

    def template_variables(self, node_id: str) -> dict[str, str]:
        """The names a prompt, ``tool_command`` or ``workspace=`` template of ``node_id``
        sees besides the context: ``node_id``, ``run_dir`` (the run directory),
        ``pipeline_dir`` (the DOT file's directory; the working directory for a pipeline
        given as text), ``python`` (the interpreter Orchestra runs on, with its libraries),
        then the run variables, which win."""
        path = self.graph.path if self.graph is not None else None
        pipeline_dir = Path(path).resolve().parent if path else Path.cwd()
        return {
            "node_id": node_id,
            "run_dir": str(self.logs_root.resolve()),
            "pipeline_dir": str(pipeline_dir),
            "python": sys.executable,
            **self.variables,
        }

    @property
    def visit(self) -> int:
        """The execution this visit of the node began with: its retries have later ones, and
        continue its chat rather than start another."""
        return self.execution - self.attempt + 1

    @property
    def key(self) -> str:
        """What a backend keys its records of this call by: the execution (``"3"``), or in a
        chat the visit and the reply (``"3.2"``), so that no call reads another's record."""
        return f"{self.visit}.{self.call}" if self.call else str(self.execution)


@runtime_checkable
class Handler(Protocol):
    """Returns the node's outcome; None means "no status written" (see ``auto_status``)."""

    async def execute(
        self, node: Node, context: Context, graph: Graph, stage: StageRun
    ) -> Outcome | None: ...
