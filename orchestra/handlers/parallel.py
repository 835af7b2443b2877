"""Parallel fan-out and fan-in (spec §4.8-4.9, DESIGN §4.5).

Each outgoing edge of a ``parallel`` node starts a branch; branches run in an anyio task
group under a ``CapacityLimiter(max_parallel)``, each on a deep copy of the context, and run
until they reach a fan-in node. A branch that fails or raises never disturbs its siblings.
``first_success`` cancels the others once one succeeds. Every finished branch is recorded,
so after a crash only the unfinished branches run again. The results go to
``parallel.results``; the run continues at the fan-in node the branches lead to.

In a git workspace each branch works in a worktree of its own, forked from the line the
parallel node is on; the fan-in merges the branches that succeeded back into it in branch-id
order. A conflict changes nothing on that line: the fan-in is PARTIAL_SUCCESS with the
conflicts in ``parallel.merge_conflicts``, for the graph to route (to a resolver, say).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestra.engine.context import Context
from orchestra.events import (
    ParallelBranchCompleted,
    ParallelBranchStarted,
    ParallelCompleted,
    ParallelStarted,
)
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.outcome import Outcome, StageStatus

__all__ = ["FanInHandler", "ParallelHandler", "find_join"]

#: a finished branch: its target, its result, and the event set once it is recorded
_Finished = tuple[str, dict[str, Any], anyio.Event]

_RANK = {"success": 0, "partial_success": 1, "retry": 2, "skipped": 3, "fail": 4}


def find_join(graph: Graph, node: Node) -> str:
    """The nearest fan-in node reachable from the parallel node's branches ('' if none)."""
    seen = {node.id}
    queue = deque(edge.target for edge in graph.outgoing(node.id))
    while queue:
        current = queue.popleft()
        if current in seen:
            continue
        seen.add(current)
        candidate = graph.nodes.get(current)
        if candidate is not None and candidate.handler_type == "parallel.fan_in":
            return current
        queue.extend(edge.target for edge in graph.outgoing(current))
    return ""


class ParallelHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        branches = [edge.target for edge in graph.outgoing(node.id)]
        if not branches:
            raise TerminalError(f"parallel node '{node.id}' has no outgoing edges to fan out to")
        policy = str(node.attrs.get("join_policy", "wait_all"))
        if policy not in ("wait_all", "first_success"):
            raise TerminalError(
                f"parallel node '{node.id}': join_policy '{policy}' is not "
                "wait_all or first_success"
            )
        limit = max(int(str(node.attrs.get("max_parallel", 4))), 1)
        recorded = stage.recorded.get("branch", {})
        # Results this execution recorded before a crash are kept; a retry runs all anew.
        results: dict[str, dict[str, Any]] = {
            target: dict(data)
            for target, data in recorded.items()
            if target in branches and data.get("execution") == stage.execution
        }
        kept = _kept_results(node, context, branches)
        for target, data in kept.items():
            results.setdefault(target, data)
        if stage.workspaces is not None:
            await stage.workspaces.fork(node.id, stage.branch, branches, keep=list(results))
        started = time.monotonic()
        await stage.emit(
            ParallelStarted(
                session_id=stage.session_id,
                node_id=node.id,
                branch_count=len(branches),
                branches=tuple(branches),
                kept=tuple(kept),
            )
        )
        to_run = sum(target not in results for target in branches)
        # A limiter that could never make a branch wait would only add a pass through the
        # event loop to every branch's start.
        limiter = anyio.CapacityLimiter(limit) if limit < to_run else None
        fan_out = _FanOut(node, context, stage, policy, limiter, results)
        finished, to_keep = anyio.create_memory_object_stream[_Finished](math.inf)
        async with anyio.create_task_group() as keeper:
            keeper.start_soon(_keep_results, to_keep, stage)
            async with finished:
                await fan_out.run(branches, finished)

        ordered = [results[t] for t in branches if t in results]
        successes = sum(r["outcome"] in ("success", "partial_success") for r in ordered)
        failures = sum(r["outcome"] == "fail" for r in ordered)
        await stage.emit(
            ParallelCompleted(
                session_id=stage.session_id,
                node_id=node.id,
                duration=time.monotonic() - started,
                success_count=successes,
                failure_count=failures,
            )
        )
        ran = [r for r in ordered if r["id"] not in kept]
        updates: dict[str, Any] = {
            # what the branches' LLM stages spent, so the fan-out's checkpoint counts it
            **{key: value for r in ran for key, value in (r.get("usage") or {}).items()},
            "parallel.results": ordered,
            "parallel.success_count": successes,
            "parallel.failure_count": failures,
            "parallel.join_node": find_join(graph, node),
        }
        if policy == "first_success":
            status = StageStatus.SUCCESS if successes else StageStatus.FAIL
        else:
            status = StageStatus.SUCCESS if failures == 0 else StageStatus.PARTIAL_SUCCESS
        notes = f"{successes} of {len(branches)} branches succeeded"
        if kept:
            updates[str(node.attrs["rerun_only"]).strip()] = ""  # used: a later round starts afresh
            notes += f"; {', '.join(kept)} kept from the round before"
        return Outcome(
            status,
            context_updates=updates,
            notes=notes,
            failure_reason="" if status.is_success else "no branch succeeded",
        )


