"""Context fidelity (spec §5.4): modes, resolution of mode and thread, and the preamble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pipelines import dot

from orchestra.backends.fidelity import (
    DEFAULT_FIDELITY,
    FIDELITY_MODES,
    Fidelity,
    StageSummary,
    build_preamble,
    degrade_after_resume,
    resolve_fidelity,
    resolve_thread,
)
from orchestra.dot import parse_dot
from orchestra.graph import Edge, Graph
from orchestra.validation import rules

CORPUS = Path(__file__).resolve().parent / "corpus" / "dot"
SUMMARY_MODES = ("summary:low", "summary:medium", "summary:high")
BOUNDED_MODES = ("truncate", "compact", *SUMMARY_MODES)


def edge(graph: Graph, source: str, target: str) -> Edge:
    """The first edge from ``source`` to ``target``."""
    return next(e for e in graph.outgoing(source) if e.target == target)


def fidelity_of(source: str, node_id: str, via: str | None) -> str:
    """The fidelity resolved for ``node_id`` entered from ``via`` (None: no edge)."""
    graph = parse_dot(dot(source))
    incoming = edge(graph, via, node_id) if via else None
    return str(resolve_fidelity(graph.nodes[node_id], incoming, graph))


def thread_of(source: str, node_id: str, via: str) -> str:
    """The thread key for ``node_id`` entered from ``via``."""
    graph = parse_dot(dot(source))
    return resolve_thread(graph.nodes[node_id], edge(graph, via, node_id), graph, via)


def preamble(mode: str, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "goal": "Ship the login page",
        "run_id": "run-42",
        "stages": STAGES,
        "context": CONTEXT,
    }
    arguments.update(overrides)
    return build_preamble(Fidelity.parse(mode), **arguments)


STAGES = (
    StageSummary(
        "plan",
        "success",
        notes="planned three steps",
        preferred_label="approve",
        response="Step one: write the form.",
        tool_calls=("read_file src/login.py",),
        files=("PLAN.md",),
    ),
    StageSummary("build", "fail", notes="ran pytest", failure_reason="2 tests failed"),
    StageSummary("fix", "retry", notes="patched the validator"),
)

CONTEXT: dict[str, Any] = {
    "graph.goal": "Ship the login page",
    "graph.label": "Login",
    "internal.retry_count.plan": 1,
    "outcome": "retry",
    "preferred_label": "",
    "current_node": "fix",
    "last_stage": "fix",
    "last_response": "patched",
    "usage.plan.input_tokens": 1234,
    "tests.failing": ["test_login", "test_logout"],
    "review.approved": True,
    "branch": "feature/login",
}


class TestFidelityModes:
    def test_every_spec_mode_parses_and_prints_back(self) -> None:
        """Each of the six modes of §5.4 parses, and prints as it is written."""
        assert [str(Fidelity.parse(mode)) for mode in FIDELITY_MODES] == list(FIDELITY_MODES)

    def test_modes_match_the_lint_rule(self) -> None:
        """The modes accepted at run time are the ones the fidelity_valid rule accepts."""
        assert tuple(FIDELITY_MODES) == tuple(rules.FIDELITY_MODES)

    def test_summary_splits_into_mode_and_level(self) -> None:
        """summary:medium is mode summary with level medium; other modes have no level."""
        assert Fidelity.parse("summary:medium") == Fidelity("summary", "medium")
        assert Fidelity.parse("compact").level is None

    def test_case_and_spaces_are_ignored(self) -> None:
        """'Compact' (as a conformance pipeline writes it) and ' full ' are read as modes."""
        assert Fidelity.parse("Compact") == Fidelity("compact")
        assert Fidelity.parse(" full ") == Fidelity("full")
        assert Fidelity.parse("SUMMARY:High") == Fidelity("summary", "high")

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "empty fidelity mode"),
            ("   ", "empty fidelity mode"),
            ("summary", "needs a level"),
            ("sumary:high", "did you mean 'summary:high'"),
            ("summary:extreme", "expected one of full, truncate, compact"),
            ("verbose", "unknown fidelity mode 'verbose'"),
        ],
    )
    def test_bad_mode_is_a_value_error_that_helps(self, text: str, message: str) -> None:
        """A bad mode raises ValueError listing the modes, with a close match when any."""
        with pytest.raises(ValueError, match=message):
            Fidelity.parse(text)

    @pytest.mark.parametrize(
        ("mode", "level"),
        [("summary", None), ("compact", "low"), ("summary", "huge"), ("verbose", None)],
    )
    def test_inconsistent_fidelity_cannot_be_built(self, mode: Any, level: Any) -> None:
        """summary needs a level, the other modes take none, and the mode must exist."""
        with pytest.raises(ValueError):  # noqa: PT011  (attrs' own message for the mode)
            Fidelity(mode, level)

    def test_budgets_grow_with_the_summary_level(self) -> None:
        """Summary budgets follow §5.4 (~600, ~1500, ~3000 tokens); full has none."""
        budgets = {mode: Fidelity.parse(mode).budget_tokens for mode in FIDELITY_MODES}
        assert budgets == {
            "full": None,
            "truncate": 200,
            "compact": 1000,
            "summary:low": 600,
            "summary:medium": 1500,
            "summary:high": 3000,
        }

    def test_resume_degrades_full_to_summary_high(self) -> None:
        """§5.3: the hop after a resume turns full into summary:high and keeps other modes."""
        assert degrade_after_resume(Fidelity("full")) == Fidelity("summary", "high")
        for mode in FIDELITY_MODES[1:]:
            assert degrade_after_resume(Fidelity.parse(mode)) == Fidelity.parse(mode)


PRECEDENCE = """
    digraph G {
        graph [goal="g", default_fidelity="summary:low"]
        start [shape=Mdiamond]
        exit [shape=Msquare]
        own [fidelity="truncate"]
        plain
        start -> own [fidelity="full"]
        start -> plain
        own -> plain [fidelity="summary:high"]
        plain -> own
        own -> exit
    }
