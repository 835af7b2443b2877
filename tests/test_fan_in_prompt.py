"""A fan-in with a prompt (spec §4.9): the model ranks the branches' results and writes the
fan-in's response; and response('NODE') in a prompt, a stage's whole answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from orchestra.outcome import Outcome, StageStatus
from orchestra.pipeline import Pipeline
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import ScriptedBackend

REVIEW = """
digraph review {
    start [shape=Mdiamond]; exit [shape=Msquare]
    fan   [shape=component]
    a     [prompt="review a"]
    b     [prompt="review b"]
    c     [prompt="review c"]
    join  [shape=tripleoctagon, prompt="Merge the reviews, best first."]
    after [prompt="Check this: {{ response('join') }}"]
    start -> fan
    fan -> a -> join
    fan -> b -> join
    fan -> c -> join
    join -> after -> exit
}
"""

LONG = "finding: " + "x" * 400


async def test_the_model_ranks_the_candidates(tmp_path: Path, store: EmbeddedStore) -> None:
    """The fan-in's model sees its prompt and every branch's whole response; the id it
    names becomes best_id; its answer is the fan-in's response, whole in the next prompt."""
    merged = "Merged: b first. " + "y" * 300
    backend = ScriptedBackend(
        {
            "a": ["review A"],
            "b": [LONG],
            "c": ["review C"],
            "join": [
                Outcome(
                    StageStatus.SUCCESS,
                    preferred_label="b",
                    context_updates={"last_response": merged},
                )
            ],
        }
    )
    result = await Pipeline.load(
        REVIEW, store=store, backend=backend, logs_root=tmp_path / "run"
    ).run()

    assert result.succeeded, result.failure_reason
    asked = dict(backend.prompts)["join"]
    assert asked.startswith("Merge the reviews, best first.")
    assert "### b (success)" in asked
    assert LONG in asked  # the whole response, not last_response's 200 characters
    assert "one of a, b, c" in asked
    assert result.context["parallel.fan_in.best_id"] == "b"
    assert (tmp_path / "run" / "join" / "response.md").read_text() == merged
    assert dict(backend.prompts)["after"] == f"Check this: {merged}"


async def test_without_a_named_candidate_the_heuristic_decides(
    tmp_path: Path, store: EmbeddedStore
) -> None:
    """A model that names no candidate (or one that is not there): the best by outcome,
    then id, as without a prompt."""
    backend = ScriptedBackend({"a": [Outcome.fail("broken")], "join": ["all fine"]})
    result = await Pipeline.load(
        REVIEW.replace("{{ response('join') }}", "it"),
        store=store,
        backend=backend,
        logs_root=tmp_path / "run",
    ).run()
    assert result.succeeded
    assert result.context["parallel.fan_in.best_id"] == "b"
    assert "### a (fail): broken" in dict(backend.prompts)["join"]


async def test_response_of_a_stage_that_has_not_run_is_a_clear_error(
    tmp_path: Path, store: EmbeddedStore
) -> None:
    source = """
    digraph g {
        start [shape=Mdiamond]; exit [shape=Msquare]
        first [prompt="Use {{ response('later') }}"]
        later [prompt="x"]
        start -> first -> later -> exit
    }
    """
    result = await Pipeline.load(
        source, store=store, backend=ScriptedBackend(), logs_root=tmp_path / "run"
    ).run()
    assert not result.succeeded
    assert "response('later'): stage 'later' has no response yet" in result.failure_reason


LOOP = """
digraph loop {
    start  [shape=Mdiamond]; exit [shape=Msquare]
    fan    [shape=component, rerun_only="redo"]
    a      [prompt="review a"]
    b      [prompt="review b"]
    c      [prompt="review c"]
    join   [shape=tripleoctagon]
    critic [prompt="judge"]
    gate   [shape=diamond]
    start -> fan
    fan -> a -> join
    fan -> b -> join
    fan -> c -> join
    join -> critic -> gate
    gate -> fan  [condition="context.verdict=insufficient", max_visits=3]
    gate -> exit
}
"""