def _kept_results(node: Node, context: Context, branches: list[str]) -> dict[str, dict[str, Any]]:
    """With ``rerun_only="KEY"`` on a fan-out that ran before: the results of the branches
    that the context key KEY does not list (ids, comma-separated or a list), kept from the
    last round instead of run again. {} when KEY is unset or empty, names none of the
    branches, or there is no earlier round of this fan-out."""
    key = str(node.attrs.get("rerun_only") or "").strip()
    if not key:
        return {}
    listed = context.get(key)
    if isinstance(listed, str):
        wanted = {name.strip() for name in listed.replace(",", " ").split()}
    elif isinstance(listed, list | tuple):
        wanted = {str(name).strip() for name in listed}
    else:
        wanted = set()
    if not wanted & set(branches):
        return {}
    earlier = context.get("parallel.results") or []
    previous = {str(r.get("id")): r for r in earlier if isinstance(r, Mapping)}
    if set(previous) != set(branches):  # another fan-out's results, or none yet
        return {}
    return {
        target: dict(previous[target])
        for target in branches
        if target not in wanted and previous[target].get("outcome") != "fail"
    }


class _FanOut:
    """The branches of one parallel node, run in a task group under a capacity limiter."""

    def __init__(
        self,
        node: Node,
        context: Context,
        stage: StageRun,
        policy: str,
        limiter: anyio.CapacityLimiter | None,
        results: dict[str, dict[str, Any]],
    ) -> None:
        self.node = node
        self.context = context
        self.stage = stage
        self.policy = policy
        self.limiter = limiter
        self.results = results

    async def run(self, branches: list[str], finished: MemoryObjectSendStream[_Finished]) -> None:
        async with anyio.create_task_group() as group:
            if self.policy == "first_success" and any(
                r["outcome"] in ("success", "partial_success") for r in self.results.values()
            ):
                return
            for index, target in enumerate(branches):
                if target not in self.results:
                    group.start_soon(self._branch, index, target, group, finished)

    async def _branch(
        self,
        index: int,
        target: str,
        group: anyio.abc.TaskGroup,
        finished: MemoryObjectSendStream[_Finished],
    ) -> None:
        if self.limiter is None:
            await self._run_branch(index, target, group, finished)
        else:
            async with self.limiter:
                await self._run_branch(index, target, group, finished)

    async def _run_branch(
        self,
        index: int,
        target: str,
        group: anyio.abc.TaskGroup,
        finished: MemoryObjectSendStream[_Finished],
    ) -> None:
        stage = self.stage
        await stage.emit(
            ParallelBranchStarted(
                session_id=stage.session_id, node_id=self.node.id, branch=target, index=index
            )
        )
        began = time.monotonic()
        usage: dict[str, Any] = {}
        executions: dict[str, int] = {}
        try:
            result = await stage.run_branch(target, self.context.clone(), target)
            outcome, completed = result.outcome, list(result.completed_nodes)
            usage, executions = dict(result.usage), dict(result.executions)
        except Exception as err:  # one branch's crash is that branch's failure
            outcome, completed = Outcome.fail(f"{type(err).__name__}: {err}"), []
        data = {
            "id": target,
            "execution": stage.execution,
            "outcome": outcome.status.value,
            "notes": outcome.notes,
            "failure_reason": outcome.failure_reason,
            "preferred_label": outcome.preferred_label,
            "completed_nodes": completed,
            "context_updates": dict(outcome.context_updates),
            "usage": dict(usage),
            "executions": executions,
        }
        if stage.workspaces is not None:
            data["workspace"] = dict(stage.workspaces.heads_of(target))
        self.results[target] = data
        durable = anyio.Event()
        finished.send_nowait((target, data, durable))
        with anyio.CancelScope(shield=True):
            await durable.wait()  # recorded before this branch's slot is given up
        await stage.emit(
            ParallelBranchCompleted(
                session_id=stage.session_id,
                node_id=self.node.id,
                branch=target,
                index=index,
                duration=time.monotonic() - began,
                success=outcome.status.is_success,
                status=outcome.status.value,
            )
        )
        if self.policy == "first_success" and outcome.status.is_success:
            group.cancel_scope.cancel()