"""


class TestResolveFidelity:
    def test_edge_beats_node(self) -> None:
        """The incoming edge's fidelity wins over the node's own."""
        assert fidelity_of(PRECEDENCE, "own", via="start") == "full"

    def test_node_beats_graph_default(self) -> None:
        """Without an edge fidelity, the node's own wins over the graph default."""
        assert fidelity_of(PRECEDENCE, "own", via="plain") == "truncate"

    def test_edge_beats_graph_default(self) -> None:
        """An edge fidelity also wins over the graph default on a node with none."""
        assert fidelity_of(PRECEDENCE, "plain", via="own") == "summary:high"

    def test_graph_default_applies_to_a_node_without_one(self) -> None:
        """A node and edge without fidelity get the graph's default_fidelity."""
        assert fidelity_of(PRECEDENCE, "plain", via="start") == "summary:low"

    def test_compact_when_nothing_is_set(self) -> None:
        """With no fidelity anywhere, the mode is compact."""
        source = "digraph G { start [shape=Mdiamond]; a; start -> a }"
        assert fidelity_of(source, "a", via="start") == "compact"
        assert Fidelity("compact") == DEFAULT_FIDELITY

    def test_without_an_edge_the_node_decides(self) -> None:
        """For a node entered without an edge (a resume), the node's own mode applies."""
        assert fidelity_of(PRECEDENCE, "own", via=None) == "truncate"
        assert fidelity_of(PRECEDENCE, "plain", via=None) == "summary:low"

    def test_subgraph_defaults_count_as_the_nodes_own(self) -> None:
        """A mode from a subgraph's node [...] defaults is the node's own (brynary's factory)."""
        graph = parse_dot(CORPUS / "brynary-attractor/pipelines/factory/implement.dot")
        plan = graph.nodes["plan"]
        assert str(resolve_fidelity(plan, edge(graph, "strategy", "plan"), graph)) == "full"

    def test_invalid_value_falls_through_to_the_next(self) -> None:
        """A value that is not a mode counts as unset: the lint warns, the next level applies."""
        source = """
            digraph G {
                graph [default_fidelity="summary:medium"]
                start [shape=Mdiamond]
                a [fidelity="verbose"]
                b [fidelity="truncate"]
                start -> a
                start -> b [fidelity="sumary"]
            }
        """
        assert fidelity_of(source, "a", via="start") == "summary:medium"
        assert fidelity_of(source, "b", via="start") == "truncate"

    def test_conformance_pipeline_writes_compact_capitalised(self) -> None:
        """fkyeah's 08-fidelity-compact writes fidelity="Compact" on the edge; it is compact."""
        path = CORPUS / "fkyeah-conformance-newer/04-context/08-fidelity-compact/pipeline.dot"
        graph = parse_dot(path)
        sink = graph.nodes["sink"]
        assert resolve_fidelity(sink, edge(graph, "gen", "sink"), graph) == Fidelity("compact")


THREADS = """
    digraph G {
        graph [context_thread_default="whole-run"]
        start [shape=Mdiamond]
        subgraph cluster_loop {
            label="Review Loop"
            owned [thread_id="mine"]
            classed
        }
        start -> owned [thread_id="from-edge"]
        start -> classed [thread_id="from-edge"]
        owned -> classed
    }
"""

