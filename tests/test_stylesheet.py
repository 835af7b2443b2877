"""The model stylesheet (spec §8): parsing, selectors, specificity and the built-in transform."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestra.errors import StylesheetSyntaxError
from orchestra.graph import Edge, Graph, Node
from orchestra.transforms.stylesheet import (
    RECOGNISED_PROPERTIES,
    Selector,
    SelectorKind,
    Stylesheet,
    StylesheetTransform,
    apply_stylesheet,
    parse_stylesheet,
)

LLM_KEYS = ("llm_model", "llm_provider", "reasoning_effort")


def graph_with(stylesheet: str, *nodes: Node) -> Graph:
    return Graph(
        "G",
        attrs={"goal": "test", "model_stylesheet": stylesheet},
        nodes={node.id: node for node in nodes},
        edges=(),
    )


def llm_attrs(node: Node) -> dict[str, object]:
    return {key: node.attrs[key] for key in LLM_KEYS if key in node.attrs}


class TestSpecChecklist:
    """The spec's §11.10 checklist, one test per item."""

    def test_stylesheet_is_parsed_from_graph_model_stylesheet_attribute(self) -> None:
        """The transform reads its rules from the graph's model_stylesheet attribute."""
        graph = graph_with("* { llm_model: gpt-5.2; llm_provider: openai }", Node("plan"))
        node = apply_stylesheet(graph).nodes["plan"]
        assert node.llm_model == "gpt-5.2"
        assert node.llm_provider == "openai"

    def test_selectors_by_shape_name_work(self) -> None:
        """A shape selector matches nodes of that shape, including the default shape box."""
        graph = graph_with(
            'box { llm_model: "claude-opus-4-6" }',
            Node("boxed", {"shape": "box"}),
            Node("default_shape"),
            Node("gate", {"shape": "hexagon"}),
        )
        nodes = apply_stylesheet(graph).nodes
        assert nodes["boxed"].llm_model == "claude-opus-4-6"
        assert nodes["default_shape"].llm_model == "claude-opus-4-6"
        assert "llm_model" not in nodes["gate"].attrs

    def test_selectors_by_class_name_work(self) -> None:
        """A class selector matches nodes that have the class, and no others."""
        graph = graph_with(
            '.fast { llm_model: "gemini-3-flash-preview" }',
            Node("quick", {"class": "fast"}, classes=("fast",)),
            Node("slow", {"class": "careful"}, classes=("careful",)),
        )
        nodes = apply_stylesheet(graph).nodes
        assert nodes["quick"].llm_model == "gemini-3-flash-preview"
        assert "llm_model" not in nodes["slow"].attrs

    def test_selectors_by_node_id_work(self) -> None:
        """An id selector matches the node with that id, and no others."""
        graph = graph_with('#review { reasoning_effort: "high" }', Node("review"), Node("plan"))
        nodes = apply_stylesheet(graph).nodes
        assert nodes["review"].attrs["reasoning_effort"] == "high"
        assert "reasoning_effort" not in nodes["plan"].attrs

    def test_specificity_order_universal_shape_class_id(self) -> None:
        """Id beats class beats shape beats universal, whatever order the rules are written in."""
        stylesheet = """
            #everything { llm_model: by-id }
            .code { llm_model: by-class }
            box { llm_model: by-shape }
            * { llm_model: by-universal }
        """
        graph = graph_with(
            stylesheet,
            Node("everything", {"shape": "box"}, classes=("code",)),
            Node("classy", {"shape": "box"}, classes=("code",)),
            Node("boxy", {"shape": "box"}),
            Node("other", {"shape": "hexagon"}),
        )
        nodes = apply_stylesheet(graph).nodes
        assert nodes["everything"].llm_model == "by-id"
        assert nodes["classy"].llm_model == "by-class"
        assert nodes["boxy"].llm_model == "by-shape"
        assert nodes["other"].llm_model == "by-universal"

    def test_stylesheet_properties_overridden_by_explicit_node_attributes(self) -> None:
        """A node's own attribute wins even over an id rule; other properties still apply."""
        graph = graph_with(
            "#plan { llm_model: gpt-5.2; llm_provider: openai }",
            Node("plan", {"llm_model": "claude-opus-4-6"}),
        )
        node = apply_stylesheet(graph).nodes["plan"]
        assert node.llm_model == "claude-opus-4-6"
        assert node.llm_provider == "openai"


