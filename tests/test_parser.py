"""The DOT parser (spec §2, §11.1): the Attractor subset, typed values, scoping, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pydot
import pytest

import orchestra
from orchestra import Duration, Graph, Severity
from orchestra.dot.subset import MAX_SUBGRAPH_NESTING
from orchestra.errors import (
    AttributeValueError,
    DotSyntaxError,
    OrchestraError,
    PipelineFileError,
)
from orchestra.graph import SHAPE_HANDLER_TYPES


def parse(text: str) -> Graph:
    """Parse DOT text written indented in a test."""
    return orchestra.parse_dot(textwrap.dedent(text))


def attrs_of(graph: Graph, node_id: str) -> dict[str, Any]:
    return dict(graph.nodes[node_id].attrs)


def edge_list(graph: Graph) -> list[tuple[str, str]]:
    return [(edge.source, edge.target) for edge in graph.edges]


def syntax_error(text: str) -> DotSyntaxError:
    with pytest.raises(DotSyntaxError) as info:
        orchestra.parse_dot(text)
    return info.value


def file_error(path: str | Path) -> PipelineFileError:
    with pytest.raises(PipelineFileError) as info:
        orchestra.parse_dot(path)
    return info.value


class TestDotParsingDefinitionOfDone:
    """The spec's §11.1 checklist, one test per item."""

    def test_parser_accepts_supported_dot_subset(self) -> None:
        """A digraph with graph, node and edge blocks, nodes, edges and a subgraph parses."""
        graph = parse(
            """\
            digraph Pipeline {
                graph [goal="Ship"];
                node [shape=box];
                edge [weight=1];
                rankdir = LR;
                start [shape=Mdiamond];
                exit [shape=Msquare];
                subgraph cluster_work {
                    work [prompt="Do the work"]
                }
                start -> work;
                work -> exit
            }
            """
        )
        assert graph.name == "Pipeline"
        assert list(graph.nodes) == ["start", "exit", "work"]
        assert edge_list(graph) == [("start", "work"), ("work", "exit")]
        assert graph.goal == "Ship"
        assert graph.get("rankdir") == "LR"

    def test_graph_level_attributes_extracted(self) -> None:
        """goal, label and model_stylesheet come from a graph block or a key = value line."""
        graph = parse(
            """\
            digraph G {
                graph [goal="Run tests and report", label="Test run"]
                model_stylesheet = "* { llm_model: gpt-5.2; }"
                start [shape=Mdiamond]
            }
            """
        )
        assert graph.goal == "Run tests and report"
        assert graph.label == "Test run"
        assert graph.model_stylesheet == "* { llm_model: gpt-5.2; }"

    def test_node_attributes_parsed_including_multi_line_blocks(self) -> None:
        """An attribute block spread over several lines gives the node every attribute."""
        graph = parse(
            """\
            digraph G {
                review [
                    shape=box,
                    label="Review",
                    prompt="Review the code",
                    max_retries=2,
                    goal_gate=true,
                    timeout="15m"
                ]
            }
            """
        )
        assert attrs_of(graph, "review") == {
            "shape": "box",
            "label": "Review",
            "prompt": "Review the code",
            "max_retries": 2,
            "goal_gate": True,
            "timeout": Duration(seconds=900.0, text="15m"),
        }

    def test_edge_attributes_parsed(self) -> None:
        """label, condition and weight are read from an edge's attribute block."""
        graph = parse(
            """\
            digraph G {
                gate -> exit [label="Yes", condition="outcome=success", weight=3]
            }
            """
        )
        (edge,) = graph.edges
        assert edge.label == "Yes"
        assert edge.condition == "outcome=success"
        assert edge.weight == 3
        assert edge.get("weight") == 3

    def test_chained_edges_produce_individual_edges(self) -> None:
        """A -> B -> C [label=next] is two edges, each with the label."""
        graph = parse(
            """\
            digraph G {
                A -> B -> C [label="next"]
            }
            """
        )
        assert edge_list(graph) == [("A", "B"), ("B", "C")]
        assert [dict(edge.attrs) for edge in graph.edges] == [{"label": "next"}] * 2

    def test_node_and_edge_default_blocks_apply_to_subsequent_declarations(self) -> None:
        """Defaults reach later nodes and edges (declared or implied); explicit values win."""
        graph = parse(
            """\
            digraph G {
                node [shape=box, timeout="900s"]
                edge [weight=5]
                plan [label="Plan"]
                gate [shape=diamond, timeout=60]
                plan -> gate
                gate -> done [weight=1]
            }
            """
        )
        assert attrs_of(graph, "plan") == {
            "shape": "box",
            "timeout": Duration(900.0, "900s"),
            "label": "Plan",
        }
        assert attrs_of(graph, "gate") == {"shape": "diamond", "timeout": Duration(60.0, "60")}
        assert attrs_of(graph, "done") == {"shape": "box", "timeout": Duration(900.0, "900s")}
        assert [edge.weight for edge in graph.edges] == [5, 1]

    def test_subgraph_blocks_are_flattened(self) -> None:
        """Nodes and edges in a subgraph belong to the graph; the wrapper leaves no node."""
        graph = parse(
            """\
            digraph G {
                subgraph cluster_loop {
                    label = "Loop A"
                    node [thread_id="loop-a", timeout="900s"]

                    Plan      [label="Plan next step"]
                    Implement [label="Implement", timeout="1800s"]
                    Plan -> Implement
                }
            }
            """
        )
        assert list(graph.nodes) == ["Plan", "Implement"]
        assert edge_list(graph) == [("Plan", "Implement")]
        assert attrs_of(graph, "Plan") == {
            "thread_id": "loop-a",
            "timeout": Duration(900.0, "900s"),
            "label": "Plan next step",
        }
        assert attrs_of(graph, "Implement")["timeout"] == Duration(1800.0, "1800s")
        assert attrs_of(graph, "Implement")["thread_id"] == "loop-a"
        assert "label" not in graph.attrs

    def test_class_attribute_merges_stylesheet_attributes(self) -> None:
        """A node's classes select stylesheet rules, whose properties it gets unless set."""
        graph = parse(
            """\
            digraph G {
                model_stylesheet = ".code { llm_model: claude-opus-4-6; reasoning_effort: low; }"
                review [class="code,critical", prompt="Review the code"]
                tuned [class="code", reasoning_effort="medium"]
                plain [prompt="Plan"]
            }
            """
        )
        nodes = orchestra.apply_transforms(graph).nodes
        assert nodes["review"].llm_model == "claude-opus-4-6"
        assert nodes["review"].reasoning_effort == "low"
        assert nodes["tuned"].llm_model == "claude-opus-4-6"
        assert nodes["tuned"].reasoning_effort == "medium"
        assert "llm_model" not in nodes["plain"].attrs

    def test_quoted_and_unquoted_values_both_work(self) -> None:
        """A value means the same, and gets the same type, with or without quotes."""
        graph = parse(
            """\
            digraph G {
                bare [shape=hexagon, max_retries=2, goal_gate=true, timeout=9s, note=hi]
                quoted [shape="hexagon", max_retries="2", goal_gate="true", timeout="9s", note="hi"]
            }
            """
        )
        assert attrs_of(graph, "bare") == attrs_of(graph, "quoted")
        assert attrs_of(graph, "bare") == {
            "shape": "hexagon",
            "max_retries": 2,
            "goal_gate": True,
            "timeout": Duration(9.0, "9s"),
            "note": "hi",
        }

    def test_comments_are_stripped_before_parsing(self) -> None:
        """// and /* */ comments vanish anywhere, but inside a string they are text."""
        graph = parse(
            """\
            // a pipeline
            digraph G { /* the body
                spans lines */
                a [label="A", /* inline */ prompt="Use // and /* block */ here"] // trailing
                // b [label="B"]
                a -> /* target */ c
            }
            """
        )
        assert list(graph.nodes) == ["a", "c"]
        assert attrs_of(graph, "a") == {"label": "A", "prompt": "Use // and /* block */ here"}
        assert edge_list(graph) == [("a", "c")]

    def test_line_comment_may_end_the_file(self) -> None:
        """A // comment on the last line needs no newline after it."""
        assert list(orchestra.parse_dot("digraph G { a } // end").nodes) == ["a"]