def critic_says(verdict: str, redo: str = "") -> Outcome:
    updates = {"verdict": verdict, **({"redo": redo} if redo else {})}
    return Outcome(StageStatus.SUCCESS, context_updates=updates)


class TestRerunOnly:
    async def test_only_the_named_branches_run_again(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The critic names b: the next round runs b alone, a and c keep their results;
        the key is cleared once used."""
        backend = ScriptedBackend(
            {
                "b": ["b, first try", "b, second try"],
                "critic": [critic_says("insufficient", "b"), critic_says("sufficient")],
            }
        )
        result = await Pipeline.load(
            LOOP, store=store, backend=backend, logs_root=tmp_path / "run"
        ).run()

        assert result.succeeded, result.failure_reason
        ran = [node for node, _ in backend.prompts]
        assert ran.count("a") == 1
        assert ran.count("b") == 2
        assert ran.count("c") == 1
        by_id = {r["id"]: r for r in result.context["parallel.results"]}
        assert by_id["b"]["context_updates"]["last_response"] == "b, second try"
        assert by_id["a"]["context_updates"]["last_response"] == "response of a"
        assert result.context["redo"] == ""
        assert "a, c kept from the round before" in result.node_outcomes["fan"]["notes"]

    async def test_without_names_every_branch_runs_again(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A critic naming none of the branches (or nothing): the whole round again."""
        backend = ScriptedBackend(
            {"critic": [critic_says("insufficient", "nobody"), critic_says("sufficient")]}
        )
        result = await Pipeline.load(
            LOOP, store=store, backend=backend, logs_root=tmp_path / "run"
        ).run()
        assert result.succeeded
        ran = [node for node, _ in backend.prompts]
        assert (ran.count("a"), ran.count("b"), ran.count("c")) == (2, 2, 2)


class Probe:
    """A branch node keeping a record per execution; on ``stop_at`` it stops the run (as
    a crash would) after recording."""

    def __init__(self, scope: Any = None, stop_at: int = 0) -> None:
        self.scope = scope
        self.stop_at = stop_at
        self.seen: list[tuple[int, list[str]]] = []

    async def execute(self, node: Any, context: Any, graph: Any, stage: Any) -> Outcome:
        self.seen.append((stage.execution, sorted(stage.recorded.get("probe", {}))))
        if stage.record is not None:
            await stage.record("probe", {str(stage.execution): True})
        if stage.execution == self.stop_at and self.scope is not None:
            self.scope.cancel()
            await anyio.sleep_forever()
        return Outcome.success("probed")


async def test_a_branch_node_resumed_in_a_later_round_keeps_its_execution_number(
    tmp_path: Path, store: EmbeddedStore
) -> None:
    """Stopped in the second round of a fan-out loop, a branch node resumes as execution 2
    with only that execution's records, not the first round's."""
    from orchestra.handlers import default_registry

    source = LOOP.replace('b      [prompt="review b"]', 'b      [type="probe"]')
    scope = anyio.CancelScope()
    first = Probe(scope, stop_at=2)
    registry = default_registry()
    registry.register("probe", first)
    backend = ScriptedBackend({"critic": [critic_says("insufficient", "b")]})
    pipeline = Pipeline.load(
        source, store=store, backend=backend, handlers=registry, logs_root=tmp_path / "run"
    )
    with scope:
        await pipeline.run()
    assert first.seen == [(1, []), (2, [])]
    assert pipeline.session_id is not None

    second = Probe()
    registry = default_registry()
    registry.register("probe", second)
    from orchestra.pipeline import resume

    backend = ScriptedBackend({"critic": [critic_says("sufficient")]})
    result = await resume(pipeline.session_id, store=store, backend=backend, handlers=registry)
    assert result.succeeded, result.failure_reason
    assert second.seen == [(2, ["2"])]