class TestCascade:
    """How rules combine when several match a node."""

    def test_later_rule_of_equal_specificity_wins(self) -> None:
        """Of two matching class rules, the one written later sets the property."""
        node = Node("n", classes=("a", "b"))
        first = parse_stylesheet(".a { llm_model: one } .b { llm_model: two }")
        second = parse_stylesheet(".b { llm_model: two } .a { llm_model: one }")
        assert first.resolve(node) == {"llm_model": "two"}
        assert second.resolve(node) == {"llm_model": "one"}

    def test_each_property_resolves_separately(self) -> None:
        """A more specific rule overrides only the properties it sets."""
        stylesheet = parse_stylesheet(
            "* { llm_provider: anthropic } .code { llm_model: opus } #n { reasoning_effort: low }"
        )
        assert stylesheet.resolve(Node("n", classes=("code",))) == {
            "llm_provider": "anthropic",
            "llm_model": "opus",
            "reasoning_effort": "low",
        }

    def test_spec_example_gives_the_models_it_describes(self) -> None:
        """The §8.6 example: plan gets sonnet, implement opus, critical_review gpt-5.2."""
        stylesheet = """
            * { llm_model: claude-sonnet-4-5; llm_provider: anthropic; }
            .code { llm_model: claude-opus-4-6; llm_provider: anthropic; }
            #critical_review { llm_model: gpt-5.2; llm_provider: openai; reasoning_effort: high; }
        """
        graph = graph_with(
            stylesheet,
            Node("start", {"shape": "Mdiamond"}),
            Node("exit", {"shape": "Msquare"}),
            Node("plan", {"label": "Plan", "class": "planning"}, classes=("planning",)),
            Node("implement", {"label": "Implement", "class": "code"}, classes=("code",)),
            Node("critical_review", {"label": "Critical Review"}, classes=("code",)),
        )
        nodes = apply_stylesheet(graph).nodes
        sonnet = {"llm_model": "claude-sonnet-4-5", "llm_provider": "anthropic"}
        assert llm_attrs(nodes["plan"]) == sonnet
        assert llm_attrs(nodes["implement"]) == {
            "llm_model": "claude-opus-4-6",
            "llm_provider": "anthropic",
        }
        assert llm_attrs(nodes["critical_review"]) == {
            "llm_model": "gpt-5.2",
            "llm_provider": "openai",
            "reasoning_effort": "high",
        }


class TestParsing:
    """What parse_stylesheet accepts and what it builds."""

    @pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
    def test_empty_stylesheet_has_no_rules(self, text: str) -> None:
        """Empty or whitespace-only text is a valid stylesheet with no rules."""
        assert parse_stylesheet(text) == Stylesheet(())

    def test_rules_keep_selector_specificity_and_order(self) -> None:
        """Each rule records its selector, specificity, declarations and position."""
        rules = parse_stylesheet("* { llm_model: a } box { llm_model: b; llm_provider: c; }").rules
        assert [(str(r.selector), r.specificity, r.order) for r in rules] == [
            ("*", 0, 0),
            ("box", 1, 1),
        ]
        assert rules[1].declarations == (("llm_model", "b"), ("llm_provider", "c"))

    def test_selector_specificities(self) -> None:
        """Universal 0, shape 1, class 2, id 3."""
        text = "* {llm_model:a} box {llm_model:b} .c {llm_model:c} #i {llm_model:d}"
        stylesheet = parse_stylesheet(text)
        assert [r.selector.kind for r in stylesheet.rules] == list(SelectorKind)
        assert [r.specificity for r in stylesheet.rules] == [0, 1, 2, 3]

    def test_quoted_values_are_unescaped(self) -> None:
        """A double-quoted value may hold spaces, ';', '}' and escaped quotes and backslashes."""
        stylesheet = parse_stylesheet(r'* { llm_model: "a \"b\"; c} \\ d"; llm_provider: "" }')
        assert stylesheet.rules[0].declarations == (
            ("llm_model", 'a "b"; c} \\ d'),
            ("llm_provider", ""),
        )

    def test_bare_values_run_to_a_separator(self) -> None:
        """A bare value is everything up to whitespace, ';' or '}'."""
        stylesheet = parse_stylesheet("*{llm_model:gpt-5.2;llm_provider:open/ai}")
        assert stylesheet.rules[0].declarations == (
            ("llm_model", "gpt-5.2"),
            ("llm_provider", "open/ai"),
        )

    def test_selector_list_makes_one_rule_per_selector(self) -> None:
        """'.a, #b { ... }' applies its declarations to both selectors, at one position."""
        rules = parse_stylesheet(".a, #b {\n reasoning_effort: low }").rules
        assert [r.selector for r in rules] == [
            Selector(SelectorKind.CLASS, "a"),
            Selector(SelectorKind.ID, "b"),
        ]
        assert {r.order for r in rules} == {0}
        assert all(r.declarations == (("reasoning_effort", "low"),) for r in rules)

    def test_class_names_may_hold_hyphens_digits_and_underscores(self) -> None:
        """A subgraph-derived class such as 'loop-a' can be selected."""
        stylesheet = parse_stylesheet(".loop-a_2 { llm_model: m }")
        assert stylesheet.resolve(Node("n", classes=("loop-a_2",))) == {"llm_model": "m"}


