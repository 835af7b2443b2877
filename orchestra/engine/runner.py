"""The run loop (spec §3.2) with the decisions of DESIGN.md §4.

One node runs at a time. After each node the outcome's context updates are applied, a
checkpoint turn is made durable, and only then is the next edge taken; so a crash or Ctrl-C
loses at most the node that was running, and a node that completed never runs again.
"""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import attrs

from orchestra.backends.base import CodergenBackend
from orchestra.engine.context import Context
from orchestra.engine.mirror import MirrorWriter, write_json
from orchestra.engine.retry import RetryPolicy, policy_for
from orchestra.engine.routing import select_edge
from orchestra.engine.session import SessionRecorder, SessionState
from orchestra.engine.usage import add_usage, node_usage, usage_keys
from orchestra.errors import HumanUnavailable, RunDirectoryError, SessionTaken, StoreError
from orchestra.events import (
    CheckpointSaved,
    Event,
    PipelineCompleted,
    PipelineFailed,
    PipelineStarted,
    StageCompleted,
    StageFailed,
    StageRetrying,
    StageStarted,
)
from orchestra.graph import Edge, Graph, Node
from orchestra.handlers.base import BranchResult, Handler, StageRun, TerminalError, Workspaces
from orchestra.handlers.registry import HandlerRegistry
from orchestra.interviewer.base import Interviewer
from orchestra.outcome import Outcome, StageStatus

__all__ = ["RunResult", "Runner"]

#: handler types whose outcome would not change on a second try
_NO_RETRY = frozenset({"start", "exit", "conditional"})
#: handler types that apply a node's ``timeout`` themselves (a gate then takes its default)
_OWN_TIMEOUT = frozenset({"wait.human"})
#: a write that failed for want of room or permission on the machine: no stage's fault
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: what the runner records of a node's failed attempts, to go on from after a crash
_ATTEMPTS = "attempts"


@attrs.frozen
class RunResult:
    session_id: str
    status: str  # "success" | "fail"
    completed_nodes: tuple[str, ...]
    context: Mapping[str, Any]
    logs_root: Path
    failure_reason: str = ""
    duration: float = 0.0
    node_outcomes: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: what LLM stages spent, per node (``usage.NODE.*`` summed over executions)
    usage: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: per repository of ``workspace.repos``: its ``path``, the session ``branch`` and
    #: that branch's ``head`` at the end
    workspace: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "success"


def branch_executions(outcome: Outcome) -> dict[str, int]:
    """A fan-out's outcome: the execution counts of the nodes its branches ran."""
    counts: dict[str, int] = {}
    results = outcome.context_updates.get("parallel.results")
    if isinstance(results, list):
        for result in results:
            if isinstance(result, Mapping):
                counts.update(result.get("executions") or {})
    return counts


