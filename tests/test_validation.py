"""Validation and linting (spec §7): the built-in rules, diagnostics, custom rules, raising."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from pipelines import dot

from orchestra.dot import parse_dot
from orchestra.errors import OrchestraError, ValidationError
from orchestra.graph import Edge, Graph, Node
from orchestra.transforms import apply_transforms
from orchestra.validation import (
    BUILT_IN_HANDLER_TYPES,
    Diagnostic,
    LintRule,
    Severity,
    lint_rule,
    validate,
    validate_or_raise,
)

ERROR, WARNING = Severity.ERROR, Severity.WARNING


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of ``text`` on which ``fragment`` first appears."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} is not in the text")


def lint(text: str, handler_types: Iterable[str] | None = None) -> list[Diagnostic]:
    """Diagnostics for DOT text after the built-in transforms, as `orchestra compile` runs."""
    return validate(apply_transforms(parse_dot(text)), handler_types=handler_types)


def found(diagnostics: Iterable[Diagnostic], rule: str) -> list[Diagnostic]:
    return [d for d in diagnostics if d.rule == rule]


def pipeline(body: str = "", graph: str = 'goal="ship the feature"') -> str:
    """A valid start -> work -> exit pipeline, plus extra statements in ``body``."""
    return dot(
        f"""
        digraph G {{
            {graph}
            start [shape=Mdiamond]
            exit [shape=Msquare]
            work [prompt="Do the work"]
            start -> work -> exit
            {body}
        }}
        """
    )


class TestValidationDefinitionOfDone:
    """One test per item of the spec's §11.2 checklist."""

    def test_exactly_one_start_node_required(self) -> None:
        """No start node is an error, two are an error naming both, one is fine."""
        none = dot(
            """
            digraph G {
                exit [shape=Msquare]
                work [prompt="p"]
                work -> exit
            }
            """
        )
        two = pipeline('begin [shape=Mdiamond]\nbegin -> work [label="second"]')
        [missing] = found(lint(none), "start_node")
        [duplicated] = found(lint(two), "start_node")
        assert missing.severity is ERROR
        assert "no start node" in missing.message
        assert duplicated.severity is ERROR
        assert "'start'" in duplicated.message
        assert "'begin'" in duplicated.message
        assert found(lint(pipeline()), "start_node") == []

    def test_exactly_one_exit_node_required(self) -> None:
        """No exit node is an error, two are an error naming both, one is fine."""
        none = dot(
            """
            digraph G {
                start [shape=Mdiamond]
                work [prompt="p"]
                start -> work
            }
            """
        )
        two = pipeline("done [shape=Msquare]\nwork -> done")
        [missing] = found(lint(none), "terminal_node")
        [duplicated] = found(lint(two), "terminal_node")
        assert missing.severity is ERROR
        assert "no exit node" in missing.message
        assert duplicated.severity is ERROR
        assert "'exit'" in duplicated.message
        assert "'done'" in duplicated.message
        assert found(lint(pipeline()), "terminal_node") == []

    def test_start_node_has_no_incoming_edges(self) -> None:
        """An edge into the start node is an error on that edge, at its line."""
        text = pipeline('work -> start [condition="outcome=fail"]')
        [diagnostic] = found(lint(text), "start_no_incoming")
        assert diagnostic.severity is ERROR
        assert diagnostic.edge == ("work", "start")
        assert diagnostic.line == line_of(text, "work -> start")
        assert found(lint(pipeline()), "start_no_incoming") == []

    def test_exit_node_has_no_outgoing_edges(self) -> None:
        """An edge out of the exit node is an error on that edge, at its line."""
        text = pipeline("exit -> work")
        [diagnostic] = found(lint(text), "exit_no_outgoing")
        assert diagnostic.severity is ERROR
        assert diagnostic.edge == ("exit", "work")
        assert diagnostic.line == line_of(text, "exit -> work")
        assert found(lint(pipeline()), "exit_no_outgoing") == []

    def test_all_nodes_reachable_from_start(self) -> None:
        """Every node no path from the start reaches is reported, even one with edges."""
        text = pipeline('orphan [prompt="o"]\nisland [prompt="i"]\nisland -> exit')
        diagnostics = found(lint(text), "reachability")
        assert sorted(d.node_id for d in diagnostics if d.node_id) == ["island", "orphan"]
        assert found(lint(pipeline()), "reachability") == []

    def test_all_edges_reference_valid_node_ids(self) -> None:
        """An edge whose source or target is not a node is an error naming the missing id."""
        graph = Graph(
            "G",
            nodes={
                "start": Node("start", {"shape": "Mdiamond"}),
                "exit": Node("exit", {"shape": "Msquare"}),
            },
            edges=(Edge("start", "exit"), Edge("start", "ghost"), Edge("phantom", "exit")),
        )
        diagnostics = found(validate(graph), "edge_target_exists")
        assert {d.edge for d in diagnostics} == {("start", "ghost"), ("phantom", "exit")}
        assert all(d.severity is ERROR for d in diagnostics)
        assert any("'ghost'" in d.message for d in diagnostics)
        assert any("'phantom'" in d.message for d in diagnostics)

    def test_codergen_nodes_without_prompt_warn(self) -> None:
        """A box node with no prompt or label warns; start, exit and non-LLM nodes don't."""
        text = pipeline(
            'bare [shape=box]\nimplicit\nhuman [shape=hexagon]\nnamed [label="Named"]\n'
            "work -> bare -> implicit -> human -> named -> exit"
        )
        diagnostics = found(lint(text), "prompt_on_llm_nodes")
        assert [d.node_id for d in diagnostics] == ["bare", "implicit"]
        assert all(d.severity is WARNING for d in diagnostics)
        assert found(lint(pipeline()), "prompt_on_llm_nodes") == []

    def test_condition_expressions_parse_without_errors(self) -> None:
        """A condition that does not parse is an error on its edge; valid ones pass."""
        text = pipeline(
            'work -> exit [condition="outcome=>success"]\n'
            'work -> exit [condition="outcome=success && context.ready != no"]'
        )
        [diagnostic] = found(lint(text), "condition_syntax")
        assert diagnostic.severity is ERROR
        assert diagnostic.edge == ("work", "exit")
        assert "outcome=>success" in diagnostic.message
        assert diagnostic.line == line_of(text, "outcome=>success")

    def test_validate_or_raise_throws_on_error_severity(self) -> None:
        """validate_or_raise raises for an error and returns the warnings when there is none."""
        with pytest.raises(ValidationError):
            validate_or_raise(parse_dot(pipeline('orphan [prompt="o"]')))
        warnings = validate_or_raise(parse_dot(pipeline("bare [shape=box]\nwork -> bare")))
        assert [d.rule for d in warnings] == ["prompt_on_llm_nodes"]

    def test_lint_results_include_rule_severity_node_edge_and_message(self) -> None:
        """A node diagnostic names its node, an edge diagnostic its (from, to) pair."""
        text = pipeline('orphan [prompt="o"]\nwork -> exit [condition="outcome=="]')
        diagnostics = lint(text)
        [node_diagnostic] = found(diagnostics, "reachability")
        [edge_diagnostic] = found(diagnostics, "condition_syntax")
        assert node_diagnostic.severity is ERROR
        assert node_diagnostic.node_id == "orphan"
        assert node_diagnostic.edge is None
        assert "orphan" in node_diagnostic.message
        assert edge_diagnostic.severity is ERROR
        assert edge_diagnostic.edge == ("work", "exit")
        assert edge_diagnostic.node_id is None
        assert edge_diagnostic.message
        record = node_diagnostic.to_json()
        assert record["rule"] == "reachability"
        assert record["severity"] == "error"
        assert record["node_id"] == "orphan"
        assert record["message"] == node_diagnostic.message


