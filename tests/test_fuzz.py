"""Fuzzing the pipeline front end: whatever text parse_dot is given, it and apply_transforms
and validate either succeed or raise an OrchestraError, and a syntax error points inside the
text. Well-formed pipelines, however odd their names and strings, always parse."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orchestra
from orchestra import Diagnostic
from orchestra.attributes import (
    EDGE_ATTRIBUTES,
    GRAPH_ATTRIBUTES,
    NODE_ATTRIBUTES,
    AttrType,
    Value,
    convert,
)
from orchestra.errors import DotSyntaxError, OrchestraError

CORPUS = Path(__file__).resolve().parent / "corpus" / "dot"

#: small valid pipelines that between them use comments, escapes, subgraphs, default blocks,
#: quoted dotted keys, newline-separated attributes and a model stylesheet
SEED_FILES = (
    "fkyeah-conformance/01-parsing/06-comments-in-strings/pipeline.dot",
    "fkyeah-conformance/01-parsing/09-escaped-strings/pipeline.dot",
    "fkyeah-conformance/03-execution/17-model-stylesheet/pipeline.dot",
    "fkyeah-conformance-newer/03-execution/23-manager-loop/pipeline-child.dot",
    "brynary-attractor/pipelines/factory/implement.dot",
    "gutelius-attractor/docs/examples/ch05-human-review.dot",
)

# Each test sets max_examples: pydot costs a few milliseconds per statement, and the counts
# are sized so that the whole file runs in about 30 s on two cores.
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYWORDS = frozenset({"strict", "graph", "digraph", "subgraph", "node", "edge"})

FRAGMENTS = (
    "digraph",
    "graph",
    "subgraph",
    "strict",
    "node",
    "edge",
    "G",
    "start",
    "exit",
    "a",
    "b",
    "_x1",
    "42",
    "-1",
    "1.5",
    "900s",
    "15x",
    "true",
    "maybe",
    "->",
    "--",
    "-",
    "{",
    "}",
    "[",
    "]",
    "=",
    ";",
    ",",
    ":",
    ".",
    "+",
    "<",
    ">",
    "#",
    '"',
    '\\"',
    "\\",
    "//",
    "/*",
    "*/",
    "\n",
    "\r\n",
    " ",
    "\t",
    "\x00",
    "é",
    "日本",
    "\u2028",
    "😀",
    "shape",
    "Mdiamond",
    "Msquare",
    "hexagon",
    "label",
    "prompt",
    "$goal",
    "goal",
    "timeout",
    "max_retries",
    "goal_gate",
    "class",
    "weight",
    "condition",
    "outcome=success",
    "model_stylesheet",
    "human.default_choice",
)


@pytest.fixture(scope="module", autouse=True)
def _empty_working_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Text that reads as a relative path (no newline, no '{') names no file."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(scope="module")
def seeds() -> list[str]:
    """The seed pipelines' text; a missing corpus is an error, not a skip."""
    return [(CORPUS / name).read_text(encoding="utf-8") for name in SEED_FILES]


def front_end(text: str) -> list[Diagnostic] | OrchestraError:
    """Parse, transform and validate ``text``: its diagnostics, or the OrchestraError raised.

    Any other exception propagates and fails the test; a DotSyntaxError about the text
    itself must have a line and column inside it.
    """
    try:
        graph = orchestra.parse_dot(text)
        return orchestra.validate(orchestra.apply_transforms(graph))
    except DotSyntaxError as err:
        if err.file is None and err.line is not None:
            assert_inside(text, err)
        return err
    except OrchestraError as err:
        return err


def assert_inside(text: str, err: DotSyntaxError) -> None:
    lines = text.split("\n")
    assert err.line is not None
    assert err.column is not None
    assert 1 <= err.line <= len(lines), str(err)
    assert 1 <= err.column <= len(lines[err.line - 1]) + 1, str(err)


@st.composite
def dot_fragments(draw: st.DrawFn) -> str:
    """Text made of DOT-ish pieces, sometimes inside a digraph body so it gets further."""
    pieces = draw(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=40))
    body = draw(st.sampled_from(("", " ", "\n"))).join(pieces)
    if draw(st.booleans()):
        return f"digraph G {{\n{body}\n}}\n"
    return body


def mutations(texts: list[str]) -> st.SearchStrategy[str]:
    """One of ``texts`` after a few random edits: insert, delete, replace, truncate."""

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        text = draw(st.sampled_from(texts))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(text)))
            edit = draw(st.sampled_from(("insert", "fragment", "delete", "replace", "truncate")))
            if edit == "insert":
                text = text[:at] + draw(st.characters()) + text[at:]
            elif edit == "fragment":
                text = text[:at] + draw(st.sampled_from(FRAGMENTS)) + text[at:]
            elif edit == "delete":
                text = text[:at] + text[at + draw(st.integers(1, 8)) :]
            elif edit == "replace":
                text = text[:at] + draw(st.characters()) + text[at + 1 :]
            else:
                text = text[:at]
        return text

    return mutate()


