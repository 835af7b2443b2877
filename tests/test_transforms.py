"""Transforms (spec §9): Graph -> Graph steps between parsing and validation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import attrs
import pytest

from orchestra.dot import parse_dot
from orchestra.errors import TransformError
from orchestra.graph import Edge, Graph, Node
from orchestra.pipeline import prepare_pipeline
from orchestra.transforms import (
    BUILT_IN_TRANSFORMS,
    GoalExpansionTransform,
    StylesheetTransform,
    Transform,
    apply_stylesheet,
    apply_transforms,
    expand_goal,
)
from orchestra.validation import Diagnostic, Severity, lint_rule

SOURCE = textwrap.dedent(
    """
    digraph G {
        goal="ship the login page"
        model_stylesheet="* { llm_model: claude-sonnet-4-5; llm_provider: anthropic }"
        start [shape=Mdiamond]
        exit [shape=Msquare]
        plan [label="Plan $goal", prompt="Plan how to $goal. Then plan $goal again."]
        work [prompt="Do the work", llm_model="gpt-5.2"]
        start -> plan -> work -> exit
    }
    """
).strip()
EXPANDED_PLAN = "Plan how to ship the login page. Then plan ship the login page again."


def snapshot(graph: Graph) -> tuple[object, ...]:
    """Everything a transform could change, in a form that compares by value."""
    return (
        graph.name,
        dict(graph.attrs),
        {node_id: (dict(node.attrs), node.classes) for node_id, node in graph.nodes.items()},
        [(e.source, e.target, dict(e.attrs)) for e in graph.edges],
    )


def with_prompt_suffix(suffix: str) -> Transform:
    """A transform object that appends ``suffix`` to every prompt."""

    class AppendToPrompts:
        def apply(self, graph: Graph) -> Graph:
            nodes = {
                node.id: node.evolve(attrs={**node.attrs, "prompt": node.prompt + suffix})
                for node in graph
            }
            return graph.evolve(nodes=nodes)

    return AppendToPrompts()


def connect_orphan(graph: Graph) -> Graph:
    """A plain-callable transform that routes work -> orphan -> exit."""
    return graph.evolve(edges=(*graph.edges, Edge("work", "orphan"), Edge("orphan", "exit")))


class TestTransformsDefinitionOfDone:
    """One test per item of the spec's §11.11 checklist (no HTTP server: not implemented)."""

    def test_ast_transforms_can_modify_graph_between_parsing_and_validation(self) -> None:
        """Validation judges the transformed graph: connecting an orphan clears its error."""
        source = SOURCE.replace("start -> plan", 'orphan [prompt="o"]\n    start -> plan')
        _, untransformed = prepare_pipeline(source)
        graph, diagnostics = prepare_pipeline(source, transforms=[connect_orphan])
        assert [d.node_id for d in untransformed if d.rule == "reachability"] == ["orphan"]
        assert [d for d in diagnostics if d.rule == "reachability"] == []
        assert [e.target for e in graph.outgoing("work")] == ["exit", "orphan"]

    def test_transform_interface_graph_to_graph(self) -> None:
        """A transform takes a Graph and returns a Graph, as an object or a plain callable."""
        graph = parse_dot(SOURCE)
        for transform in (*BUILT_IN_TRANSFORMS, with_prompt_suffix("!")):
            assert isinstance(transform, Transform)
            assert isinstance(transform.apply(graph), Graph)
        assert not isinstance(expand_goal, Transform)
        assert isinstance(expand_goal(graph), Graph)
        assert isinstance(apply_transforms(graph, [expand_goal]), Graph)

    def test_builtin_variable_expansion_replaces_goal_in_prompts(self) -> None:
        """Every `$goal` in a prompt becomes the graph's goal; labels are left alone."""
        plan = expand_goal(parse_dot(SOURCE)).nodes["plan"]
        assert plan.prompt == EXPANDED_PLAN
        assert plan.label == "Plan $goal"

    def test_custom_transforms_registered_and_run_in_order(self) -> None:
        """Custom transforms run after the built-in ones, in the order given."""
        seen: list[tuple[str, str]] = []

        def record(graph: Graph) -> Graph:
            seen.append((graph.nodes["plan"].prompt, graph.nodes["plan"].llm_model))
            return graph

        graph = apply_transforms(
            parse_dot(SOURCE), [with_prompt_suffix(" [A]"), record, with_prompt_suffix(" [B]")]
        )
        assert graph.nodes["work"].prompt == "Do the work [A] [B]"
        # The custom transforms saw the goal expanded and the stylesheet applied.
        assert seen == [(f"{EXPANDED_PLAN} [A]", "claude-sonnet-4-5")]


class TestBuiltInTransforms:
    """Goal expansion then the model stylesheet, the built-ins of §9.2."""

    def test_built_ins_are_goal_expansion_then_stylesheet(self) -> None:
        """The built-in transforms are exactly these two, in this order."""
        assert [type(t) for t in BUILT_IN_TRANSFORMS] == [
            GoalExpansionTransform,
            StylesheetTransform,
        ]

    def test_stylesheet_fills_what_a_node_does_not_set(self) -> None:
        """apply_transforms gives nodes the stylesheet's model; a node's own model wins."""
        graph = apply_transforms(parse_dot(SOURCE))
        assert graph.nodes["plan"].llm_model == "claude-sonnet-4-5"
        assert graph.nodes["work"].llm_model == "gpt-5.2"
        assert graph.nodes["work"].llm_provider == "anthropic"

    def test_goal_expansion_without_goal_leaves_no_placeholder(self) -> None:
        """With no goal, `$goal` expands to the empty goal rather than staying literal."""
        graph = Graph("G", nodes={"n": Node("n", {"prompt": "Do $goal."})})
        assert expand_goal(graph).nodes["n"].prompt == "Do ."

    def test_goal_expansion_leaves_other_variables(self) -> None:
        """Only `$goal` is expanded; other dollar words reach the handler unchanged."""
        graph = Graph(
            "G", attrs={"goal": "x"}, nodes={"n": Node("n", {"prompt": "$goal $KILROY_RUN_ID"})}
        )
        assert expand_goal(graph).nodes["n"].prompt == "x $KILROY_RUN_ID"