NO_GRAPH_THREAD = """
    digraph G {
        start [shape=Mdiamond]
        subgraph cluster_loop {
            label="Review Loop"
            classed [class="fast"]
        }
        loose [class="fast"]
        start -> classed
        start -> loose
        classed -> loose
    }
"""


class TestResolveThread:
    def test_node_thread_beats_edge_thread(self) -> None:
        """The node's thread_id wins over the incoming edge's."""
        assert thread_of(THREADS, "owned", via="start") == "mine"

    def test_edge_thread_beats_graph_default(self) -> None:
        """Without a node thread_id, the edge's wins over the graph's default thread."""
        assert thread_of(THREADS, "classed", via="start") == "from-edge"

    def test_graph_default_thread_beats_subgraph_class(self) -> None:
        """The graph's context_thread_default wins over the subgraph's derived class."""
        assert thread_of(THREADS, "classed", via="owned") == "whole-run"

    def test_subgraph_class_beats_previous_node(self) -> None:
        """Without a graph default, the class derived from the subgraph label is the key."""
        assert thread_of(NO_GRAPH_THREAD, "classed", via="start") == "review-loop"

    def test_previous_node_is_the_fallback(self) -> None:
        """A node outside any subgraph, with nothing set, continues the previous node's id."""
        assert thread_of(NO_GRAPH_THREAD, "loose", via="classed") == "classed"

    def test_explicit_class_is_not_a_thread(self) -> None:
        """Only a class derived from a subgraph counts, not one written in class=."""
        graph = parse_dot(dot(NO_GRAPH_THREAD))
        assert graph.nodes["loose"].classes == ("fast",)
        assert resolve_thread(graph.nodes["loose"], None, graph, "start") == "start"

    def test_innermost_subgraph_names_the_thread(self) -> None:
        """In nested subgraphs, the enclosing (innermost) one's class is the key."""
        source = """
            digraph G {
                start [shape=Mdiamond]
                subgraph cluster_outer {
                    label="Outer Phase"
                    subgraph cluster_inner { label="Inner Loop"; a }
                }
                start -> a
            }
        """
        assert thread_of(source, "a", via="start") == "inner-loop"

    def test_subgraph_thread_default_is_the_nodes_own(self) -> None:
        """brynary's implement loop sets thread_id in node [...]: every stage shares 'impl'."""
        graph = parse_dot(CORPUS / "brynary-attractor/pipelines/factory/implement.dot")
        keys = {
            resolve_thread(graph.nodes[n], graph.incoming(n)[0], graph, "x")
            for n in ("plan", "implement", "review", "validate", "fix")
        }
        assert keys == {"impl"}

    def test_kilroy_graph_default_thread(self) -> None:
        """kilroy's consensus_task sets context_thread_default on the graph."""
        graph = parse_dot(CORPUS / "kilroy/docs/strongdm/dot specs/consensus_task.dot")
        node = graph.nodes["CheckDoD"]
        assert resolve_thread(node, graph.incoming("CheckDoD")[0], graph, "x") == ("consensus-task")


class TestFull:
    def test_full_has_no_preamble(self) -> None:
        """full reuses the session, so there is nothing to prepend."""
        assert preamble("full") == ""


class TestTruncate:
    def test_only_goal_and_run_id(self) -> None:
        """truncate carries the goal and the run id, no stage and no context value."""
        text = preamble("truncate")
        assert "Ship the login page" in text
        assert "run-42" in text
        for absent in ("plan", "build", "2 tests failed", "feature/login", "test_login"):
            assert absent not in text

    def test_no_goal_line_without_a_goal(self) -> None:
        """An empty goal is left out rather than shown empty."""
        assert preamble("truncate", goal="") == "Run ID: run-42"


class TestCompact:
    def test_stages_are_bullets_with_their_outcome(self) -> None:
        """Each stage is a bullet with its status, chosen label, and reason or notes."""
        lines = preamble("compact").splitlines()
        assert '- plan: success (chose "approve") - planned three steps' in lines
        assert "- build: fail - 2 tests failed" in lines
        assert "- fix: retry - patched the validator" in lines

    def test_stages_keep_their_order(self) -> None:
        """Stages are listed oldest first, as they ran."""
        text = preamble("compact")
        assert text.index("- plan:") < text.index("- build:") < text.index("- fix:")

    def test_context_values_are_sorted_bullets(self) -> None:
        """Shown context values are bullets in key order, non-strings as JSON."""
        lines = preamble("compact").splitlines()
        values = lines[lines.index("Context values:") + 1 :]
        assert values == [
            "- branch: feature/login",
            "- review.approved: true",
            '- tests.failing: ["test_login", "test_logout"]',
        ]

    def test_no_responses_tool_calls_or_files(self) -> None:
        """compact leaves out response text, tool calls and files."""
        text = preamble("compact")
        for absent in ("write the form", "read_file", "PLAN.md"):
            assert absent not in text

    def test_internal_graph_usage_and_stage_keys_are_hidden(self) -> None:
        """graph.*, internal.*, usage.* and the per-stage engine keys are not shown."""
        text = preamble("compact")
        for absent in ("graph.", "internal.", "usage.", "last_response", "current_node"):
            assert absent not in text
        assert "- outcome:" not in text