async def _keep_results(finished: MemoryObjectReceiveStream[_Finished], stage: StageRun) -> None:
    """Record finished branches, batching those that finish together into one turn, so a
    wide fan-out does not queue one store write per branch; each branch waits for its own."""
    async with finished:
        async for target, data, durable in finished:
            batch = {target: data}
            waiting = [durable]
            while True:
                try:
                    more, more_data, more_durable = finished.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                batch[more] = more_data
                waiting.append(more_durable)
            if stage.record is not None:
                with anyio.CancelScope(shield=True):
                    await stage.record("branch", batch)
            for event in waiting:
                event.set()


class FanInHandler:
    """Picks the best branch: by outcome (success first), then by branch id; with a
    ``prompt``, the model ranks them and writes the fan-in's response, a merge of them, say
    (§4.9). In a git workspace, first merges the branches that succeeded."""

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        results = context.get("parallel.results") or []
        if not results:
            return Outcome.fail(
                "no parallel results to consolidate: the fan-in was reached "
                "without a parallel node before it"
            )
        conflicts: Mapping[str, Mapping[str, str]] = {}
        if stage.workspaces is not None:
            merged = sorted(
                str(r["id"]) for r in results if r.get("outcome") in ("success", "partial_success")
            )
            conflicts = await stage.workspaces.merge(node.id, stage.branch, merged)
        best = min(results, key=lambda r: (_RANK.get(str(r.get("outcome")), 9), str(r["id"])))
        if best.get("outcome") == "fail":
            return Outcome.fail(
                "every parallel branch failed",
                context_updates={
                    "parallel.fan_in.best_id": best["id"],
                    "parallel.fan_in.best_outcome": "fail",
                },
            )
        judged: Outcome | None = None
        if node.prompt.strip():  # §4.9: the model ranks the candidates
            judged = await _evaluate(node, context, graph, stage, results)
            if not judged.status.is_success:
                return judged  # the model could not be asked: RETRY or FAIL
            chosen = judged.preferred_label.strip()
            best = next((r for r in results if str(r["id"]) == chosen), best)
        updates = {
            **(judged.context_updates if judged is not None else {}),
            "parallel.fan_in.best_id": best["id"],
            "parallel.fan_in.best_outcome": best["outcome"],
        }
        how = " (ranked by the model)" if judged is not None else ""
        if conflicts:
            files = sum(len(found) for found in conflicts.values())
            return Outcome(
                StageStatus.PARTIAL_SUCCESS,
                notes=f"merge conflicts in {files} file(s); the conflicting branches' "
                "worktrees are kept",
                context_updates={
                    **updates,
                    "parallel.merge_conflicts": {k: dict(v) for k, v in conflicts.items()},
                },
            )
        return Outcome.success(
            f"selected best candidate: {best['id']}{how}", context_updates=updates
        )


#: how much of each candidate's response the fan-in's model is shown
CANDIDATE_CHARS = 20_000


async def _evaluate(
    node: Node, context: Context, graph: Graph, stage: StageRun, results: list[dict[str, Any]]
) -> Outcome:
    """Ask the node's backend to rank the branches' results: the node's prompt, then each
    candidate's response (its last stage's ``response.md``); the model names the best in
    its status block's ``preferred_label``, and its answer is the fan-in's response."""
    from orchestra.handlers.codergen import ask_backend, render_node_prompt

    prompt = render_node_prompt(node, context, graph, stage)
    ids = [str(r["id"]) for r in results]
    shown = "\n\n".join(_candidate(stage, r) for r in results)
    question = (
        f"{prompt}\n\n## The candidates, one per parallel branch\n\n{shown}\n\n"
        f"In your status block, set preferred_label to the id of the best candidate: one of "
        f"{', '.join(ids)}."
    )
    return await ask_backend(node, question, context, stage)


def _candidate(stage: StageRun, result: Mapping[str, Any]) -> str:
    completed = list(result.get("completed_nodes") or ())
    text = ""
    if completed:
        path = stage.logs_root / str(completed[-1]) / "response.md"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    if not text:
        updates = result.get("context_updates") or {}
        text = str(updates.get("last_response") or result.get("notes") or "")
    if len(text) > CANDIDATE_CHARS:
        text = text[:CANDIDATE_CHARS] + "\n… (cut)"
    head = f"### {result['id']} ({result.get('outcome')})"
    if result.get("failure_reason"):
        head += f": {result['failure_reason']}"
    return f"{head}\n\n{text.strip() or '(no response)'}"