SIMPLE = """\
digraph Simple {
    graph [goal="Run tests and report"]
    rankdir=LR

    start [shape=Mdiamond, label="Start"]
    exit  [shape=Msquare, label="Exit"]

    run_tests [label="Run Tests", prompt="Run the test suite and report results"]
    report    [label="Report", prompt="Summarize the test results"]

    start -> run_tests -> report -> exit
}
"""

BRANCH = """\
digraph Branch {
    graph [goal="Implement and validate a feature"]
    rankdir=LR
    node [shape=box, timeout="900s"]

    start     [shape=Mdiamond, label="Start"]
    exit      [shape=Msquare, label="Exit"]
    plan      [label="Plan", prompt="Plan the implementation"]
    implement [label="Implement", prompt="Implement the plan"]
    validate  [label="Validate", prompt="Run tests"]
    gate      [shape=diamond, label="Tests passing?"]

    start -> plan -> implement -> validate -> gate
    gate -> exit      [label="Yes", condition="outcome=success"]
    gate -> implement [label="No", condition="outcome!=success"]
}
"""

REVIEW = """\
digraph Review {
    rankdir=LR

    start [shape=Mdiamond, label="Start"]
    exit  [shape=Msquare, label="Exit"]

    review_gate [
        shape=hexagon,
        label="Review Changes",
        type="wait.human"
    ]

    start -> review_gate
    review_gate -> ship_it [label="[A] Approve"]
    review_gate -> fixes   [label="[F] Fix"]
    ship_it -> exit
    fixes -> review_gate
}
"""


def diagnostics_of(text: str) -> list[tuple[Severity, str, str | None]]:
    graph = orchestra.apply_transforms(orchestra.parse_dot(text))
    return [(d.severity, d.rule, d.node_id) for d in orchestra.validate(graph)]


class TestSpecExamples:
    """The three minimal examples of spec §2.13, verbatim: they parse and lint clean."""

    def test_simple_linear_workflow(self) -> None:
        """The linear example gives four nodes in a chain and no diagnostics at all."""
        graph = orchestra.parse_dot(SIMPLE)
        assert list(graph.nodes) == ["start", "exit", "run_tests", "report"]
        assert edge_list(graph) == [
            ("start", "run_tests"),
            ("run_tests", "report"),
            ("report", "exit"),
        ]
        assert graph.goal == "Run tests and report"
        assert diagnostics_of(SIMPLE) == []

    def test_branching_workflow_with_conditions(self) -> None:
        """The branching example keeps its conditions and defaults; no diagnostics at all."""
        graph = orchestra.parse_dot(BRANCH)
        assert [edge.condition for edge in graph.outgoing("gate")] == [
            "outcome=success",
            "outcome!=success",
        ]
        assert graph.nodes["validate"].timeout == Duration(900.0, "900s")
        assert graph.nodes["gate"].handler_type == "conditional"
        assert diagnostics_of(BRANCH) == []

    def test_human_gate(self) -> None:
        """The human gate example has no errors; only its label-less LLM nodes are warned."""
        graph = orchestra.parse_dot(REVIEW)
        assert graph.nodes["review_gate"].handler_type == "wait.human"
        assert [edge.label for edge in graph.outgoing("review_gate")] == ["[A] Approve", "[F] Fix"]
        assert diagnostics_of(REVIEW) == [
            (Severity.WARNING, "prompt_on_llm_nodes", "ship_it"),
            (Severity.WARNING, "prompt_on_llm_nodes", "fixes"),
        ]