class TestStartAndExitDetection:
    """Without Mdiamond/Msquare shapes, start and exit are found by id (§7.2)."""

    @pytest.mark.parametrize(("start", "exit_"), [("start", "exit"), ("Start", "end")])
    def test_start_and_exit_detected_by_id(self, start: str, exit_: str) -> None:
        """With no marking shape, ids start/Start and exit/end are the start and exit."""
        text = dot(
            f"""
            digraph G {{
                work [prompt="p"]
                {start} -> work -> {exit_}
            }}
            """
        )
        graph = parse_dot(text)
        assert graph.start_node is not None
        assert graph.start_node.id == start
        assert graph.exit_node is not None
        assert graph.exit_node.id == exit_
        assert [d for d in lint(text) if d.severity is ERROR] == []

    def test_other_ids_are_not_start_or_exit(self) -> None:
        """begin and finish are ordinary nodes: both start_node and terminal_node fail."""
        text = dot(
            """
            digraph G {
                begin -> work -> finish
            }
            """
        )
        rules = {d.rule for d in lint(text) if d.severity is ERROR}
        assert {"start_node", "terminal_node"} <= rules

    def test_id_detected_start_is_checked_for_incoming_edges(self) -> None:
        """A start found by its id is still the start node for start_no_incoming."""
        text = dot(
            """
            digraph G {
                work [prompt="p"]
                start -> work -> exit
                work -> start
            }
            """
        )
        assert [d.edge for d in found(lint(text), "start_no_incoming")] == [("work", "start")]