class TestSummary:
    def test_counts_outcomes(self) -> None:
        """Every summary level opens with how many stages ran and how they ended."""
        for mode in SUMMARY_MODES:
            assert "3 stages have run: 1 succeeded, 1 asked to retry, 1 failed." in preamble(mode)

    def test_no_stages_yet(self) -> None:
        """Before any stage, the summary says so."""
        assert "No stages have run yet." in preamble("summary:low", stages=())

    def test_unknown_status_is_told_as_written(self) -> None:
        """A status outside the spec's five is counted and told as written."""
        text = preamble("summary:low", stages=(StageSummary("a", "needs_dod"),))
        assert "1 stage has run: 1 ended 'needs_dod'." in text
        assert "a ended with status 'needs_dod'." in text

    def test_low_is_brief(self) -> None:
        """summary:low tells outcomes, reasons and notes, not responses, files or tools."""
        text = preamble("summary:low")
        assert 'plan succeeded and chose "approve". Notes: planned three steps.' in text
        assert "build failed. Reason: 2 tests failed. Notes: ran pytest." in text
        for absent in ("write the form", "PLAN.md", "read_file", "usage."):
            assert absent not in text

    def test_low_keeps_the_last_five_stages(self) -> None:
        """summary:low names only the five most recent stages and counts the rest."""
        stages = [StageSummary(f"stage{i:02}", "success") for i in range(8)]
        text = preamble("summary:low", stages=stages)
        assert "(3 earlier stages not shown)" in text
        assert "stage02 succeeded" not in text
        assert all(f"stage{i:02} succeeded" in text for i in range(3, 8))
        assert "8 stages have run: 8 succeeded." in text

    def test_medium_adds_responses_and_files(self) -> None:
        """summary:medium adds response excerpts and files, still no tool calls."""
        text = preamble("summary:medium")
        assert 'Response: "Step one: write the form."' in text
        assert "Files: PLAN.md." in text
        assert "read_file" not in text
        assert "usage." not in text

    def test_high_adds_tool_calls_and_usage(self) -> None:
        """summary:high adds tool calls and the usage.* values."""
        text = preamble("summary:high")
        assert "Tool calls: read_file src/login.py." in text
        assert "usage.plan.input_tokens = 1234" in text

    def test_context_values_in_key_order(self) -> None:
        """Context values are shown as key = value, sorted, hidden keys left out."""
        lines = preamble("summary:medium").splitlines()
        assert lines[lines.index("Context values:") + 1 :] == [
            "branch = feature/login",
            "review.approved = true",
            'tests.failing = ["test_login", "test_logout"]',
        ]

    def test_multiline_values_stay_on_one_line(self) -> None:
        """Newlines in notes and values are folded, so each stage and value is one line."""
        text = preamble(
            "summary:high",
            stages=(StageSummary("a", "success", notes="one\ntwo"),),
            context={"k": "x\n\ny"},
        )
        assert "Notes: one two." in text
        assert "k = x y" in text

    def test_long_values_are_cut_longer_at_higher_levels(self) -> None:
        """A long value is cut with an ellipsis; higher levels keep more of it."""
        shown = {}
        for mode in ("compact", *SUMMARY_MODES):
            text = preamble(mode, context={"tool.output": "X" * 5000})
            line = next(line for line in text.splitlines() if "tool.output" in line)
            assert line.endswith("…")
            shown[mode] = line.count("X")
        assert shown["summary:low"] < shown["summary:medium"] < shown["summary:high"]


def huge_stages(count: int = 500) -> list[StageSummary]:
    return [
        StageSummary(
            f"stage{i:03}",
            ("success", "fail", "retry")[i % 3],
            notes="note " * 200,
            failure_reason="reason " * 200,
            preferred_label="label " * 50,
            response="response " * 500,
            tool_calls=tuple(f"shell: command {j} " * 10 for j in range(30)),
            files=tuple(f"src/file{j}.py" for j in range(40)),
        )
        for i in range(count)
    ]