class TestValueTypes:
    """Known attributes get their spec type (§2.4); unknown ones stay strings."""

    def test_integers(self) -> None:
        """Integer attributes of graph, node and edge become ints, negative ones included."""
        graph = parse(
            """\
            digraph G {
                default_max_retries = 4
                a [max_retries=3, max_parallel=-1]
                a -> b [weight=-2]
            }
            """
        )
        assert graph.attrs["default_max_retries"] == 4
        assert attrs_of(graph, "a") == {"max_retries": 3, "max_parallel": -1}
        assert graph.edges[0].attrs["weight"] == -2

    def test_booleans(self) -> None:
        """Boolean attributes become bools, whatever the case of true and false."""
        graph = parse("digraph G { a [goal_gate=true, auto_status=FALSE, allow_partial=True] }")
        assert attrs_of(graph, "a") == {
            "goal_gate": True,
            "auto_status": False,
            "allow_partial": True,
        }

    @pytest.mark.parametrize(
        ("written", "seconds"),
        [
            ("900s", 900.0),
            ("250ms", 0.25),
            ("15m", 900.0),
            ("2h", 7200.0),
            ("1d", 86400.0),
            ("600", 600.0),
        ],
    )
    def test_durations(self, written: str, seconds: float) -> None:
        """Each duration unit converts to seconds, and a bare integer means seconds."""
        graph = parse(f"digraph G {{ a [timeout={written}] }}")
        assert graph.nodes["a"].timeout == Duration(seconds=seconds, text=written)

    def test_unknown_attributes_stay_strings(self) -> None:
        """Unknown attributes are kept as written, numbers and booleans included."""
        graph = parse(
            """\
            digraph G {
                temperature = 0.7
                a [score=1.5, count=3, flag=true, color=red]
                a -> b [penalty=2]
            }
            """
        )
        assert graph.attrs["temperature"] == "0.7"
        assert attrs_of(graph, "a") == {
            "score": "1.5",
            "count": "3",
            "flag": "true",
            "color": "red",
        }
        assert dict(graph.edges[0].attrs) == {"penalty": "2"}

    def test_bare_values_with_dashes_dots_and_colons_are_kept_whole(self) -> None:
        """A bare value such as claude-opus-4-6, gpt-5.2 or summary:high is one value."""
        graph = parse(
            """\
            digraph G {
                a [llm_model=claude-opus-4-6, fidelity=summary:high, thread_id=loop.a]
                b [llm_model=gpt-5.2]
            }
            """
        )
        assert attrs_of(graph, "a") == {
            "llm_model": "claude-opus-4-6",
            "fidelity": "summary:high",
            "thread_id": "loop.a",
        }
        assert graph.nodes["b"].llm_model == "gpt-5.2"

    def test_quoted_keys(self) -> None:
        """A quoted key such as "human.default_choice" names the attribute it spells."""
        graph = parse('digraph G { gate ["human.default_choice"="[A] Approve", "shape"=hexagon] }')
        assert attrs_of(graph, "gate") == {
            "human.default_choice": "[A] Approve",
            "shape": "hexagon",
        }
        assert graph.nodes["gate"].handler_type == "wait.human"

    def test_bare_dotted_keys(self) -> None:
        """A bare dotted key such as manager.max_cycles is one key, and typed."""
        graph = parse("digraph G { boss [manager.max_cycles=3, manager.poll_interval=45s] }")
        assert attrs_of(graph, "boss") == {
            "manager.max_cycles": 3,
            "manager.poll_interval": Duration(45.0, "45s"),
        }

    def test_keys_with_dashes_and_colons_are_kept(self) -> None:
        """An unknown key with '-' or ':' in it is one key, not a port or a parse error."""
        graph = parse("digraph G {\n  x-y = 1\n  a [my-key=v, ns:key=w]\n}")
        assert graph.attrs["x-y"] == "1"
        assert attrs_of(graph, "a") == {"my-key": "v", "ns:key": "w"}


class TestStatements:
    """The statement forms of the grammar (§2.2) and the ways people write them."""

    def test_top_level_key_value_sets_graph_attribute(self) -> None:
        """key = value at the top of the body is a graph attribute; the last one wins."""
        graph = parse(
            """\
            digraph G {
                goal = "First"
                rankdir = LR
                goal = "Second";
            }
            """
        )
        assert dict(graph.attrs) == {"goal": "Second", "rankdir": "LR"}
        assert graph.nodes == {}

    def test_later_graph_attribute_wins_whatever_its_form(self) -> None:
        """Between a graph [...] block and a key = value line, the later one sets the value."""
        block_first = parse('digraph G {\n  graph [goal="A"]\n  goal = "B"\n}')
        line_first = parse('digraph G {\n  goal = "B"\n  graph [goal="A"]\n}')
        assert (block_first.goal, line_first.goal) == ("B", "A")
        assert block_first.attr_locations["goal"].line == 3
        assert line_first.attr_locations["goal"].line == 3

    def test_attributes_separated_by_newlines_without_commas(self) -> None:
        """Attributes on separate lines need no commas between them."""
        graph = parse(
            """\
            digraph G {
                plan [
                    shape=box
                    label="Plan"
                    max_retries=1
                ]
            }
            """
        )
        assert attrs_of(graph, "plan") == {"shape": "box", "label": "Plan", "max_retries": 1}

    def test_attributes_separated_by_semicolons(self) -> None:
        """DOT's ';' between attributes works like ','."""
        graph = parse("digraph G { plan [shape=box; label=Plan; max_retries=1] }")
        assert attrs_of(graph, "plan") == {"shape": "box", "label": "Plan", "max_retries": 1}

    def test_several_attribute_lists_merge(self) -> None:
        """a [x=1][y=2] gives the node both attributes."""
        graph = parse("digraph G { a [label=A][shape=box] }")
        assert attrs_of(graph, "a") == {"label": "A", "shape": "box"}

    def test_keywords_are_case_insensitive(self) -> None:
        """DIGRAPH, Node and EDGE are the keywords, as in Graphviz."""
        graph = parse("DIGRAPH G { Node [shape=hexagon] EDGE [weight=2] a -> b }")
        assert attrs_of(graph, "b") == {"shape": "hexagon"}
        assert graph.edges[0].weight == 2

    def test_anonymous_and_quoted_graph_names(self) -> None:
        """The graph name is optional and may be quoted or contain a dash."""
        assert parse("digraph { a }").name == ""
        assert parse('digraph "My pipeline" { a }').name == "My pipeline"
        assert parse("digraph release-2 { a }").name == "release-2"

    def test_subgraph_names_with_colons_name_no_node(self) -> None:
        """A subgraph named a:b is a subgraph, not a node called 'subgraph' with a port."""
        graph = parse("digraph G { subgraph phase:one { a } }")
        assert list(graph.nodes) == ["a"]

    def test_preprocessor_lines_are_ignored(self) -> None:
        """A line starting with '#' is skipped, as Graphviz does with cpp output."""
        graph = parse('digraph G {\n# 1 "pipeline.dot"\n  a\n}')
        assert list(graph.nodes) == ["a"]