class TestReachability:
    """DESIGN §4: an unreachable node stops the pipeline, it is not a mere warning."""

    def test_unreachable_node_is_an_error_at_its_line(self) -> None:
        """The orphan's diagnostic is ERROR severity and carries the line it was declared on."""
        text = pipeline('orphan [prompt="never runs"]')
        [diagnostic] = found(lint(text), "reachability")
        assert diagnostic.severity is ERROR
        assert diagnostic.line == line_of(text, "orphan [")

    def test_unreachable_node_makes_validate_or_raise_raise(self) -> None:
        """An orphan alone is enough for validate_or_raise to refuse the graph."""
        with pytest.raises(ValidationError, match="orphan"):
            validate_or_raise(parse_dot(pipeline('orphan [prompt="o"]')))

    def test_nodes_reached_through_a_cycle_are_reachable(self) -> None:
        """A loop back from a later stage does not make anything unreachable."""
        text = pipeline('review [prompt="r"]\nwork -> review -> work\nreview -> exit')
        assert found(lint(text), "reachability") == []


class TestStylesheetSyntax:
    """`stylesheet_syntax`: a model_stylesheet that does not parse is an ERROR at its line."""

    def test_error_reported_at_the_dot_line_of_the_mistake(self) -> None:
        """In a multi-line stylesheet the diagnostic points at the DOT line of the bad rule."""
        text = dot(
            """
            digraph G {
                goal="g"
                model_stylesheet="
                    * { llm_model: claude-sonnet-4-5; }
                    .code { llm_mdl: gpt-5.2; }
                "
                start [shape=Mdiamond]
                exit [shape=Msquare]
                start -> exit
            }
            """
        )
        [diagnostic] = found(lint(text), "stylesheet_syntax")
        assert diagnostic.severity is ERROR
        assert "llm_mdl" in diagnostic.message
        assert diagnostic.line == line_of(text, "llm_mdl")
        assert diagnostic.location is not None
        assert (
            diagnostic.location.column
            == text.splitlines()[diagnostic.line - 1].index("llm_mdl") + 1
        )

    def test_error_in_one_line_stylesheet_points_into_the_string(self) -> None:
        """On the key's own line the column is that of the mistake, not of the stylesheet."""
        text = dot(
            """
            digraph G {
                graph [goal="g", model_stylesheet="* { llm_model gpt-5.2; }"]
                start [shape=Mdiamond]
                exit [shape=Msquare]
                start -> exit
            }
            """
        )
        [diagnostic] = found(lint(text), "stylesheet_syntax")
        assert diagnostic.line == 2
        assert diagnostic.location is not None
        assert diagnostic.location.column == text.splitlines()[1].index("gpt-5.2") + 1

    def test_escaped_newline_does_not_shift_the_line(self) -> None:
        """A `\\n` escape makes a new stylesheet line but not a new DOT line."""
        text = dot(
            r"""
            digraph G {
                model_stylesheet="* { llm_model: a; }\n.code { bogus: b; }"
                start [shape=Mdiamond]
                exit [shape=Msquare]
                start -> exit
            }
            """
        )
        [diagnostic] = found(lint(text), "stylesheet_syntax")
        assert "line 2" in diagnostic.message
        assert diagnostic.line == 2
        assert diagnostic.location is not None
        assert diagnostic.location.column == text.splitlines()[1].index("bogus") + 1

    def test_valid_stylesheet_passes(self) -> None:
        """A well-formed stylesheet gives no stylesheet_syntax diagnostic."""
        text = pipeline(graph='model_stylesheet="* { llm_model: m; } #work { llm_provider: p }"')
        assert found(lint(text), "stylesheet_syntax") == []