class TestTransformsDoNotMutate:
    """A transform returns a new graph; the one it was given stays as it was (§9.1)."""

    @pytest.mark.parametrize(
        "transform",
        [expand_goal, apply_stylesheet, apply_transforms, connect_orphan],
        ids=["expand_goal", "apply_stylesheet", "apply_transforms", "custom"],
    )
    def test_input_graph_is_unchanged(self, transform: object) -> None:
        """After the transform, the input graph compares equal to a snapshot taken before."""
        graph = parse_dot(SOURCE.replace("start -> plan", "orphan\n    start -> plan"))
        before = snapshot(graph)
        result = transform(graph)  # type: ignore[operator]
        assert snapshot(graph) == before
        assert snapshot(result) != before
        assert "$goal" in str(graph.nodes["plan"].prompt)

    def test_graph_cannot_be_changed_in_place(self) -> None:
        """Graph, its node table and attribute maps refuse assignment."""
        graph = parse_dot(SOURCE)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            graph.name = "other"  # type: ignore[misc]
        with pytest.raises(TypeError):
            graph.nodes["x"] = Node("x")  # type: ignore[index]
        with pytest.raises(TypeError):
            graph.nodes["plan"].attrs["prompt"] = "changed"  # type: ignore[index]
        with pytest.raises(TypeError):
            graph.attrs["goal"] = "changed"  # type: ignore[index]


class TestPreparePipeline:
    """`prepare_pipeline`: parse, then transforms, then validation with custom rules."""

    def test_rules_see_the_transformed_graph(self) -> None:
        """A custom rule runs on the graph after built-in and custom transforms."""
        seen: list[tuple[str, str]] = []

        @lint_rule("record")
        def record(graph: Graph) -> list[Diagnostic]:
            seen.append((graph.nodes["plan"].prompt, graph.nodes["plan"].llm_model))
            return [Diagnostic("record", Severity.WARNING, "seen", node_id="plan")]

        graph, diagnostics = prepare_pipeline(
            SOURCE, transforms=[with_prompt_suffix("!")], rules=[record]
        )
        assert seen == [(f"{EXPANDED_PLAN}!", "claude-sonnet-4-5")]
        assert [d.rule for d in diagnostics] == ["record"]
        assert graph.nodes["plan"].prompt.endswith("again.!")

    def test_accepts_a_path(self, tmp_path: Path) -> None:
        """A path is read and parsed like text, and the graph remembers the file."""
        path = tmp_path / "pipeline.dot"
        path.write_text(SOURCE)
        graph, diagnostics = prepare_pipeline(path)
        assert graph.path == str(path)
        assert diagnostics == []
        assert graph.nodes["plan"].llm_provider == "anthropic"

    def test_errors_are_returned_not_raised(self) -> None:
        """Validation errors come back as diagnostics for the caller to judge."""
        _, diagnostics = prepare_pipeline(SOURCE.replace("-> exit", ""))
        assert any(d.severity is Severity.ERROR for d in diagnostics)

    def test_custom_handler_types_reach_validation(self) -> None:
        """handler_types are passed on to the type_known rule."""
        source = SOURCE.replace('prompt="Do the work"', 'prompt="Do the work", type="acme"')
        _, default = prepare_pipeline(source)
        _, extended = prepare_pipeline(source, handler_types=["acme"])
        assert [d.rule for d in default] == ["type_known"]
        assert extended == []


class TestTransformKinds:
    """A transform may be a plain callable or an object with `apply`."""

    def test_callable_and_object_mix_in_one_list(self) -> None:
        """Both kinds run, in list order, in one apply_transforms call."""

        def add_node(graph: Graph) -> Graph:
            return graph.with_node(Node("added", {"prompt": "new"}))

        graph = apply_transforms(parse_dot(SOURCE), [add_node, with_prompt_suffix("?")])
        assert graph.nodes["added"].prompt == "new?"

    def test_object_apply_is_preferred_over_call(self) -> None:
        """An object that has `apply` is applied through it, even if it is also callable."""

        class Both:
            def apply(self, graph: Graph) -> Graph:
                return graph.evolve(name="via_apply")

            def __call__(self, graph: Graph) -> Graph:
                return graph.evolve(name="via_call")

        assert apply_transforms(parse_dot(SOURCE), [Both()]).name == "via_apply"

    def test_transform_returning_something_else_is_named_in_the_error(self) -> None:
        """A transform that returns no Graph raises TransformError naming it, not a crash
        later in validation."""

        def forgets_to_return(graph: Graph) -> Graph:
            graph.evolve(name="lost")
            return None  # type: ignore[return-value]

        with pytest.raises(TransformError, match="'forgets_to_return' returned NoneType"):
            apply_transforms(parse_dot(SOURCE), [forgets_to_return])