class TestStrings:
    """Double-quoted strings (§2.4): escapes, line breaks, and text that looks like syntax."""

    def test_escapes_are_decoded(self) -> None:
        r"""\n, \t, \" and \\ in a string become a newline, a tab, a quote and a backslash."""
        graph = parse(r'digraph G { a [prompt="one\ntwo\tsaid \"hi\" C:\\dir"] }')
        assert graph.nodes["a"].prompt == 'one\ntwo\tsaid "hi" C:\\dir'

    def test_multi_line_strings_keep_their_line_breaks(self) -> None:
        """A string may span lines; its line breaks and indentation are part of it."""
        graph = orchestra.parse_dot('digraph G {\n  a [prompt="first\n    second"]\n  b\n}')
        assert graph.nodes["a"].prompt == "first\n    second"
        assert graph.nodes["b"].location is not None
        assert graph.nodes["b"].location.line == 4

    def test_backslash_newline_continues_the_line(self) -> None:
        """A backslash before a line break joins the two lines, as in Graphviz."""
        graph = orchestra.parse_dot('digraph G { a [prompt="one \\\ntwo"] }')
        assert graph.nodes["a"].prompt == "one two"

    def test_escaped_backslash_before_line_break_keeps_the_break(self) -> None:
        """In "x\\\\" + newline + "y" the backslash is escaped, so the line break stays."""
        graph = orchestra.parse_dot('digraph G { a [prompt="x\\\\\ny"] }')
        assert graph.nodes["a"].prompt == "x\\\ny"

    def test_backslash_crlf_continues_the_line(self) -> None:
        """A backslash before a Windows line break joins the lines too."""
        graph = orchestra.parse_dot('digraph G {\r\n  a [prompt="one \\\r\ntwo"]\r\n}\r\n')
        assert graph.nodes["a"].prompt == "one two"

    def test_graphviz_escapes_are_kept_as_written(self) -> None:
        r"""Graphviz's own escapes such as \l and \N are not decoded."""
        graph = parse(r'digraph G { a [label="left\lname \N"] }')
        assert graph.nodes["a"].label == r"left\lname \N"

    def test_syntax_inside_strings_is_text(self) -> None:
        """Braces, brackets, arrows, '=' and comment markers inside a string are text."""
        text = "x } ] [ -> -- = ; , // y /* z */ # w"
        graph = parse(f'digraph G {{ a [prompt="{text}"] }}')
        assert graph.nodes["a"].prompt == text
        assert list(graph.nodes) == ["a"]

    def test_plus_concatenates_strings(self) -> None:
        """Quoted strings joined by '+' are one string, as in Graphviz."""
        graph = parse('digraph G { a [prompt="Plan " + "the work", max_retries="1" + "2"] }')
        assert graph.nodes["a"].prompt == "Plan the work"
        assert graph.nodes["a"].max_retries == 12
        err = syntax_error('digraph G { a [timeout="15" + "x"] }')
        assert isinstance(err, AttributeValueError)
        assert "got '15x'" in err.message

    def test_unicode_text(self) -> None:
        """Non-ASCII text in strings and bare values survives intact."""
        graph = parse('digraph G { a [label="Révision ✓ 日本", note=café] }')
        assert attrs_of(graph, "a") == {"label": "Révision ✓ 日本", "note": "café"}


class TestScoping:
    """Default blocks and subgraphs (§2.10, §2.11): what applies where, and when."""

    def test_subgraph_defaults_do_not_leak_out(self) -> None:
        """node and edge defaults set in a subgraph stop applying when it closes."""
        graph = parse(
            """\
            digraph G {
                subgraph cluster_a {
                    node [thread_id="a", timeout=5m]
                    edge [weight=9]
                    inner
                    inner -> inner2
                }
                outer
                outer -> outer2
            }
            """
        )
        assert attrs_of(graph, "inner") == {"thread_id": "a", "timeout": Duration(300.0, "5m")}
        assert attrs_of(graph, "inner2") == attrs_of(graph, "inner")
        assert attrs_of(graph, "outer") == {}
        assert attrs_of(graph, "outer2") == {}
        assert [edge.weight for edge in graph.edges] == [9, 0]

    def test_subgraph_inherits_enclosing_defaults(self) -> None:
        """A subgraph starts with the defaults in force where it opens, and can override."""
        graph = parse(
            """\
            digraph G {
                node [shape=box, fidelity=full]
                subgraph outer {
                    node [fidelity=compact]
                    subgraph inner {
                        deep
                    }
                }
            }
            """
        )
        assert attrs_of(graph, "deep") == {"shape": "box", "fidelity": "compact"}

    def test_later_default_block_affects_only_later_nodes(self) -> None:
        """A node default changed part-way applies to the nodes after it, not before."""
        graph = parse(
            """\
            digraph G {
                node [shape=box]
                early
                node [shape=hexagon]
                late
                early -> late -> fresh
            }
            """
        )
        assert attrs_of(graph, "early") == {"shape": "box"}
        assert attrs_of(graph, "late") == {"shape": "hexagon"}
        assert attrs_of(graph, "fresh") == {"shape": "hexagon"}

    def test_later_edge_default_affects_only_later_edges(self) -> None:
        """An edge default changed part-way applies to the edges after it."""
        graph = parse("digraph G { a -> b  edge [weight=3]  b -> c }")
        assert [edge.weight for edge in graph.edges] == [0, 3]

    def test_node_redeclaration_merges_attributes(self) -> None:
        """A node declared again keeps its attributes and takes the new ones; later wins."""
        graph = parse(
            """\
            digraph G {
                a [label="A", shape=box]
                a -> b
                a [shape=hexagon, prompt="Decide"]
            }
            """
        )
        assert attrs_of(graph, "a") == {"label": "A", "shape": "hexagon", "prompt": "Decide"}
        assert list(graph.nodes) == ["a", "b"]

    def test_redeclaration_does_not_pick_up_newer_defaults(self) -> None:
        """Defaults apply when a node is created; mentioning it later adds none."""
        graph = parse("digraph G { a  node [shape=hexagon]  a [label=A] }")
        assert attrs_of(graph, "a") == {"label": "A"}

    def test_graph_block_inside_subgraph_is_not_a_graph_attribute(self) -> None:
        """graph [...] and key = value inside a subgraph describe the subgraph only."""
        graph = parse(
            """\
            digraph G {
                goal = "Outer"
                subgraph s {
                    graph [goal="Inner"]
                    label = "Inner label"
                    a
                }
            }
            """
        )
        assert dict(graph.attrs) == {"goal": "Outer"}
        assert set(graph.attr_locations) == {"goal"}