class TestTypeKnown:
    """`type_known`: a node type no handler is registered for is a WARNING."""

    def test_unknown_type_warns_with_did_you_mean(self) -> None:
        """A misspelt type suggests the closest registered one."""
        text = pipeline('odd [type="codergn", prompt="p"]\nwork -> odd -> exit')
        [diagnostic] = found(lint(text), "type_known")
        assert diagnostic.severity is WARNING
        assert diagnostic.node_id == "odd"
        assert diagnostic.fix == "did you mean 'codergen'?"
        assert diagnostic.line == line_of(text, "odd [")

    def test_every_built_in_type_is_known(self) -> None:
        """The types the shapes map to are all accepted as explicit types."""
        nodes = "\n".join(
            f'n{i} [type="{t}", prompt="p"]' for i, t in enumerate(BUILT_IN_HANDLER_TYPES)
        )
        edges = "\n".join(f"work -> n{i}" for i in range(len(BUILT_IN_HANDLER_TYPES)))
        assert found(lint(pipeline(nodes + "\n" + edges)), "type_known") == []

    def test_custom_handler_types_are_accepted(self) -> None:
        """`handler_types=` adds types (a custom registry's) to the built-in ones."""
        text = pipeline('deploy [type="acme.deploy", prompt="p"]\nwork -> deploy -> exit')
        assert len(found(lint(text), "type_known")) == 1
        assert found(lint(text, handler_types=["acme.deploy"]), "type_known") == []
        graph = parse_dot(pipeline('t [type="tool", tool_command="ls"]\nwork -> t'))
        assert found(validate(graph, handler_types=["acme.deploy"]), "type_known") == []


class TestFidelityValid:
    """`fidelity_valid`: fidelity values must be one of the spec's modes (WARNING)."""

    def test_bad_node_edge_and_graph_fidelity_warn(self) -> None:
        """A bad mode on a node, an edge or the graph default each warn where written."""
        text = pipeline(
            'odd [prompt="p", fidelity="Compact"]\nwork -> odd [fidelity="summary"]\nodd -> exit',
            graph='default_fidelity="everything"',
        )
        diagnostics = found(lint(text), "fidelity_valid")
        assert all(d.severity is WARNING for d in diagnostics)
        by_place = {(d.node_id, d.edge): d.line for d in diagnostics}
        assert by_place == {
            (None, None): line_of(text, "default_fidelity"),
            ("odd", None): line_of(text, "odd ["),
            (None, ("work", "odd")): line_of(text, "work -> odd"),
        }

    @pytest.mark.parametrize(
        "mode", ["full", "truncate", "compact", "summary:low", "summary:medium", "summary:high"]
    )
    def test_every_spec_mode_is_valid(self, mode: str) -> None:
        """Each of the six modes passes on nodes, edges and the graph default."""
        text = pipeline(
            f'work -> exit [fidelity="{mode}"]\nwork [fidelity="{mode}"]',
            graph=f'default_fidelity="{mode}"',
        )
        assert found(lint(text), "fidelity_valid") == []