class _RunEnded(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


class Runner:
    """Runs one session of a graph to its end, from its start or from its last checkpoint."""

    def __init__(
        self,
        graph: Graph,
        *,
        recorder: SessionRecorder,
        state: SessionState,
        handlers: HandlerRegistry,
        backend: CodergenBackend,
        interviewer: Interviewer,
        logs_root: Path,
        variables: Mapping[str, str],
        emit: Callable[[Event], Awaitable[None]],
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        workspaces: Workspaces | None = None,
    ) -> None:
        self.graph = graph
        self.workspaces = workspaces
        self.recorder = recorder
        self.state = state
        self.handlers = handlers
        self.backend = backend
        self.interviewer = interviewer
        self.logs_root = logs_root
        self._base_logs_root = logs_root.parent if state.restarts else logs_root
        self.variables = dict(variables)
        self.emit = emit
        self.sleep = sleep
        self.session_id = recorder.session_id
        self.context = Context(state.context)
        self._index = len(state.completed_nodes)
        self._started = time.monotonic()
        self._next_mirror = 0.0
        self._mirror = MirrorWriter()
        self._types: dict[str, str] = {}
        self._plans: dict[str, tuple[Handler, RetryPolicy]] = {}
        #: the next node to run is the first since a resume
        self._resume_pending = bool(state.completed_nodes)

    # the loop ---------------------------------------------------------------------------

    async def run(self) -> RunResult:
        resumed = self.state.next_node is not None
        if not resumed:
            self._initialise_context()
        await self.emit(
            PipelineStarted(
                session_id=self.session_id,
                pipeline=self.graph.name,
                goal=self.graph.goal,
                logs_root=str(self.logs_root),
                resumed=resumed,
            )
        )
        self._write_manifest()
        if self.workspaces is not None:
            await self.workspaces.announce()
        try:
            outcome = await self._traverse()
            await self._mirror.close()
        except BaseException:
            # Everything up to the last checkpoint is durable; mark where it stopped if the
            # store still takes writes, and let the cause through either way.
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._mirror.close()
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                self._write_checkpoint_file(force=True)
                await self.recorder.ended("interrupted", "stopped before the run ended")
            raise
        return await self._finish(outcome)

    def _initialise_context(self) -> None:
        for key, value in self.graph.attrs.items():
            self.context.set(
                f"graph.{key}", value if isinstance(value, str | int | bool) else str(value)
            )
        self.context.apply_updates(self.variables)

    async def _traverse(self) -> Outcome:
        next_node = self.state.next_node
        if next_node == "":
            return self._ended_outcome()
        node_id = next_node or self._start_id()
        arrival: tuple[Edge | None, str] = (None, self.state.current_node)
        while True:
            node = self.graph.nodes.get(node_id)
            if node is None:
                return Outcome.fail(f"the pipeline routes to '{node_id}', which is not a node")
            handler_type = self._type_for(node)
            if handler_type == "exit":
                unsatisfied = self._unsatisfied_gate()
                if unsatisfied is not None:
                    target = self._gate_retry_target(unsatisfied)
                    if target is None:
                        return Outcome.fail(
                            f"goal gate '{unsatisfied.id}' is unsatisfied and has no retry_target"
                        )
                    node_id = target
                    arrival = (None, self.state.current_node)
                    continue
            outcome = await self._execute(node, handler_type, self.context, arrival=arrival)
            if handler_type == "exit":
                await self._checkpoint(node, outcome, next_node="")
                return Outcome.success("pipeline completed")
            edge, route = self._route(node, outcome, self.context)
            if handler_type == "parallel" and outcome.status is not StageStatus.FAIL:
                # The branches ran inside the handler; the run continues at their join.
                edge, route = None, str(outcome.context_updates.get("parallel.join_node", ""))
            if not route:
                # No edge to take: a failure ends the run failed, anything else ends it (§3.2).
                await self._checkpoint(node, outcome, next_node="")
                if outcome.status is StageStatus.FAIL:
                    return outcome
                return Outcome.success("pipeline completed")
            if edge is not None and edge.loop_restart:
                await self._checkpoint(node, outcome, next_node=edge.target)
                await self._restart(edge)
                node_id = edge.target
                arrival = (edge, node.id)
                continue
            if edge is not None:
                key = (edge.source, edge.target)
                self.state.visits[key] = self.state.visits.get(key, 0) + 1
            await self._checkpoint(
                node, outcome, next_node=route, visited=(edge.source, edge.target) if edge else None
            )
            node_id = route
            arrival = (edge, node.id)

    def _route(self, node: Node, outcome: Outcome, context: Context) -> tuple[Edge | None, str]:
        """The edge to take and the next node id ('' to end the run)."""
        edge = select_edge(self.graph.outgoing(node.id), outcome, context, self.state.visits)
        if edge is not None:
            return edge, edge.target
        if outcome.status is StageStatus.FAIL:
            for target in (node.retry_target, node.fallback_retry_target):
                if target and target in self.graph.nodes:
                    return None, target
        return None, ""

    def _ended_outcome(self) -> Outcome:
        if self.state.ended == "fail":
            return Outcome.fail(self.state.end_reason or "the run had failed")
        last = self.state.current_node
        recorded = self.state.node_outcomes.get(last, {})
        if recorded.get("outcome") == "fail":
            return Outcome.fail(str(recorded.get("failure_reason") or "failed"))
        return Outcome.success("pipeline completed")

    def _start_id(self) -> str:
        start = self.graph.start_node
        if start is None:
            raise TerminalError("the pipeline has no single start node")
        return start.id

    # goal gates ---------------------------------------------------------------------------

    def _unsatisfied_gate(self) -> Node | None:
        for node_id, recorded in self.state.node_outcomes.items():
            node = self.graph.nodes.get(node_id)
            if node is None or not node.goal_gate:
                continue
            if recorded.get("outcome") not in ("success", "partial_success"):
                return node
        return None

    def _gate_retry_target(self, node: Node) -> str | None:
        for target in (
            node.retry_target,
            node.fallback_retry_target,
            self.graph.retry_target,
            self.graph.fallback_retry_target,
        ):
            if target and target in self.graph.nodes:
                return target
        return None

    # executing a node -----------------------------------------------------------------------

    async def _execute(
        self,
        node: Node,
        handler_type: str,
        context: Context,
        branch: str | None = None,
        *,
        arrival: tuple[Edge | None, str] = (None, ""),
    ) -> Outcome:
        """Run a node with its retry policy; apply its outcome to ``context``. ``arrival``
        is the edge that led here and the node it came from."""
        resumed, self._resume_pending = self._resume_pending, False
        handler, policy = self._plan(node)
        attempts = 1 if handler_type in _NO_RETRY else policy.max_attempts
        context.set("current_node", node.id)
        stage_dir = self.logs_root / node.id
        await self._mirror.settle(stage_dir)
        outcome = Outcome.fail("not run")
        first = self._resumed_attempt(node.id) if resumed and branch is None else 1
        first = min(first, attempts)  # fewer attempts now, after a `resume --force`
        for attempt in range(first, attempts + 1):
            execution = self.state.executions.get(node.id, 0) + 1
            self.state.executions[node.id] = execution
            await self.emit(
                StageStarted(
                    session_id=self.session_id,
                    node_id=node.id,
                    label=node.label,
                    handler=handler_type,
                    index=self._index,
                    attempt=attempt,
                    branch=branch,
                )
            )
            began = time.monotonic()
            stage = StageRun(
                session_id=self.session_id,
                logs_root=self.logs_root,
                stage_dir=stage_dir,
                attempt=attempt,
                execution=execution,
                variables=self.variables,
                emit=self.emit,
                interviewer=self.interviewer,
                backend=self.backend,
                run_branch=self._run_branch,
                recorded=self.state.recorded.setdefault(node.id, {}),
                record=self._recorder_for(node.id),
                branch=branch,
                store=self.recorder.store,
                handlers=self.handlers,
                graph=self.graph,
                incoming=arrival[0],
                previous_node=arrival[1],
                resumed=resumed,
                completed_nodes=self.state.completed_nodes,
                node_outcomes=self.state.node_outcomes,
                workspaces=self.workspaces,
                workspace=(
                    self.workspaces.for_stage(node.id, branch)
                    if self.workspaces is not None
                    else None
                ),
            )
            terminal = False
            result: Outcome | None
            try:
                if node.timeout and handler_type not in _OWN_TIMEOUT:
                    with anyio.fail_after(node.timeout.seconds):
                        result = await handler.execute(node, context, self.graph, stage)
                else:  # no cancel scope to enter and leave: a wide fan-out starts sooner
                    result = await handler.execute(node, context, self.graph, stage)
            except TimeoutError:
                result = Outcome.fail(f"timed out after {node.timeout}")
            except TerminalError as err:
                result, terminal = err.outcome or Outcome.fail(str(err)), True
            except (
                anyio.get_cancelled_exc_class(),
                HumanUnavailable,
                StoreError,
                SessionTaken,
                RunDirectoryError,
            ):
                raise  # the run stops here, resumable; the node has not failed
            except OSError as err:
                if err.errno not in _NO_ROOM:
                    result = Outcome.fail(f"{type(err).__name__}: {err}")
                else:  # the machine, not the stage: stop, record nothing, re-run on resume
                    raise RunDirectoryError(
                        f"node '{node.id}' could not write its files ({err.strerror or err}); "
                        "nothing of it was recorded: make room, then resume"
                    ) from err
            except Exception as err:  # a handler's bug must not crash the run (§4.12)
                result = Outcome.fail(f"{type(err).__name__}: {err}")
            if result is None:
                result = (
                    Outcome.success("auto-status: handler completed without writing status")
                    if node.auto_status
                    else Outcome.fail(
                        "the handler returned no outcome; set auto_status=true "
                        "to treat that as success"
                    )
                )
            outcome = result
            duration = time.monotonic() - began
            if outcome.status.is_success or outcome.status is StageStatus.SKIPPED:
                await self.emit(
                    StageCompleted(
                        session_id=self.session_id,
                        node_id=node.id,
                        label=node.label,
                        index=self._index,
                        duration=duration,
                        status=outcome.status.value,
                        attempts=attempt,
                        notes=outcome.notes,
                        branch=branch,
                        usage=node_usage(outcome.context_updates, node.id) or None,
                    )
                )
                break
            will_retry = attempt < attempts and not terminal
            await self.emit(
                StageFailed(
                    session_id=self.session_id,
                    node_id=node.id,
                    label=node.label,
                    index=self._index,
                    duration=duration,
                    error=outcome.failure_reason or outcome.status.value,
                    will_retry=will_retry,
                    attempts=attempt,
                    branch=branch,
                    usage=node_usage(outcome.context_updates, node.id) or None,
                )
            )
            if not will_retry:
                if outcome.status is StageStatus.RETRY:
                    outcome = (
                        Outcome(
                            StageStatus.PARTIAL_SUCCESS,
                            notes="retries exhausted, partial accepted",
                            context_updates=outcome.context_updates,
                        )
                        if node.allow_partial
                        else Outcome.fail(
                            outcome.failure_reason or "max retries exceeded",
                            context_updates=outcome.context_updates,
                        )
                    )
                break
            self.state.retries[node.id] = self.state.retries.get(node.id, 0) + 1
            if branch is None:  # a crash from here on goes on with the next attempt
                await self._recorder_for(node.id)(
                    _ATTEMPTS,
                    {
                        "attempt": attempt,
                        "execution": execution,
                        "retries": self.state.retries[node.id],
                    },
                )
            delay = policy.backoff.delay_for_attempt(attempt)
            await self.emit(
                StageRetrying(
                    session_id=self.session_id,
                    node_id=node.id,
                    label=node.label,
                    index=self._index,
                    attempt=attempt + 1,
                    delay=delay,
                    reason=outcome.failure_reason,
                    branch=branch,
                )
            )
            await self.sleep(delay)
        self._index += 1
        if outcome.status.is_success:
            self.state.retries[node.id] = 0  # §3.5: a success resets the node's counter
        if handler_type not in ("start", "exit"):
            # Appendix C: the outcome the engine routes on, written behind the run
            self._mirror.write(stage_dir / "status.json", outcome.to_json())
        context.apply_updates(outcome.context_updates)
        context.set("outcome", outcome.status.value)
        context.set("preferred_label", outcome.preferred_label)
        context.set(f"internal.retry_count.{node.id}", self.state.retries.get(node.id, 0))
        return outcome

    def _resumed_attempt(self, node_id: str) -> int:
        """The attempt a node stopped by a crash between its retries goes on with: the one
        after its last failed attempt recorded, with the execution and retry counts as they
        were (so a crash neither grants a fresh set of retries nor repeats an execution
        number). 1 when it had made no attempt that failed."""
        done = self.state.recorded.get(node_id, {}).get(_ATTEMPTS)
        if not done:
            return 1
        self.state.executions[node_id] = int(done["execution"])
        self.state.retries[node_id] = int(done["retries"])
        return int(done["attempt"]) + 1

    def _type_for(self, node: Node) -> str:
        handler_type = self._types.get(node.id)
        if handler_type is None:
            handler_type = self._types[node.id] = self.handlers.type_for(node, self.graph)
        return handler_type

    def _plan(self, node: Node) -> tuple[Handler, RetryPolicy]:
        """The node's handler and retry policy: fixed for the run, so worked out once (a
        wide fan-out starts each branch sooner)."""
        plan = self._plans.get(node.id)
        if plan is None:
            plan = self._plans[node.id] = (
                self.handlers.resolve(node, self.graph),
                policy_for(node, self.graph),
            )
        return plan

    def _recorder_for(self, node_id: str) -> Callable[[str, Mapping[str, Any]], Awaitable[None]]:
        async def record(kind: str, entries: Mapping[str, Any]) -> None:
            await self.recorder.record(node_id, kind, entries, workspace=self._moved_heads())
            self.state.recorded.setdefault(node_id, {}).setdefault(kind, {}).update(entries)

        return record

    async def _run_branch(self, node_id: str, context: Context, branch: str) -> BranchResult:
        """Run one parallel branch from ``node_id`` on its own context until it reaches a
        fan-in node or has nowhere to go. Its nodes are not checkpointed one by one: the
        parallel handler records the branch's result when it ends."""
        outcome = Outcome.success("empty branch")
        current = node_id
        completed: list[str] = []
        usage: dict[str, Any] = {}
        executions: dict[str, int] = {}
        arrival: tuple[Edge | None, str] = (None, "")
        #: the fan-in of a fan-out nested in this branch: the branch runs it and goes on
        inner_join = ""
        while True:
            node = self.graph.nodes.get(current)
            if node is None:
                reason = f"branch {branch} routes to '{current}', which is not a node"
                return BranchResult(Outcome.fail(reason), tuple(completed), usage, executions)
            handler_type = self._type_for(node)
            if handler_type == "exit" or (
                handler_type == "parallel.fan_in" and current != inner_join
            ):
                break
            outcome = await self._execute(node, handler_type, context, branch, arrival=arrival)
            completed.append(node.id)
            executions[node.id] = self.state.executions.get(node.id, 0)
            executions.update(branch_executions(outcome))
            usage.update(usage_keys(outcome.context_updates))
            edge, route = self._route(node, outcome, context)
            arrival = (edge, node.id)
            if handler_type == "parallel" and outcome.status is not StageStatus.FAIL:
                route = inner_join = str(outcome.context_updates.get("parallel.join_node", ""))
            if not route:
                break
            current = route
        return BranchResult(outcome, tuple(completed), usage, executions)

    # checkpoints ----------------------------------------------------------------------------

    async def _checkpoint(
        self,
        node: Node,
        outcome: Outcome,
        *,
        next_node: str,
        visited: tuple[str, str] | None = None,
    ) -> None:
        self.state.completed_nodes.append(node.id)
        self.state.node_outcomes[node.id] = outcome.to_json()
        self.state.recorded.pop(node.id, None)
        executions = {node.id: self.state.executions.get(node.id, 0)}
        # A fan-out's branches' nodes are not checkpointed one by one: their execution
        # counts go with the fan-out's, so that a node of a later round, resumed, does not
        # take an earlier round's records for its own.
        for ran, count in branch_executions(outcome).items():
            self.state.executions[ran] = executions[ran] = count
            self.state.recorded.pop(ran, None)
        self.state.next_node = next_node
        self.state.current_node = node.id
        changes = self.context.take_changes()
        self.state.context.update(changes)
        add_usage(self.state.usage, changes)
        turn = await self.recorder.checkpoint(
            node_id=node.id,
            status=outcome.status.value,
            outcome=outcome.to_json(),
            context_set=changes,
            retries={node.id: self.state.retries.get(node.id, 0)},
            visits={visited: self.state.visits[visited]} if visited else {},
            executions=executions,
            next_node=next_node,
            restarts=self.state.restarts,
            workspace=self._moved_heads(),
        )
        self.state.checkpoints.append((turn.turn_id, node.id, turn.created_at_ms))
        self._write_checkpoint_file()
        self._mirror.check()
        await self.emit(
            CheckpointSaved(session_id=self.session_id, node_id=node.id, turn_id=turn.turn_id)
        )
        if self.workspaces is not None:
            await self.workspaces.checkpointed()

    def _moved_heads(self) -> Mapping[str, str] | None:
        """The worktree heads that moved since the last turn, recorded with the next one so
        that a resume puts the worktrees back exactly where the store says they were."""
        if self.workspaces is None:
            return None
        moved = self.workspaces.take_changes()
        self.state.move_heads(moved)
        return moved

    async def _restart(self, edge: Edge) -> None:
        """DESIGN §4.7: same process, fresh context (graph.* and run variables kept), fresh
        ``restart-N/`` logs directory. The directory left behind gets its final mirror first,
        the node whose edge restarts the run included."""
        await self._mirror.settle(self.logs_root)
        self._write_checkpoint_file(force=True)
        self.state.restarts += 1
        keep = {k: v for k, v in self.context.as_mapping().items() if k.startswith("graph.")}
        self.context = Context({**keep, **self.variables})
        self.state.context = {}
        self.state.completed_nodes.clear()
        self.state.node_outcomes.clear()
        self.state.retries.clear()
        self.state.visits.clear()
        self.logs_root = self._base_logs_root / f"restart-{self.state.restarts}"
        self.logs_root.mkdir(parents=True, exist_ok=True)
        changes = self.context.take_changes()
        self.state.context.update(changes)
        add_usage(self.state.usage, changes)
        await self.recorder.checkpoint(
            node_id=edge.source,
            status="success",
            outcome={},
            context_set=changes,
            retries={},
            visits={},
            executions={},
            next_node=edge.target,
            restarts=self.state.restarts,
            reset=True,
        )

    def _write_manifest(self) -> None:
        self.logs_root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "name": self.graph.name,
            "goal": self.graph.goal,
            "start_time": self.state.started_ms / 1000 if self.state.started_ms else time.time(),
            "session_id": self.session_id,
            "dot_file": self.graph.path,
            "variables": self.variables,
        }
        write_json(self.logs_root / "manifest.json", manifest)

    def _write_checkpoint_file(self, *, force: bool = False) -> None:
        """Mirror the state to ``checkpoint.json``. The store is the source of truth (every
        node is checkpointed there); the file costs time in proportion to the state, so on
        long runs it is refreshed only once ten times its own write time has passed (always
        at the end), keeping the mirror under a tenth of the run's time."""
        now = time.monotonic()
        if not force and now < self._next_mirror:
            return
        data = {
            "timestamp": time.time(),
            "current_node": self.state.current_node,
            "completed_nodes": self.state.completed_nodes,
            "node_retries": self.state.retries,
            "context": self.context.as_mapping(),
            "logs": self.context.logs,
            "node_outcomes": self.state.node_outcomes,
            "next_node": self.state.next_node,
            "session_id": self.session_id,
        }
        if force:
            write_json(self.logs_root / "checkpoint.json", data)
        else:
            self._mirror.write(self.logs_root / "checkpoint.json", data)
        self._next_mirror = now + 10 * (time.monotonic() - now)

    async def _finish(self, outcome: Outcome) -> RunResult:
        self._write_checkpoint_file(force=True)
        duration = time.monotonic() - self._started
        completed = tuple(self.state.completed_nodes)
        status = "success" if outcome.status.is_success else "fail"
        await self.recorder.ended(status, outcome.failure_reason)
        if status == "success":
            await self.emit(
                PipelineCompleted(
                    session_id=self.session_id,
                    status=status,
                    duration=duration,
                    completed_nodes=completed,
                    logs_root=str(self.logs_root),
                )
            )
        else:
            await self.emit(
                PipelineFailed(
                    session_id=self.session_id,
                    status=status,
                    error=outcome.failure_reason,
                    duration=duration,
                    completed_nodes=completed,
                    logs_root=str(self.logs_root),
                )
            )
        return RunResult(
            session_id=self.session_id,
            status=status,
            completed_nodes=completed,
            context=dict(self.context.as_mapping()),
            logs_root=self.logs_root,
            failure_reason=outcome.failure_reason,
            duration=duration,
            node_outcomes=dict(self.state.node_outcomes),
            usage={node: dict(fields) for node, fields in self.state.usage.items()},
        )