class TestClasses:
    """Node classes (§2.10, §2.12): the class attribute and classes derived from subgraphs."""

    def test_subgraph_label_derives_class(self) -> None:
        """label="Loop A" on a subgraph gives its nodes the class loop-a."""
        graph = parse('digraph G { subgraph cluster_x { label="Loop A"; plan; build } }')
        assert graph.nodes["plan"].classes == ("loop-a",)
        assert graph.nodes["build"].classes == ("loop-a",)

    def test_subgraph_label_from_graph_block(self) -> None:
        """A subgraph label written as graph [label=...] derives a class too."""
        graph = parse('digraph G { subgraph s { graph [label="Fast Path"] a } }')
        assert graph.nodes["a"].classes == ("fast-path",)

    def test_later_subgraph_label_derives_the_class(self) -> None:
        """When a subgraph sets its label twice, the later label gives the class."""
        graph = parse('digraph G { subgraph s { graph [label="First"]; label = "Second"; a } }')
        assert graph.nodes["a"].classes == ("second",)

    def test_derived_class_drops_punctuation(self) -> None:
        """Lowercased, spaces to hyphens, everything but letters, digits and '-' dropped."""
        graph = parse('digraph G { subgraph s { label="Review (v2)!"; a } }')
        assert graph.nodes["a"].classes == ("review-v2",)

    def test_nested_subgraph_classes_accumulate(self) -> None:
        """A node in nested labelled subgraphs has the class of each, outermost first."""
        graph = parse(
            'digraph G { subgraph a { label="Outer"; subgraph b { label="Inner"; n } } m }'
        )
        assert graph.nodes["n"].classes == ("outer", "inner")
        assert graph.nodes["m"].classes == ()

    def test_node_mentioned_again_in_subgraph_joins_its_class(self) -> None:
        """A node created outside a labelled subgraph and named inside it gets its class."""
        graph = parse('digraph G { a  subgraph s { label="Loop"; a } }')
        assert graph.nodes["a"].classes == ("loop",)

    def test_class_attribute_splits_on_commas(self) -> None:
        """class="code,critical" is two classes; spaces around names are dropped."""
        graph = parse('digraph G { a [class="code,critical"]  b [class=" code , fast "] }')
        assert graph.nodes["a"].classes == ("code", "critical")
        assert graph.nodes["b"].classes == ("code", "fast")

    def test_explicit_classes_come_before_derived_ones(self) -> None:
        """A node's own classes come first, then its subgraph's, each once."""
        graph = parse('digraph G { subgraph s { label="Code"; a [class="fast,code"] } }')
        assert graph.nodes["a"].classes == ("fast", "code")

    def test_subgraph_class_selects_stylesheet_rule(self) -> None:
        """A class derived from a subgraph label is matched by the model stylesheet."""
        graph = parse(
            """\
            digraph G {
                model_stylesheet = ".loop-a { llm_model: gpt-5.2; }"
                subgraph cluster_loop { label = "Loop A"; plan }
                other
            }
            """
        )
        nodes = orchestra.apply_transforms(graph).nodes
        assert nodes["plan"].llm_model == "gpt-5.2"
        assert nodes["other"].llm_model == ""


class TestLocations:
    """Where each node, edge and graph attribute was written, for diagnostics."""

    def test_node_location_is_its_first_declaration(self) -> None:
        """A node is located at its first declaration, even after an edge mentions it."""
        graph = orchestra.parse_dot("digraph G {\n  a -> b\n    b [label=B]\n  b [shape=box]\n}")
        b = graph.nodes["b"].location
        assert b is not None
        assert (b.line, b.column) == (3, 5)

    def test_node_only_in_edges_is_located_at_first_mention(self) -> None:
        """A node never declared is located where an edge first names it."""
        graph = orchestra.parse_dot("digraph G {\n  a ->\n     b\n  c -> b\n}")
        b = graph.nodes["b"].location
        assert b is not None
        assert (b.line, b.column) == (3, 6)

    def test_edges_are_located_at_their_source(self) -> None:
        """Each edge of a chain is located at its own source endpoint."""
        graph = orchestra.parse_dot("digraph G {\n  a -> b\n  a -> b -> c\n}")
        where = [(e.location.line, e.location.column) for e in graph.edges if e.location]
        assert where == [(2, 3), (3, 3), (3, 8)]

    def test_graph_attributes_are_located_at_their_key(self) -> None:
        """A graph attribute is located at its key, in a graph block or as key = value."""
        graph = orchestra.parse_dot('digraph G {\n  graph [goal="x"]\n  label = "y"\n}')
        where = {key: (loc.line, loc.column) for key, loc in graph.attr_locations.items()}
        assert where == {"goal": (2, 10), "label": (3, 3)}

    def test_locations_name_the_file(self, tmp_path: Path) -> None:
        """A graph read from a file records the path in each location."""
        path = tmp_path / "pipeline.dot"
        path.write_text("digraph G {\n  a -> b\n}\n")
        graph = orchestra.parse_dot(path)
        assert str(graph.nodes["a"].location) == f"{path}:2:3"
        assert graph.edges[0].location is not None
        assert graph.edges[0].location.file == str(path)

    def test_text_locations_have_no_file(self) -> None:
        """A graph parsed from text has locations without a file, shown as <string>."""
        graph = orchestra.parse_dot("digraph G {\n  a\n}")
        assert str(graph.nodes["a"].location) == "<string>:2:3"