# -- well-formed pipelines -----------------------------------------------------------------
#
# Each generated attribute comes with its key and value as the parser should read them, and
# each pipeline with a model of the graph it should become: defaults applied where they are in
# scope, later values winning, known attributes typed by the spec's tables.


@attrs.frozen
class Attribute:
    """One generated attribute: how it is written, and what the parser should read."""

    key_text: str
    value_text: str
    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key_text}={self.value_text}"


@attrs.frozen
class Expected:
    """The graph a generated pipeline should parse to."""

    graph_attrs: dict[str, Value]
    #: node id -> attributes, in order of first mention
    nodes: dict[str, dict[str, Value]]
    #: (source, target, attributes) in the order written
    edges: list[tuple[str, str, dict[str, Value]]]


identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True).filter(
    lambda name: name.lower() not in KEYWORDS
)
#: spec §2.2 BareValue, less '--' and '->', which DOT reads as edge operators
bare_values = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.:-]{0,8}", fullmatch=True).filter(
    lambda value: "--" not in value and "->" not in value
)


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def written(values: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
    """(how it is written, value) pairs: the value bare, or the same value quoted."""
    return values.flatmap(lambda value: st.sampled_from([(value, value), (quoted(value), value)]))


strings = st.text(max_size=12).map(lambda value: (quoted(value), value))
values = st.one_of(strings, written(bare_values))
#: keys no schema knows: bare words, dotted, dashed, or quoted with any text
unknown_keys = st.one_of(
    written(st.from_regex(r"x_[A-Za-z0-9_]{0,6}", fullmatch=True)),
    st.from_regex(r"x[.:-][A-Za-z0-9_.]{1,6}", fullmatch=True).map(lambda key: (key, key)),
    st.text(max_size=8).map(lambda key: (quoted("x " + key), "x " + key)),
)
integers = written(st.integers(-5, 99).map(str))
booleans = written(st.sampled_from(["true", "false", "TRUE"]))
durations = written(
    st.tuples(st.integers(0, 10**6), st.sampled_from(["", "ms", "s", "m", "h", "d"])).map(
        lambda duration: f"{duration[0]}{duration[1]}"
    )
)
#: a few keys that recur, so that values override each other; some are typed in some scopes
#: (max_retries for nodes, weight for edges), each with values valid for its type
RECURRING = {
    "max_retries": integers,
    "weight": integers,
    "goal_gate": booleans,
    "timeout": durations,
    "label": values,
    "prompt": values,
    "x_a": values,
    "x.b": values,
}
recurring = st.sampled_from(sorted(RECURRING)).flatmap(
    lambda key: st.tuples(written(st.just(key)), RECURRING[key])
)
attributes = st.one_of(recurring, st.tuples(unknown_keys, values)).map(
    lambda kv: Attribute(key_text=kv[0][0], value_text=kv[1][0], key=kv[0][1], value=kv[1][1])
)
#: node ids: a few that recur (redeclared, joined by edges), or any identifier
node_ids = st.one_of(st.sampled_from(["a", "b", "c"]), identifiers)
#: graph and subgraph names: none, bare or quoted
names = st.one_of(st.just(""), identifiers, bare_values, strings.map(lambda pair: pair[0]))


def typed(schema: Mapping[str, AttrType], chosen: list[Attribute]) -> dict[str, Value]:
    """What the parser should make of ``chosen`` under ``schema``."""
    return {
        attribute.key: (
            convert(attribute.value, schema[attribute.key])
            if attribute.key in schema
            else attribute.value
        )
        for attribute in chosen
    }


#: statement kinds, weighted towards the ones whose values can override each other
STATEMENTS = ("node", "node", "edge", "edge", "default", "default", "assign", "subgraph")


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[str, Expected]:
    """A well-formed pipeline and the graph it should parse to."""
    expected = Expected({}, {}, [])

    def attribute_list(schema: Mapping[str, AttrType]) -> tuple[str, dict[str, Value]]:
        chosen = draw(st.lists(attributes, max_size=4))
        separator = draw(st.sampled_from([", ", "; ", "\n", " "]))
        return "[" + separator.join(map(str, chosen)) + "]", typed(schema, chosen)

    def optional_list(schema: Mapping[str, AttrType]) -> tuple[str, dict[str, Value]]:
        return attribute_list(schema) if draw(st.booleans()) else ("", {})

    def body(depth: int, node_defaults: dict[str, Value], edge_defaults: dict[str, Value]) -> str:
        statements = []
        for _ in range(draw(st.integers(0, 8))):
            kind = draw(st.sampled_from(STATEMENTS))
            if kind == "node":
                again = expected.nodes and draw(st.booleans())
                node = draw(st.sampled_from(list(expected.nodes)) if again else node_ids)
                text, own = optional_list(NODE_ATTRIBUTES)
                expected.nodes.setdefault(node, dict(node_defaults)).update(own)
                statements.append(f"{node} {text}")
            elif kind == "edge":
                chain = draw(st.lists(node_ids, min_size=2, max_size=4))
                text, own = optional_list(EDGE_ATTRIBUTES)
                for node in chain:
                    expected.nodes.setdefault(node, dict(node_defaults))
                expected.edges.extend(
                    (source, target, {**edge_defaults, **own})
                    for source, target in itertools.pairwise(chain)
                )
                statements.append(" -> ".join(chain) + f" {text}")
            elif kind == "default":
                keyword = draw(st.sampled_from(("node", "edge", "graph", "Node")))
                schema, scope = {
                    "node": (NODE_ATTRIBUTES, node_defaults),
                    "edge": (EDGE_ATTRIBUTES, edge_defaults),
                    # a graph block in a subgraph describes only the subgraph
                    "graph": (GRAPH_ATTRIBUTES, expected.graph_attrs if depth == 1 else {}),
                }[keyword.lower()]
                text, own = attribute_list(schema)
                scope.update(own)
                statements.append(f"{keyword} {text}")
            elif kind == "assign":
                attribute = draw(attributes)
                if depth == 1:
                    expected.graph_attrs.update(typed(GRAPH_ATTRIBUTES, [attribute]))
                statements.append(f"{attribute.key_text} = {attribute.value_text}")
            elif depth < 3:
                name = draw(names)
                inner = body(depth + 1, dict(node_defaults), dict(edge_defaults))
                statements.append(f"subgraph {name} {{\n{inner}\n}}")
        separator = draw(st.sampled_from(("\n", ";\n", " ", "; ")))
        return separator.join(statements)

    name = draw(names)
    text = f"// generated\ndigraph {name} {{\n{body(1, {}, {})}\n}}\n"
    return text, expected


class TestNothingEscapes:
    """Only OrchestraError subclasses come out of parse, transform and validate."""

    @settings(FUZZ, max_examples=1000)
    @given(st.text())
    def test_arbitrary_text(self, text: str) -> None:
        """Any text, read as parse_dot reads it and as DOT text, parses or raises OrchestraError."""
        front_end(text)
        front_end("\n" + text)

    @settings(FUZZ, max_examples=1000)
    @given(dot_fragments())
    def test_text_made_of_dot_fragments(self, text: str) -> None:
        """Keywords, operators, brackets, quotes, comments, unicode and NUL in any order."""
        front_end(text)

    @settings(FUZZ, max_examples=500)
    @given(data=st.data())
    def test_mutated_real_pipelines(self, seeds: list[str], data: st.DataObject) -> None:
        """Real pipelines with characters inserted, deleted or replaced, or cut short."""
        front_end(data.draw(mutations(seeds)))

    def test_seed_pipelines_are_valid(self, seeds: list[str]) -> None:
        """The seeds parse and have no error diagnostics, so mutations start from valid."""
        for text in seeds:
            diagnostics = front_end(text)
            assert isinstance(diagnostics, list), diagnostics
            assert not [d for d in diagnostics if d.severity is orchestra.Severity.ERROR]


class TestWellFormedPipelines:
    """Generated pipelines within the subset parse to exactly the graph they describe."""

    @settings(FUZZ, max_examples=300)
    @given(pipelines())
    def test_parse_to_the_graph_they_describe(self, pipeline: tuple[str, Expected]) -> None:
        """Nodes, edges and graph attributes are exactly those the model expects, in order."""
        text, expected = pipeline
        graph = orchestra.parse_dot(text)
        assert dict(graph.attrs) == expected.graph_attrs
        assert {node.id: dict(node.attrs) for node in graph} == expected.nodes
        assert list(graph.nodes) == list(expected.nodes)
        assert [(e.source, e.target, dict(e.attrs)) for e in graph.edges] == expected.edges
        assert isinstance(front_end(text), list)

    @settings(FUZZ, max_examples=300)
    @given(st.one_of(st.text(), st.text(alphabet='\\"\n\r\tn ')), identifiers)
    def test_quoted_strings_round_trip(self, value: str, node: str) -> None:
        """Any text, quoted with \\" and \\\\ escapes, parses back to itself."""
        graph = orchestra.parse_dot(f"digraph G {{\n  {node} [x_note={quoted(value)}]\n}}")
        assert graph.nodes[node].attrs["x_note"] == value