class TestRetryTargets:
    """`retry_target_exists` and `goal_gate_has_retry` (both WARNING)."""

    @pytest.mark.parametrize("key", ["retry_target", "fallback_retry_target"])
    def test_missing_node_retry_target_warns(self, key: str) -> None:
        """A node's retry target that is not a node warns on that node."""
        text = pipeline(f'work [{key}="ghost"]')
        [diagnostic] = found(lint(text), "retry_target_exists")
        assert diagnostic.severity is WARNING
        assert diagnostic.node_id == "work"
        assert "ghost" in diagnostic.message
        assert key in diagnostic.message

    def test_missing_graph_retry_target_warns_at_its_line(self) -> None:
        """A graph-level retry_target that is not a node warns at the attribute's line."""
        text = pipeline(graph='retry_target="ghost"')
        [diagnostic] = found(lint(text), "retry_target_exists")
        assert diagnostic.node_id is None
        assert diagnostic.line == line_of(text, "retry_target")

    def test_existing_retry_target_passes(self) -> None:
        """A retry target naming a real node is fine."""
        text = pipeline('work [retry_target="work", fallback_retry_target="start"]')
        assert found(lint(text), "retry_target_exists") == []

    def test_goal_gate_without_retry_target_warns(self) -> None:
        """goal_gate=true with no retry target anywhere warns on the gate."""
        text = pipeline("work [goal_gate=true]")
        [diagnostic] = found(lint(text), "goal_gate_has_retry")
        assert diagnostic.severity is WARNING
        assert diagnostic.node_id == "work"

    @pytest.mark.parametrize(
        ("node_attrs", "graph_attrs"),
        [
            ('retry_target="work"', ""),
            ('fallback_retry_target="work"', ""),
            ("", 'retry_target="work"'),
            ("", 'fallback_retry_target="work"'),
        ],
    )
    def test_goal_gate_with_any_retry_target_passes(
        self, node_attrs: str, graph_attrs: str
    ) -> None:
        """A retry target on the gate or on the graph satisfies goal_gate_has_retry."""
        text = pipeline(f"work [goal_gate=true {node_attrs}]", graph=graph_attrs)
        assert found(lint(text), "goal_gate_has_retry") == []