class TestNodeAccessors:
    """Node properties that apply the spec's defaults and inheritance (§2.6, §2.8)."""

    def test_max_retries_inherits_default_max_retries(self) -> None:
        """A node without max_retries takes the graph's default_max_retries."""
        graph = parse("digraph G { default_max_retries = 3  a  b [max_retries=1] }")
        assert graph.nodes["a"].max_retries == 3
        assert graph.nodes["b"].max_retries == 1

    def test_max_retries_inherits_legacy_default_max_retry(self) -> None:
        """The legacy name default_max_retry is inherited the same way."""
        graph = parse("digraph G { graph [default_max_retry=2]  a }")
        assert graph.nodes["a"].max_retries == 2
        assert graph.default_max_retries == 2

    def test_default_max_retries_wins_over_legacy_name(self) -> None:
        """When both names are set, default_max_retries is the one used."""
        graph = parse("digraph G { default_max_retry = 5  default_max_retries = 1  a }")
        assert graph.nodes["a"].max_retries == 1

    def test_max_retries_defaults_to_zero(self) -> None:
        """With no max_retries anywhere, a node has no retries."""
        assert parse("digraph G { a }").nodes["a"].max_retries == 0

    @pytest.mark.parametrize(("shape", "handler_type"), sorted(SHAPE_HANDLER_TYPES.items()))
    def test_handler_type_follows_shape(self, shape: str, handler_type: str) -> None:
        """Each shape of the §2.8 table selects its handler type."""
        graph = parse(f"digraph G {{ a [shape={shape}] }}")
        assert graph.nodes["a"].handler_type == handler_type

    def test_type_takes_precedence_over_shape(self) -> None:
        """An explicit type wins over the shape's handler type."""
        graph = parse('digraph G { a [shape=hexagon, type="tool"] }')
        assert graph.nodes["a"].handler_type == "tool"

    def test_unknown_shape_means_codergen(self) -> None:
        """A shape the table does not list, or no shape, means an LLM (codergen) stage."""
        graph = parse("digraph G { a [shape=ellipse]  b }")
        assert graph.nodes["a"].handler_type == "codergen"
        assert graph.nodes["b"].handler_type == "codergen"


class TestSources:
    """What parse_dot accepts: a Path, a str path, or DOT text."""

    def test_pathlib_path(self, tmp_path: Path) -> None:
        """A pathlib.Path is read as a file, and the graph remembers it."""
        path = tmp_path / "p.dot"
        path.write_text(SIMPLE)
        graph = orchestra.parse_dot(path)
        assert graph.name == "Simple"
        assert graph.path == str(path)
        assert graph.source == SIMPLE

    def test_str_path(self, tmp_path: Path) -> None:
        """A str without a newline or '{' is a path."""
        path = tmp_path / "p.dot"
        path.write_text(SIMPLE)
        graph = orchestra.parse_dot(str(path))
        assert graph.name == "Simple"
        assert graph.path == str(path)

    def test_dot_text(self) -> None:
        """A str with a newline or '{' is DOT text; the graph has no path."""
        graph = orchestra.parse_dot("digraph G { a }")
        assert graph.name == "G"
        assert graph.path is None

    def test_byte_order_mark_is_skipped(self, tmp_path: Path) -> None:
        """A UTF-8 file that starts with a byte order mark parses."""
        path = tmp_path / "bom.dot"
        path.write_bytes(b"\xef\xbb\xbfdigraph G { a }")
        assert list(orchestra.parse_dot(path).nodes) == ["a"]

    def test_file_argument_names_text_in_errors(self) -> None:
        """file= names DOT text in the errors it raises."""
        with pytest.raises(DotSyntaxError) as info:
            orchestra.parse_dot("digraph G {\n  a -- b\n}", file="inline.dot")
        assert str(info.value).startswith("inline.dot:2:5: ")


class TestTransforms:
    """What apply_transforms does to a parsed graph, and does not do to it."""

    def test_goal_expansion_leaves_the_parsed_graph_alone(self) -> None:
        """$goal is expanded in a new graph; the one parse_dot returned is unchanged."""
        graph = parse('digraph G { goal = "ship v2"  a [prompt="Plan $goal now"] }')
        expanded = orchestra.apply_transforms(graph)
        assert expanded.nodes["a"].prompt == "Plan ship v2 now"
        assert graph.nodes["a"].prompt == "Plan $goal now"
        assert expanded is not graph