class TestSyntaxErrors:
    """Malformed stylesheets raise StylesheetSyntaxError at a line and column in the text."""

    @pytest.mark.parametrize(
        ("text", "message", "line", "column"),
        [
            pytest.param(
                ".code llm_model: x }",
                "expected '{' after selector '.code', found 'llm_model'",
                1,
                7,
                id="missing-open-brace",
            ),
            pytest.param(
                "* { llm_model claude }",
                "expected ':' after property 'llm_model', found 'claude'",
                1,
                15,
                id="missing-colon",
            ),
            pytest.param(
                '* { llm_model: "claude }',
                "unterminated string",
                1,
                16,
                id="unterminated-string",
            ),
            pytest.param(
                "; * { llm_model: x }",
                "expected a selector ('*', a shape, '.class' or '#id'), found ';'",
                1,
                1,
                id="not-a-selector",
            ),
            pytest.param(
                "#review { \n  reasoning_effort: high\n",
                "unclosed '{' opened at line 1, column 9",
                3,
                1,
                id="unclosed-brace",
            ),
            pytest.param(
                "* {\n  llm_modle: x }",
                "unknown property 'llm_modle'; "
                "expected one of llm_model, llm_provider, reasoning_effort",
                2,
                3,
                id="unknown-property",
            ),
            pytest.param(
                "* { llm_model: ; }",
                "expected a value for 'llm_model', found ';'",
                1,
                16,
                id="missing-value",
            ),
            pytest.param(
                "* { llm_model: a llm_provider: b }",
                "expected ';' or '}' after the value of 'llm_model', found 'llm_provider'",
                1,
                18,
                id="missing-semicolon",
            ),
            pytest.param(
                "* { }",
                "expected a property name, found '}'",
                1,
                5,
                id="empty-block",
            ),
            pytest.param(
                ".{ llm_model: x }",
                "expected a class name after '.', found '{'",
                1,
                2,
                id="empty-class",
            ),
            pytest.param(
                "#",
                "expected a node id after '#', found end of stylesheet",
                1,
                2,
                id="empty-id",
            ),
            pytest.param(
                "* { llm_model: a }\n\n  box llm_model",
                "expected '{' after selector 'box', found 'llm_model'",
                3,
                7,
                id="error-on-a-later-line",
            ),
        ],
    )
    def test_error_position_and_message(
        self, text: str, message: str, line: int, column: int
    ) -> None:
        """The error says what was expected and points at where it went wrong."""
        with pytest.raises(StylesheetSyntaxError) as caught:
            parse_stylesheet(text)
        assert (caught.value.message, caught.value.line, caught.value.column) == (
            message,
            line,
            column,
        )
        assert str(caught.value) == f"line {line}, column {column}: {message}"

    def test_unknown_property_lists_recognised_ones(self) -> None:
        """The message for a property Orchestra does not know names every recognised one."""
        with pytest.raises(StylesheetSyntaxError, match="unknown property 'backend'") as caught:
            parse_stylesheet("* { backend: claude_code }")
        assert all(name in caught.value.message for name in RECOGNISED_PROPERTIES)

    @given(
        st.one_of(
            st.text(),
            st.lists(st.sampled_from([*'*#.{};:," \\\n\tabx-_', *LLM_KEYS])).map("".join),
        )
    )
    def test_arbitrary_text_parses_or_raises_syntax_error(self, text: str) -> None:
        """Any text yields a Stylesheet or a StylesheetSyntaxError, never another exception."""
        line, column = 1, 1
        try:
            assert isinstance(parse_stylesheet(text), Stylesheet)
        except StylesheetSyntaxError as error:
            line, column = error.line, error.column
        assert 1 <= line <= text.count("\n") + 1
        assert column >= 1


class TestTransform:
    """apply_stylesheet and StylesheetTransform as a graph transform."""

    def test_apply_does_not_mutate_its_input(self) -> None:
        """The input graph and its nodes are unchanged; the result is a new graph."""
        plan = Node("plan", {"label": "Plan"})
        graph = Graph(
            "G",
            attrs={"model_stylesheet": "* { llm_model: m }"},
            nodes={"plan": plan, "exit": Node("exit", {"shape": "Msquare"})},
            edges=(Edge("plan", "exit"),),
        )
        result = apply_stylesheet(graph)
        assert result is not graph
        assert graph.nodes["plan"] == plan
        assert dict(graph.nodes["plan"].attrs) == {"label": "Plan"}
        assert dict(result.nodes["plan"].attrs) == {"label": "Plan", "llm_model": "m"}
        assert result.edges == graph.edges
        assert result.attrs == graph.attrs

    def test_graph_without_stylesheet_is_returned_unchanged(self) -> None:
        """No model_stylesheet (or a blank one) leaves the graph as it is."""
        graph = graph_with("  ", Node("plan"))
        assert apply_stylesheet(graph) is graph
        bare = Graph("G", nodes={"plan": Node("plan")})
        assert apply_stylesheet(bare) is bare

    def test_unparseable_stylesheet_leaves_graph_for_validation(self) -> None:
        """A stylesheet with a syntax error is left for validation to report."""
        graph = graph_with("* { llm_model claude }", Node("plan"))
        assert apply_stylesheet(graph) is graph

    def test_transform_object_applies_the_stylesheet(self) -> None:
        """StylesheetTransform is named model_stylesheet and applies apply_stylesheet."""
        transform = StylesheetTransform()
        graph = graph_with("* { llm_provider: anthropic }", Node("plan"))
        assert transform.name == "model_stylesheet"
        assert transform.apply(graph).nodes["plan"].llm_provider == "anthropic"