class TestAttributeChecks:
    """Orchestra's attribute lint: typos, unknown names and out-of-range values (WARNING)."""

    @pytest.mark.parametrize(
        ("statement", "typo", "right"),
        [
            ('audit [prompt="p", max_retry=3]', "max_retry", "max_retries"),
            ('audit [prompt="p", goal_gates=true]', "goal_gates", "goal_gate"),
            ('work -> audit [conditon="outcome=success"]', "conditon", "condition"),
        ],
    )
    def test_likely_typo_names_the_right_key(self, statement: str, typo: str, right: str) -> None:
        """A near miss of a known attribute is attribute_typo, with a fix naming the key."""
        text = pipeline(f"{statement}\nwork -> audit -> exit")
        [diagnostic] = found(lint(text), "attribute_typo")
        assert diagnostic.severity is WARNING
        assert f"'{typo}'" in diagnostic.message
        assert diagnostic.fix == f"did you mean '{right}'?"
        assert diagnostic.line == line_of(text, statement)
        assert found(lint(text), "attribute_unknown") == []

    def test_unknown_attribute_reported_once_per_name(self) -> None:
        """The same unknown name on many nodes is one warning; another name is another."""
        text = pipeline(
            'a [prompt="p", flavour=spicy]\nb [prompt="p", flavour=mild, owner=me]\n'
            "work -> a -> b -> exit"
        )
        diagnostics = found(lint(text), "attribute_unknown")
        assert sorted("flavour" in d.message for d in diagnostics) == [False, True]
        [flavour] = [d for d in diagnostics if "flavour" in d.message]
        assert flavour.node_id == "a"
        assert flavour.severity is WARNING

    def test_graphviz_attributes_are_not_reported(self) -> None:
        """Layout and style attributes Graphviz knows pass on the graph, nodes and edges."""
        text = pipeline(
            'work [color=red, fillcolor="#eee", style=filled, fontname=Helvetica]\n'
            "start -> exit [color=blue, penwidth=2, style=dashed]",
            graph='goal="g"\nrankdir=LR\nbgcolor=white',
        )
        assert [d for d in lint(text) if d.rule.startswith("attribute")] == []

    def test_out_of_range_value_warns(self) -> None:
        """reasoning_effort=extreme is attribute_value, listing the accepted values."""
        text = pipeline("work [reasoning_effort=extreme]")
        [diagnostic] = found(lint(text), "attribute_value")
        assert diagnostic.severity is WARNING
        assert diagnostic.node_id == "work"
        assert "extreme" in diagnostic.message
        assert "low, medium, high" in diagnostic.message
        assert found(lint(pipeline("work [reasoning_effort=low]")), "attribute_value") == []

    def test_attribute_of_another_scope_says_where_it_belongs(self) -> None:
        """`condition` written on a node has no effect there, and the warning says so."""
        text = pipeline('work [condition="outcome=success"]')
        [diagnostic] = found(lint(text), "attribute_unknown")
        assert "'condition', which is an edge attribute and has no effect here" in (
            diagnostic.message
        )
        assert diagnostic.fix == "move 'condition' to the edge it is meant for"

    def test_typo_of_another_scopes_attribute_names_it(self) -> None:
        """`conditon` on a node is a typo of the edge attribute `condition`."""
        text = pipeline('work [conditon="outcome=success"]')
        [diagnostic] = found(lint(text), "attribute_typo")
        assert diagnostic.fix == "did you mean 'condition' (an edge attribute)?"

    def test_unknown_graph_attribute_warns_at_its_line(self) -> None:
        """A graph attribute Orchestra does not know warns at the line it was set on."""
        text = pipeline(graph='goal="g"\nproject_owner="me"')
        [diagnostic] = found(lint(text), "attribute_unknown")
        assert "project_owner" in diagnostic.message
        assert diagnostic.line == line_of(text, "project_owner")