class TestDeepNesting:
    """Subgraphs nested deep: parsed in linear time up to a limit, rejected beyond it."""

    @staticmethod
    def nested(depth: int) -> str:
        opening = "".join(f"subgraph s{i} {{\n" for i in range(depth))
        return f"digraph G {{\n{opening}a -> b [label=x]\n{'}' * depth}\n}}"

    @pytest.fixture
    def subgraphs_built(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        """Counts the subgraph objects pydot builds while parsing."""
        built: list[int] = []
        original = pydot.core.Subgraph.__init__

        def counting(self: Any, *args: Any, **kwargs: Any) -> None:
            built.append(1)
            original(self, *args, **kwargs)

        monkeypatch.setattr(pydot.core.Subgraph, "__init__", counting)
        return built

    def test_deepest_allowed_nesting_parses(self) -> None:
        """Subgraphs nested to the limit parse, and the innermost nodes are found."""
        graph = orchestra.parse_dot(self.nested(MAX_SUBGRAPH_NESTING))
        assert edge_list(graph) == [("a", "b")]
        assert graph.edges[0].label == "x"

    def test_parsing_work_grows_linearly_with_nesting(self, subgraphs_built: list[int]) -> None:
        """Ten nested subgraphs are parsed about ten times, not 2**10 times."""
        orchestra.parse_dot(self.nested(10))
        assert len(subgraphs_built) <= 20

    def test_nesting_beyond_the_limit_is_rejected_at_the_keyword(self) -> None:
        """One subgraph more than the limit is an error at its 'subgraph' keyword."""
        depth = MAX_SUBGRAPH_NESTING + 1
        err = syntax_error(self.nested(depth))
        assert (err.line, err.column) == (depth + 1, 1)
        assert f"nested more than {MAX_SUBGRAPH_NESTING} deep" in err.message


class TestBadInput:
    """Malformed input: a DotSyntaxError at the exact line and column, saying what was
    expected, or a PipelineFileError for a file that cannot be read as DOT text."""

    def test_missing_closing_brace(self) -> None:
        """A body left open is reported at the end of the file."""
        err = syntax_error("digraph G {\n  a -> b\n")
        assert (err.line, err.column) == (3, 1)
        assert err.message == "expected '}' to close the block before end of file"

    def test_extra_closing_brace(self) -> None:
        """A '}' after the graph has closed is reported where it stands."""
        err = syntax_error("digraph G {\n  a -> b\n}\n}\n")
        assert (err.line, err.column) == (4, 1)
        assert err.message == "unexpected '}' after the graph's closing '}'"

    def test_missing_closing_bracket(self) -> None:
        """An attribute list left open is reported at the end of the file."""
        err = syntax_error('digraph G {\n  a [label="x"\n')
        assert (err.line, err.column) == (3, 1)
        assert err.message == "expected ']' to close the attribute list"

    def test_undirected_edge(self) -> None:
        """'--' is rejected at the operator, pointing to '->'."""
        err = syntax_error("digraph G {\n  a -- b\n}")
        assert (err.line, err.column) == (2, 5)
        assert err.message == "undirected edge '--': Attractor pipelines use directed edges ('->')"

    def test_strict_graph(self) -> None:
        """'strict digraph' is rejected at 'strict'."""
        err = syntax_error("strict digraph G {\n  a\n}")
        assert (err.line, err.column) == (1, 1)
        assert "'strict' graphs are not part of the Attractor subset" in err.message

    def test_two_graphs(self) -> None:
        """A second graph in the file is rejected where it starts."""
        err = syntax_error("digraph A {\n  a\n}\ndigraph B {\n  b\n}\n")
        assert (err.line, err.column) == (4, 1)
        assert err.message == "only one graph per file: a second graph starts here"

    def test_undirected_graph(self) -> None:
        """'graph' instead of 'digraph' is rejected, saying to write 'digraph'."""
        err = syntax_error("graph G {\n  a\n}")
        assert (err.line, err.column) == (1, 1)
        assert "write 'digraph'" in err.message

    def test_missing_digraph_keyword(self) -> None:
        """Text that does not start with 'digraph' says that 'digraph' was expected."""
        err = syntax_error("\n  pipeline G { a }")
        assert (err.line, err.column) == (2, 3)
        assert err.message == "expected 'digraph' to start the pipeline, found 'pipeline'"

    def test_quoted_node_id(self) -> None:
        """A quoted node id is rejected: ids are bare identifiers, names go in label."""
        err = syntax_error('digraph G {\n  "Run tests" [shape=box]\n}')
        assert (err.line, err.column) == (2, 3)
        assert "node ids must be bare identifiers" in err.message
        assert "'label'" in err.message

    def test_quoted_edge_endpoint(self) -> None:
        """A quoted edge target is rejected at the target."""
        err = syntax_error('digraph G {\n  a -> "b"\n}')
        assert (err.line, err.column) == (2, 8)
        assert "is quoted" in err.message

    def test_numeric_node_id(self) -> None:
        """A number is not a node id."""
        err = syntax_error("digraph G {\n  42 [label=x]\n}")
        assert (err.line, err.column) == (2, 3)
        assert "node id '42' is not an identifier" in err.message
        assert "[A-Za-z_][A-Za-z0-9_]*" in err.message

    def test_port(self) -> None:
        """a:n (a node with a port) is rejected, saying ports are not supported."""
        err = syntax_error("digraph G {\n  a:n -> b\n}")
        assert (err.line, err.column) == (2, 3)
        assert "ports are not supported" in err.message

    def test_bad_duration(self) -> None:
        """timeout=15x is an AttributeValueError at the value, naming the attribute."""
        with pytest.raises(AttributeValueError) as info:
            orchestra.parse_dot("digraph G {\n  a [timeout=15x]\n}")
        err = info.value
        assert isinstance(err, DotSyntaxError)
        assert (err.line, err.column) == (2, 14)
        assert "'timeout'" in err.message
        assert "expected a duration" in err.message
        assert "'15x'" in err.message

    def test_bad_integer(self) -> None:
        """max_retries=abc is rejected at the value: an integer was expected."""
        err = syntax_error("digraph G {\n  a [max_retries=abc]\n}")
        assert isinstance(err, AttributeValueError)
        assert (err.line, err.column) == (2, 18)
        assert err.message == (
            "node attribute 'max_retries': expected an integer such as 3, got 'abc'"
        )

    def test_bad_boolean(self) -> None:
        """goal_gate=maybe is rejected at the value: true or false was expected."""
        err = syntax_error("digraph G {\n  a [goal_gate=maybe]\n}")
        assert isinstance(err, AttributeValueError)
        assert (err.line, err.column) == (2, 16)
        assert err.message == "node attribute 'goal_gate': expected true or false, got 'maybe'"

    def test_bad_values_name_their_owner(self) -> None:
        """A bad edge or graph attribute value says whose attribute it is."""
        edge = syntax_error("digraph G {\n  a -> b [weight=heavy]\n}")
        assert (edge.line, edge.column) == (2, 18)
        assert edge.message.startswith("edge attribute 'weight': expected an integer")
        graph = syntax_error("digraph G {\n  default_max_retries = many\n}")
        assert (graph.line, graph.column) == (2, 25)
        assert graph.message.startswith("graph attribute 'default_max_retries': expected")

    def test_bad_value_in_default_block(self) -> None:
        """A bad value in a node default block is caught like any other."""
        err = syntax_error("digraph G {\n  node [timeout=soon]\n}")
        assert (err.line, err.column) == (2, 17)
        assert "'timeout'" in err.message

    def test_unterminated_string(self) -> None:
        """A string with no closing quote is reported at its opening quote."""
        err = syntax_error('digraph G {\n  a [label="x]\n}')
        assert (err.line, err.column) == (2, 12)
        assert err.message == "unterminated string: no closing '\"' before end of file"

    def test_unterminated_block_comment(self) -> None:
        """A '/*' with no '*/' is reported where the comment opens."""
        err = syntax_error("digraph G {\n  a /* x\n}")
        assert (err.line, err.column) == (2, 5)
        assert err.message == "unterminated comment: no closing '*/' before end of file"

    def test_html_label(self) -> None:
        """An HTML-like value is rejected, asking for a double-quoted string."""
        err = syntax_error("digraph G {\n  a [label=<b>x</b>]\n}")
        assert (err.line, err.column) == (2, 12)
        assert "HTML-like values" in err.message
        assert "double-quoted string" in err.message

    def test_empty_text(self) -> None:
        """Empty text says a digraph was expected."""
        err = syntax_error("")
        assert (err.line, err.column) == (1, 1)
        assert err.message == "empty pipeline: expected 'digraph name { ... }'"

    def test_whitespace_and_comment_only_text(self) -> None:
        """Text with only blanks and comments is empty, reported at its end."""
        err = syntax_error("  \n  // nothing\n  ")
        assert (err.line, err.column) == (3, 3)
        assert err.message.startswith("empty pipeline")

    def test_anonymous_block(self) -> None:
        """A '{ }' block without 'subgraph' is rejected at the brace."""
        err = syntax_error("digraph G {\n  { a b }\n}")
        assert (err.line, err.column) == (2, 3)
        assert err.message == "an anonymous block '{ ... }' needs the 'subgraph' keyword"

    def test_subgraph_as_edge_endpoint(self) -> None:
        """a -> { b c } is rejected: endpoints are node ids."""
        err = syntax_error("digraph G {\n  a -> { b c }\n}")
        assert (err.line, err.column) == (2, 8)
        assert err.message == "edge endpoints must be node ids, not subgraphs"

    def test_keyword_as_edge_source(self) -> None:
        """A node named 'node' is rejected as a keyword, at the start of an edge."""
        err = syntax_error("digraph G {\n  node -> b\n}")
        assert (err.line, err.column) == (2, 3)
        assert err.message == "'node' is a DOT keyword and cannot be a node id"

    def test_keyword_as_edge_target(self) -> None:
        """A node named 'edge' is rejected as a keyword, at the end of an edge."""
        err = syntax_error("digraph G {\n  a -> edge\n}")
        assert (err.line, err.column) == (2, 8)
        assert err.message == "'edge' is a DOT keyword and cannot be a node id"

    def test_attribute_without_value(self) -> None:
        """[key] without '=' says '=' was expected after the key."""
        err = syntax_error("digraph G {\n  a [key]\n}")
        assert (err.line, err.column) == (2, 9)
        assert err.message == "expected '=' after attribute 'key', found ']'"

    def test_attribute_without_name(self) -> None:
        """[=x] says an attribute name was expected."""
        err = syntax_error("digraph G {\n  a [=x]\n}")
        assert (err.line, err.column) == (2, 6)
        assert err.message == "expected an attribute name, found '='"

    def test_edge_without_target(self) -> None:
        """a -> with nothing after it says a node id was expected."""
        err = syntax_error("digraph G {\n  a ->\n}")
        assert (err.line, err.column) == (3, 1)
        assert err.message == "expected a node id as the edge target, found '}'"

    def test_stray_character(self) -> None:
        """A character DOT does not use is named, control characters by code point."""
        err = syntax_error("digraph G {\n  a\x00\n}")
        assert (err.line, err.column) == (2, 4)
        assert err.message == "unexpected character U+0000"
        assert syntax_error("digraph G {\n  a @\n}").message == "unexpected character '@'"

    def test_error_renders_as_file_line_column(self, tmp_path: Path) -> None:
        """str(err) of a file's error starts FILE:LINE:COL: and the excerpt shows a caret."""
        path = tmp_path / "broken.dot"
        path.write_text("digraph G {\n  a -- b\n}\n")
        with pytest.raises(DotSyntaxError) as info:
            orchestra.parse_dot(path)
        err = info.value
        assert err.file == str(path)
        assert str(err) == f"{path}:2:5: {err.message}"
        assert err.excerpt() == "      a -- b\n        ^"

    def test_text_errors_render_as_string_line_column(self) -> None:
        """str(err) for DOT text starts <string>:LINE:COL:."""
        assert str(syntax_error("digraph G {\n  a -- b\n}")).startswith("<string>:2:5: ")

    def test_syntax_errors_are_value_errors(self) -> None:
        """A DotSyntaxError is a ValueError and an OrchestraError."""
        err = syntax_error("digraph G {")
        assert isinstance(err, ValueError)
        assert isinstance(err, OrchestraError)

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty file is a PipelineFileError saying a digraph was expected."""
        path = tmp_path / "empty.dot"
        path.write_text("")
        err = file_error(path)
        assert (err.path, err.problem) == (str(path), "is empty: expected 'digraph name { ... }'")
        assert str(err) == f"{path}: is empty: expected 'digraph name {{ ... }}'"

    def test_whitespace_only_file(self, tmp_path: Path) -> None:
        """A file of only blank lines is empty."""
        path = tmp_path / "blank.dot"
        path.write_text("  \n\t\n")
        assert file_error(path).problem == "is empty: expected 'digraph name { ... }'"

    def test_binary_file(self, tmp_path: Path) -> None:
        """A file with NUL bytes is binary, not DOT text."""
        path = tmp_path / "image.dot"
        path.write_bytes(b"digraph G {\x00\x01\x02}")
        assert file_error(path).problem == "is a binary file, not DOT text"

    def test_non_utf8_file(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 names the line and the first bad byte."""
        path = tmp_path / "latin1.dot"
        path.write_bytes('digraph G {\n  a [label="café"]\n}\n'.encode("latin-1"))
        assert file_error(path).problem == "line 2: is not UTF-8 text (byte 0xe9)"

    def test_missing_file(self, tmp_path: Path) -> None:
        """A path that does not exist says so, as a str or as a Path."""
        path = tmp_path / "nowhere.dot"
        assert file_error(path).problem == "no such file"
        assert file_error(str(path)).problem == "no such file"

    def test_directory(self, tmp_path: Path) -> None:
        """A directory is not a DOT file."""
        assert file_error(tmp_path).problem == "is a directory, not a DOT file"

    def test_path_with_nul_character(self) -> None:
        """A path with a NUL in it is a PipelineFileError, not a bare ValueError."""
        assert file_error("pipeline\x00.dot").problem == (
            "is not a valid path: it contains a NUL character"
        )

    def test_file_errors_are_os_errors(self, tmp_path: Path) -> None:
        """A PipelineFileError is an OSError and an OrchestraError."""
        err = file_error(tmp_path / "nowhere.dot")
        assert isinstance(err, OSError)
        assert isinstance(err, OrchestraError)
