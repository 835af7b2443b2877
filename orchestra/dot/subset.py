"""The Attractor subset of DOT (spec §2.2-2.3), checked over tokens before pydot sees them.

One pass over the tokens does three things pydot cannot:

* rejects what the subset forbids (``strict``, undirected graphs and ``--`` edges, a second
  graph, node ids that are not bare identifiers, ports, subgraphs as edge endpoints), and
  reports any malformed statement with its line, column and what was expected;
* checks the values of known attributes against their types (``timeout=15x`` is an error
  at the value, not a surprise at run time);
* records where each node and edge was written, and produces normalised DOT text in which
  every bare value is quoted, so that pydot keeps ``900s`` or ``gpt-5.2`` whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from orchestra.attributes import (
    EDGE_ATTRIBUTES,
    GRAPH_ATTRIBUTES,
    NODE_ATTRIBUTES,
    AttrType,
    convert,
)
from orchestra.dot.lexer import Kind, SourceText, Token, tokenize
from orchestra.errors import AttributeValueError

__all__ = ["MAX_SUBGRAPH_NESTING", "CheckedSource", "check_subset", "unescape"]

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset({"strict", "graph", "digraph", "subgraph", "node", "edge"})
#: subgraphs inside subgraphs; pydot recurses about 40 frames per level, and Python allows 1000
MAX_SUBGRAPH_NESTING = 16
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "\n": "", "\r\n": ""}
_ESCAPE = re.compile(r"\\(\r\n|.)", re.DOTALL)


def unescape(quoted: str) -> str:
    """The value of a double-quoted DOT string: ``\\"``, ``\\\\``, ``\\n``, ``\\t`` and
    line continuations are decoded; other escapes (Graphviz's ``\\l``) are kept as written."""
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def _requote(quoted: str) -> str:
    """A double-quoted string with the same value, for pydot: no backslash is left before
    a line break, where pydot would drop both as a line continuation even when the backslash
    is itself escaped (``"a\\\\`` + newline + ``b"`` must keep its newline)."""
    value = unescape(quoted)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@attrs.frozen
class CheckedSource:
    """What the check learned: positions by offset, and text pydot can read faithfully."""

    normalised: str
    #: offsets in ``normalised`` of each token, and the matching offsets in the source
    normalised_offsets: list[int]
    source_offsets: list[int]
    #: node id -> offset of its first declaration statement (else its first mention)
    node_offsets: Mapping[str, int]
    #: edges in source order as (source, target, offset of the source endpoint)
    edge_offsets: list[tuple[str, str, int]]
    #: graph attribute key -> offset of its last top-level assignment
    graph_attr_offsets: Mapping[str, int]
    #: how deep subgraphs nest: 0 without subgraphs, 1 for subgraphs in the graph body
    subgraph_nesting: int


class _Checker:
    def __init__(self, source: SourceText) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0
        self.out: list[str] = []
        self.source_offsets: list[int] = []
        self.declared: dict[str, int] = {}
        self.mentioned: dict[str, int] = {}
        self.edges: list[tuple[str, str, int]] = []
        self.graph_attrs: dict[str, int] = {}
        self.depth = 0
        self.deepest = 1

    # token helpers ---------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def emit(self, token: Token, text: str | None = None) -> None:
        self.out.append(token.text if text is None else text)
        self.source_offsets.append(token.offset)
        self.i += 1

    def insert(self, text: str, offset: int) -> None:
        """Emit ``text`` that is not in the source, as if written at ``offset``."""
        self.out.append(text)
        self.source_offsets.append(offset)

    def emit_name(self) -> None:
        """Emit a name or attribute key. A bare one is quoted: pydot's identifiers stop at
        '-' and ':' (it would read ``a:b`` as a port), where the subset's words do not."""
        token = self.tok
        self.emit(token, f'"{token.text}"' if token.kind is Kind.WORD else _requote(token.text))

    def is_punct(self, text: str, token: Token | None = None) -> bool:
        token = token or self.tok
        return token.kind is Kind.PUNCT and token.text == text

    def is_keyword(self, word: str, token: Token | None = None) -> bool:
        token = token or self.tok
        return token.kind is Kind.WORD and token.text.lower() == word

    def fail(self, message: str, token: Token | None = None) -> Exception:
        token = token or self.tok
        if token.kind is Kind.UNDIRECTED:
            message = "undirected edge '--': Attractor pipelines use directed edges ('->')"
        return self.source.error(token.offset, message)

    def expect_punct(self, text: str, context: str) -> None:
        if not self.is_punct(text):
            raise self.fail(f"expected '{text}' {context}, found {self.tok.describe()}")
        self.emit(self.tok)

    # grammar -----------------------------------------------------------------------------

    def check(self) -> CheckedSource:
        tok = self.tok
        if tok.kind is Kind.EOF:
            raise self.fail("empty pipeline: expected 'digraph name { ... }'")
        if self.is_keyword("strict"):
            raise self.fail("'strict' graphs are not part of the Attractor subset; remove it")
        if self.is_keyword("graph"):
            raise self.fail("undirected 'graph': Attractor pipelines are directed; write 'digraph'")
        if not self.is_keyword("digraph"):
            raise self.fail(f"expected 'digraph' to start the pipeline, found {tok.describe()}")
        self.emit(tok)
        if self.tok.kind in (Kind.WORD, Kind.STRING) and not self.is_keyword("subgraph"):
            self.emit_name()
        self.expect_punct("{", "to open the graph body")
        self.statements(depth=1)
        self.expect_punct("}", "to close the graph body")
        if self.tok.kind is not Kind.EOF:
            if self.is_keyword("digraph") or self.is_keyword("graph"):
                raise self.fail("only one graph per file: a second graph starts here")
            raise self.fail(f"unexpected {self.tok.describe()} after the graph's closing '}}'")
        normalised: list[int] = []
        offset = 0
        for piece in self.out:
            normalised.append(offset)
            offset += len(piece) + 1
        nodes = dict(self.mentioned)
        nodes.update(self.declared)
        return CheckedSource(
            normalised=" ".join(self.out),
            normalised_offsets=normalised,
            source_offsets=self.source_offsets,
            node_offsets=nodes,
            edge_offsets=self.edges,
            graph_attr_offsets=self.graph_attrs,
            subgraph_nesting=self.deepest - 1,
        )

    def statements(self, depth: int) -> None:
        self.depth = depth
        self.deepest = max(self.deepest, depth)
        while not self.is_punct("}") and self.tok.kind is not Kind.EOF:
            self.statement(depth)
            if self.is_punct(";"):
                self.emit(self.tok)
        if self.tok.kind is Kind.EOF:
            raise self.fail("expected '}' to close the block before end of file")

    def statement(self, depth: int) -> None:
        tok = self.tok
        after = self.peek()
        if (
            tok.kind is Kind.WORD
            and tok.text.lower() in _KEYWORDS
            and (self.is_punct("->", after) or after.kind is Kind.UNDIRECTED)
        ):
            # without this, 'node -> b' would be read as a 'node [...]' block missing its '['
            raise self.fail(f"'{tok.text}' is a DOT keyword and cannot be a node id")
        if self.is_keyword("graph"):
            self.emit(tok)
            self.attr_blocks(GRAPH_ATTRIBUTES, "graph", required=True)
        elif self.is_keyword("node") or self.is_keyword("edge"):
            self.emit(tok)
            scope = NODE_ATTRIBUTES if tok.text.lower() == "node" else EDGE_ATTRIBUTES
            self.attr_blocks(scope, tok.text.lower(), required=True)
        elif self.is_keyword("subgraph"):
            if depth > MAX_SUBGRAPH_NESTING:
                raise self.fail(f"subgraphs nested more than {MAX_SUBGRAPH_NESTING} deep")
            self.emit(tok)
            if self.tok.kind in (Kind.WORD, Kind.STRING):
                self.emit_name()
            self.expect_punct("{", "to open the subgraph body")
            self.statements(depth + 1)
            self.depth = depth
            self.expect_punct("}", "to close the subgraph body")
        elif self.is_punct("{"):
            raise self.fail("an anonymous block '{ ... }' needs the 'subgraph' keyword")
        elif tok.kind in (Kind.WORD, Kind.STRING) and self.is_punct("=", self.peek()):
            # pydot keeps 'key = value' apart from 'graph [...]' blocks and so loses which
            # came last; written as a block, the later one wins, as in Graphviz
            self.insert("graph [", tok.offset)
            self.attribute(GRAPH_ATTRIBUTES, "graph")
            self.insert("]", tok.offset)
        elif tok.kind in (Kind.WORD, Kind.STRING):
            self.node_or_edge()
        else:
            raise self.fail(
                f"expected a statement (a node, an edge, 'key = value', 'graph', 'node', "
                f"'edge' or 'subgraph'), found {tok.describe()}"
            )

    def node_id(self, role: str) -> str:
        tok = self.tok
        if tok.kind is Kind.STRING:
            raise self.fail(
                f"{role} {tok.text} is quoted: node ids must be bare identifiers "
                "([A-Za-z_][A-Za-z0-9_]*); put the readable name in 'label'"
            )
        if tok.kind is not Kind.WORD:
            raise self.fail(f"expected a node id as {role}, found {tok.describe()}")
        if tok.text.lower() in _KEYWORDS:
            raise self.fail(f"'{tok.text}' is a DOT keyword and cannot be a node id")
        if not IDENTIFIER.fullmatch(tok.text):
            hint = " (ports are not supported)" if ":" in tok.text else ""
            raise self.fail(
                f"node id '{tok.text}' is not an identifier{hint}: node ids match "
                "[A-Za-z_][A-Za-z0-9_]*; put the readable name in 'label'"
            )
        self.mentioned.setdefault(tok.text, tok.offset)
        self.emit(tok)
        return tok.text

    def node_or_edge(self) -> None:
        first = self.tok
        previous = self.node_id("a node id")
        if not self.is_punct("->") and self.tok.kind is not Kind.UNDIRECTED:
            self.declared.setdefault(previous, first.offset)
            self.attr_blocks(NODE_ATTRIBUTES, "node", required=False)
            return
        start = first.offset
        while self.is_punct("->") or self.tok.kind is Kind.UNDIRECTED:
            if self.tok.kind is Kind.UNDIRECTED:
                raise self.fail("'--' is an undirected edge")
            self.emit(self.tok)
            if self.is_punct("{") or self.is_keyword("subgraph"):
                raise self.fail("edge endpoints must be node ids, not subgraphs")
            target_tok = self.tok
            target = self.node_id("the edge target")
            self.edges.append((previous, target, start))
            previous, start = target, target_tok.offset
        self.attr_blocks(EDGE_ATTRIBUTES, "edge", required=False)

    def attr_blocks(self, schema: Mapping[str, AttrType], owner: str, required: bool) -> None:
        if required and not self.is_punct("["):
            raise self.fail(f"expected '[' to open the {owner} attributes")
        while self.is_punct("["):
            self.emit(self.tok)
            while not self.is_punct("]"):
                if self.tok.kind is Kind.EOF:
                    raise self.fail("expected ']' to close the attribute list")
                self.attribute(schema, owner)
                if self.is_punct(",") or self.is_punct(";"):
                    # DOT allows either between attributes; pydot reads only ','
                    self.emit(self.tok, ",")
            self.emit(self.tok)

    def attribute(self, schema: Mapping[str, AttrType], owner: str) -> None:
        key_tok = self.tok
        if key_tok.kind is Kind.STRING:
            key = unescape(key_tok.text)
        elif key_tok.kind is Kind.WORD:
            key = key_tok.text
        else:
            raise self.fail(f"expected an attribute name, found {key_tok.describe()}")
        self.emit_name()
        if not self.is_punct("="):
            raise self.fail(f"expected '=' after attribute '{key}', found {self.tok.describe()}")
        self.emit(self.tok)
        value_tok = self.tok
        if value_tok.kind is Kind.WORD:
            value = value_tok.text
            self.emit(value_tok, f'"{value}"')
        elif value_tok.kind is Kind.STRING:
            value = unescape(value_tok.text)
            self.emit(value_tok, _requote(value_tok.text))
            while self.is_punct("+"):
                self.emit(self.tok)
                if self.tok.kind is not Kind.STRING:
                    raise self.fail(
                        f"expected a quoted string after '+', found {self.tok.describe()}"
                    )
                value += unescape(self.tok.text)
                self.emit(self.tok, _requote(self.tok.text))
        else:
            raise self.fail(f"expected a value for '{key}', found {value_tok.describe()}")
        if owner == "graph" and self.depth == 1:
            self.graph_attrs[key] = key_tok.offset
        kind = schema.get(key)
        if kind is not None:
            try:
                convert(value, kind)
            except ValueError as err:
                line, column = self.source.position(value_tok.offset)
                raise AttributeValueError(
                    f"{owner} attribute '{key}': {err}",
                    file=self.source.file,
                    line=line,
                    column=column,
                    source_line=self.source.line_text(line),
                ) from None


def check_subset(source: SourceText) -> CheckedSource:
    """Check ``source`` against the Attractor subset; raise ``DotSyntaxError`` at the first
    problem, with its line, column and what was expected."""
    return _Checker(source).check()