class TestDiagnosticsOrderAndLocation:
    """Diagnostics carry their DOT line and come errors first, then in source order."""

    def test_errors_sort_before_warnings(self) -> None:
        """An error on a late line still comes before a warning on an early line."""
        text = dot(
            """
            digraph G {
                start [shape=Mdiamond]
                work [max_retry=2, prompt="p"]
                exit [shape=Msquare]
                start -> work -> exit
                orphan [prompt="o"]
                late [prompt="l", goal_gates=true]
                work -> late -> exit
            }
            """
        )
        diagnostics = lint(text)
        severities = [d.severity for d in diagnostics]
        assert severities == [ERROR, WARNING, WARNING]
        error, early_warning, _ = diagnostics
        assert error.line == line_of(text, "orphan")
        assert early_warning.line == line_of(text, "max_retry")
        assert error.line > early_warning.line

    def test_each_severity_group_is_in_line_order(self) -> None:
        """Within each severity, diagnostics follow source lines, whatever rule found them."""
        text = pipeline(
            'work -> exit [condition="outcome=>x"]\n'
            'a [max_retry=1, prompt="p"]\n'
            'z [type="codergn", prompt="p"]\n'
            'orphan [prompt="o"]\n'
            "work -> a -> z -> exit"
        )
        diagnostics = lint(text)
        errors = [(d.rule, d.line) for d in diagnostics if d.severity is ERROR]
        warnings = [(d.rule, d.line) for d in diagnostics if d.severity is WARNING]
        # reachability and type_known run before condition_syntax and the attribute
        # checks, so only sorting puts these in line order.
        assert errors == [
            ("condition_syntax", line_of(text, "outcome=>x")),
            ("reachability", line_of(text, "orphan")),
        ]
        assert warnings == [
            ("attribute_typo", line_of(text, "max_retry")),
            ("type_known", line_of(text, "codergn")),
        ]

    def test_custom_error_sorts_before_built_in_warnings(self) -> None:
        """An error from a rule that runs last still comes before every warning."""

        @lint_rule("late_error")
        def late_error(graph: Graph) -> list[Diagnostic]:
            return [Diagnostic("late_error", ERROR, "found last", node_id="work")]

        diagnostics = validate(parse_dot(pipeline("bare\nwork -> bare")), [late_error])
        assert [d.rule for d in diagnostics] == ["late_error", "prompt_on_llm_nodes"]

    def test_node_edge_and_graph_diagnostics_carry_their_line(self) -> None:
        """Node, edge and graph-attribute diagnostics all know the line they concern."""
        text = pipeline(
            'orphan [prompt="o"]\nwork -> exit [condition="=x"]', graph='default_fidelity="bad"'
        )
        diagnostics = lint(text)
        lines = {d.rule: d.line for d in diagnostics}
        assert lines == {
            "reachability": line_of(text, "orphan"),
            "condition_syntax": line_of(text, 'condition="=x"'),
            "fidelity_valid": line_of(text, "default_fidelity"),
        }
        file_name = "pipe.dot"
        assert diagnostics[0].render(file_name).startswith(f"{file_name}:{diagnostics[0].line}: ")

    def test_graph_level_problem_has_no_line(self) -> None:
        """A missing start node concerns no line, and renders without one."""
        text = dot(
            """
            digraph G {
                exit [shape=Msquare]
            }
            """
        )
        [diagnostic] = found(lint(text), "start_node")
        assert diagnostic.line is None
        assert diagnostic.render("p.dot").startswith("p.dot: error start_node: ")


class TestCustomRules:
    """Custom lint rules (§7.4) run after the built-in ones."""

    def test_decorated_function_and_class_rule_both_run_after_built_ins(self) -> None:
        """Both kinds of rule report, in the order given, after the built-in rules' findings."""

        @lint_rule("no_todo")
        def no_todo(graph: Graph) -> Iterable[Diagnostic]:
            for node in graph:
                if "TODO" in node.prompt:
                    yield Diagnostic("no_todo", ERROR, f"'{node.id}' has a TODO")

        class NeedsGoal:
            name = "needs_goal"

            def apply(self, graph: Graph) -> list[Diagnostic]:
                if graph.goal:
                    return []
                return [Diagnostic("needs_goal", ERROR, "the graph has no goal")]

        text = dot(
            """
            digraph G {
                work [prompt="TODO"]
                work -> exit
            }
            """
        )
        assert isinstance(no_todo, LintRule)
        assert isinstance(NeedsGoal(), LintRule)
        diagnostics = validate(parse_dot(text), extra_rules=[no_todo, NeedsGoal()])
        lineless_errors = [d.rule for d in diagnostics if d.severity is ERROR and d.line is None]
        assert lineless_errors == ["start_node", "no_todo", "needs_goal"]

    def test_rule_that_finds_nothing_changes_nothing(self) -> None:
        """A rule that finds nothing adds nothing; the built-in findings are unchanged."""

        @lint_rule("quiet")
        def quiet(graph: Graph) -> list[Diagnostic]:
            return []

        graph = parse_dot(pipeline('orphan [prompt="o"]'))
        assert validate(graph, extra_rules=[quiet]) == validate(graph)

    def test_custom_error_makes_validate_or_raise_raise(self) -> None:
        """An error from a custom rule is enough to refuse an otherwise valid graph."""

        @lint_rule("always")
        def always(graph: Graph) -> list[Diagnostic]:
            return [Diagnostic("always", ERROR, "house rule broken", node_id="work")]

        graph = parse_dot(pipeline())
        assert validate_or_raise(graph) == []
        with pytest.raises(ValidationError, match="house rule broken"):
            validate_or_raise(graph, extra_rules=[always])