def huge_context(count: int = 1000) -> dict[str, Any]:
    values: dict[str, Any] = {f"key{i:04}": "value " * 300 for i in range(count)}
    values.update({f"usage.stage{i:03}.input_tokens": i for i in range(300)})
    values["parallel.results"] = [{"id": i, "notes": "n" * 100} for i in range(200)]
    return values


class TestBudgets:
    @pytest.mark.parametrize("mode", BOUNDED_MODES)
    def test_budget_holds_for_a_huge_run(self, mode: str) -> None:
        """500 stages, 1300 context keys and a long goal stay within ~4 chars per token."""
        fidelity = Fidelity.parse(mode)
        text = build_preamble(
            fidelity,
            goal="goal " * 2000,
            run_id="r" * 1000,
            stages=huge_stages(),
            context=huge_context(),
        )
        assert fidelity.budget_tokens is not None
        assert len(text) <= fidelity.budget_tokens * 4
        assert len(text) > fidelity.budget_tokens * 4 * 0.5, "the budget should be used"

    @pytest.mark.parametrize("mode", ["compact", *SUMMARY_MODES])
    def test_oldest_stages_go_first(self, mode: str) -> None:
        """Over budget, the newest stage stays and the oldest is dropped, with a count."""
        text = preamble(mode, stages=huge_stages(), context=huge_context())
        assert "stage499" in text
        assert "stage000" not in text
        assert "earlier stages not shown)" in text

    @pytest.mark.parametrize("mode", ["compact", *SUMMARY_MODES])
    def test_context_is_trimmed_in_key_order(self, mode: str) -> None:
        """Over budget, the first keys in order are kept and the rest counted."""
        text = preamble(mode, stages=huge_stages(), context=huge_context())
        assert "key0000" in text
        assert "key0999" not in text
        assert "more context values not shown)" in text

    def test_context_gets_the_room_stages_leave(self) -> None:
        """With few stages, context values may use the rest of the budget."""
        text = preamble("summary:high", stages=STAGES[:1], context=huge_context())
        assert text.count("key0") > 20

    def test_stages_get_the_room_context_leaves(self) -> None:
        """With no context values, stages may use the whole budget."""
        text = preamble("compact", stages=huge_stages(), context={})
        assert len(text) > 3000

    @settings(max_examples=60, deadline=None)
    @given(
        mode=st.sampled_from(BOUNDED_MODES),
        goal=st.text(max_size=3000),
        run_id=st.text(max_size=300),
        stages=st.lists(
            st.builds(
                StageSummary,
                node_id=st.text(max_size=200),
                status=st.text(max_size=100),
                notes=st.text(max_size=1000),
                failure_reason=st.text(max_size=1000),
                preferred_label=st.text(max_size=300),
                response=st.text(max_size=2000),
                tool_calls=st.lists(st.text(max_size=200), max_size=20),
                files=st.lists(st.text(max_size=200), max_size=30),
            ),
            max_size=40,
        ),
        context=st.dictionaries(
            st.text(max_size=200),
            st.one_of(st.text(max_size=2000), st.integers(), st.lists(st.text(), max_size=20)),
            max_size=60,
        ),
    )
    def test_budget_always_holds(
        self,
        mode: str,
        goal: str,
        run_id: str,
        stages: list[StageSummary],
        context: dict[str, Any],
    ) -> None:
        """Whatever the stages, statuses, keys and values, the preamble fits its budget."""
        fidelity = Fidelity.parse(mode)
        text = build_preamble(fidelity, goal=goal, run_id=run_id, stages=stages, context=context)
        assert fidelity.budget_tokens is not None
        assert len(text) <= fidelity.budget_tokens * 4


class TestDeterminism:
    @pytest.mark.parametrize("mode", FIDELITY_MODES)
    def test_same_input_same_text(self, mode: str) -> None:
        """Equal inputs give equal text, whatever the context's insertion order."""
        reversed_context = dict(reversed(list(huge_context().items())))
        first = preamble(mode, stages=huge_stages(50), context=huge_context())
        second = preamble(mode, stages=huge_stages(50), context=reversed_context)
        assert first == second

    def test_json_values_are_rendered_with_sorted_keys(self) -> None:
        """A mapping value is shown as JSON with sorted keys, whatever its own order."""
        one = preamble("compact", context={"k": {"b": 1, "a": 2}})
        two = preamble("compact", context={"k": {"a": 2, "b": 1}})
        assert one == two
        assert '- k: {"a": 2, "b": 1}' in one