class TestValidationError:
    """`validate_or_raise` raises one documented error that lists what is wrong."""

    def test_is_an_orchestra_error_and_a_value_error(self) -> None:
        """Callers can catch it as OrchestraError or as the builtin ValueError."""
        with pytest.raises(ValueError, match="error") as caught:
            validate_or_raise(parse_dot(pipeline('orphan [prompt="o"]')))
        assert isinstance(caught.value, ValidationError)
        assert isinstance(caught.value, OrchestraError)

    def test_message_lists_every_error_and_no_warning(self) -> None:
        """Each error appears in the message with its rule; warnings are left out of it."""
        text = pipeline('orphan [prompt="o"]\nexit -> work\nwork [max_retry=1]')
        with pytest.raises(ValidationError) as caught:
            validate_or_raise(parse_dot(text))
        message = str(caught.value)
        assert "2 error(s)" in message
        assert "reachability" in message
        assert "exit_no_outgoing" in message
        assert "attribute_typo" not in message
        assert {d.rule for d in caught.value.diagnostics} >= {"reachability", "attribute_typo"}

    def test_message_names_the_file_and_line(self, tmp_path: Path) -> None:
        """For a pipeline read from a file, each listed error starts FILE:LINE."""
        text = pipeline('orphan [prompt="o"]')
        path = tmp_path / "p.dot"
        path.write_text(text)
        with pytest.raises(ValidationError) as caught:
            validate_or_raise(parse_dot(path))
        assert caught.value.file == str(path)
        assert f"{path}:{line_of(text, 'orphan')}: error reachability" in str(caught.value)


class TestBackendKnown:
    """`backend_known`: a node's backend= must name a backend (ERROR: the node could not run)."""

    def test_a_misspelt_backend_is_an_error_with_a_suggestion(self) -> None:
        text = pipeline('odd [prompt="p", backend="agnet"]\nwork -> odd\nodd -> exit')
        (diagnostic,) = found(lint(text), "backend_known")
        assert diagnostic.severity is Severity.ERROR
        assert diagnostic.node_id == "odd"
        assert diagnostic.line == line_of(text, "odd [")
        assert "did you mean 'agent'?" in (diagnostic.fix or "")

    @pytest.mark.parametrize("name", ["agent", "direct", "cli_agent", "simulation", "langgraph"])
    def test_every_backend_is_known(self, name: str) -> None:
        text = pipeline(f'work [backend="{name}"]')
        assert found(lint(text), "backend_known") == []


class TestAgentMode:
    @staticmethod
    def mode_errors(node: str) -> list[Diagnostic]:
        from orchestra import prepare_pipeline

        _, found = prepare_pipeline(
            "digraph g { start [shape=Mdiamond]; exit [shape=Msquare]; "
            f"{node}; start -> chat -> exit }}"
        )
        return [d for d in found if d.rule == "agent_mode"]

    def test_interactive_on_an_llm_node_is_a_chat(self) -> None:
        assert self.mode_errors('chat [prompt="Brainstorm", agent.mode="interactive"]') == []

    def test_interactive_on_a_tool_node_is_an_error(self) -> None:
        (error,) = self.mode_errors(
            'chat [shape=parallelogram, tool_command="ls", agent.mode="interactive"]'
        )
        assert error.severity.value == "error"
        assert "this node is a tool node" in error.message
        assert error.node_id == "chat"

    def test_an_unknown_mode_is_an_error(self) -> None:
        (error,) = self.mode_errors('chat [prompt="x", agent.mode="chatty"]')
        assert "unknown agent.mode 'chatty'" in error.message
