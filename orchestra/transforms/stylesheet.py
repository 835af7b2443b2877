"""The model stylesheet (Attractor spec §8): CSS-like rules that give nodes their LLM settings.

A graph's ``model_stylesheet`` attribute holds rules such as::

    * { llm_model: claude-sonnet-4-5; llm_provider: anthropic; }
    .code, #critical_review { llm_model: "claude-opus-4-6"; reasoning_effort: high }

:func:`parse_stylesheet` turns that text into a :class:`Stylesheet`, reporting malformed text
as :class:`~orchestra.errors.StylesheetSyntaxError` with a line and column within the
stylesheet. :func:`apply_stylesheet` is the built-in transform: it gives every node the
properties its matching rules set, except those the node sets itself.
"""

from __future__ import annotations

import enum
import re

from attrs import frozen

from orchestra.errors import StylesheetSyntaxError
from orchestra.graph import Graph, Node

__all__ = [
    "RECOGNISED_PROPERTIES",
    "Rule",
    "Selector",
    "SelectorKind",
    "Stylesheet",
    "StylesheetTransform",
    "apply_stylesheet",
    "parse_stylesheet",
]

#: The properties a stylesheet may set (spec §8.4); any other is a syntax error.
RECOGNISED_PROPERTIES: tuple[str, ...] = ("llm_model", "llm_provider", "reasoning_effort")


class SelectorKind(enum.Enum):
    """What a selector matches on; the value is the selector's specificity (spec §8.3)."""

    UNIVERSAL = 0
    SHAPE = 1
    CLASS = 2
    ID = 3


@frozen
class Selector:
    """One selector: ``*``, a shape name, ``.class`` or ``#node_id``."""

    kind: SelectorKind
    #: the shape, class or node id; '' for the universal selector
    name: str = ""

    @property
    def specificity(self) -> int:
        """0 for ``*``, 1 for a shape, 2 for a class, 3 for a node id."""
        return self.kind.value

    def matches(self, node: Node) -> bool:
        """Whether this selector applies to ``node``."""
        if self.kind is SelectorKind.SHAPE:
            return node.shape == self.name
        if self.kind is SelectorKind.CLASS:
            return self.name in node.classes
        if self.kind is SelectorKind.ID:
            return node.id == self.name
        return True

    def __str__(self) -> str:
        if self.kind is SelectorKind.UNIVERSAL:
            return "*"
        return {SelectorKind.CLASS: ".", SelectorKind.ID: "#"}.get(self.kind, "") + self.name


@frozen
class Rule:
    """A selector with its declarations; ``order`` is the rule's position in the stylesheet.

    A rule written with a selector list (``.a, #b { ... }``) becomes one ``Rule`` per
    selector, all with the same ``order``.
    """

    selector: Selector
    #: ``(property, value)`` pairs in the order written
    declarations: tuple[tuple[str, str], ...]
    order: int

    @property
    def specificity(self) -> int:
        return self.selector.specificity


@frozen
class Stylesheet:
    """A parsed model stylesheet: its rules in the order written."""

    rules: tuple[Rule, ...] = ()

    def resolve(self, node: Node) -> dict[str, str]:
        """The properties this stylesheet gives ``node``.

        For each property the matching rule with the highest specificity wins; among rules of
        equal specificity the later one wins.
        """
        matching = [rule for rule in self.rules if rule.selector.matches(node)]
        resolved: dict[str, str] = {}
        for rule in sorted(matching, key=lambda rule: (rule.specificity, rule.order)):
            resolved.update(rule.declarations)
        return resolved


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASS_NAME = re.compile(r"[A-Za-z0-9_-]+")
_PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_BARE_VALUE = re.compile(r"[^;}\s]+")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE = re.compile(r'\\(["\\])')
_LEXEME = re.compile(r"[A-Za-z0-9_.-]+")


class _Parser:
    """Recursive descent over the stylesheet text, scanning tokens as it goes.

    The scanner is driven by the parser because what a token is depends on where it is:
    ``gpt-5.2`` is one value after ``:`` but would be a shape and a class in selector position.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        #: where the '{' of the rule being read is, so running out of text can name it
        self.open_brace: int | None = None

    def parse(self) -> Stylesheet:
        rules: list[Rule] = []
        order = 0
        while self._skip_space():
            selectors = self._selectors()
            declarations = self._block()
            rules.extend(Rule(selector, declarations, order) for selector in selectors)
            order += 1
        return Stylesheet(tuple(rules))

    def _selectors(self) -> list[Selector]:
        selectors = [self._selector()]
        while True:
            self._skip_space()
            if self._peek() == ",":
                self.pos += 1
                self._skip_space()
                selectors.append(self._selector())
            elif self._peek() == "{":
                return selectors
            else:
                raise self._expected(f"expected '{{' after selector '{selectors[-1]}'")

    def _selector(self) -> Selector:
        char = self._peek()
        if char == "*":
            self.pos += 1
            return Selector(SelectorKind.UNIVERSAL)
        if char == ".":
            self.pos += 1
            return Selector(SelectorKind.CLASS, self._match(_CLASS_NAME, "a class name after '.'"))
        if char == "#":
            self.pos += 1
            return Selector(SelectorKind.ID, self._match(_IDENTIFIER, "a node id after '#'"))
        shape = _IDENTIFIER.match(self.text, self.pos)
        if shape is not None:
            self.pos = shape.end()
            return Selector(SelectorKind.SHAPE, shape.group())
        raise self._expected("expected a selector ('*', a shape, '.class' or '#id')")

    def _block(self) -> tuple[tuple[str, str], ...]:
        self.open_brace = self.pos
        self.pos += 1
        declarations: list[tuple[str, str]] = []
        while True:
            self._skip_space()
            declarations.append(self._declaration())
            self._skip_space()
            if self._peek() == ";":
                self.pos += 1
                self._skip_space()
            elif self._peek() != "}":
                property_ = declarations[-1][0]
                raise self._expected(f"expected ';' or '}}' after the value of '{property_}'")
            if self._peek() == "}":
                self.pos += 1
                self.open_brace = None
                return tuple(declarations)

    def _declaration(self) -> tuple[str, str]:
        start = self.pos
        property_ = self._match(_PROPERTY, "a property name")
        if property_ not in RECOGNISED_PROPERTIES:
            raise self._error(
                f"unknown property '{property_}'; "
                f"expected one of {', '.join(RECOGNISED_PROPERTIES)}",
                start,
            )
        self._skip_space()
        if self._peek() != ":":
            raise self._expected(f"expected ':' after property '{property_}'")
        self.pos += 1
        self._skip_space()
        if self._peek() == '"':
            string = _STRING.match(self.text, self.pos)
            if string is None:
                raise self._error("unterminated string", self.pos)
            self.pos = string.end()
            return property_, _ESCAPE.sub(r"\1", string.group(1))
        return property_, self._match(_BARE_VALUE, f"a value for '{property_}'")

    def _match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise self._expected(f"expected {what}")
        self.pos = found.end()
        return found.group()

    def _skip_space(self) -> bool:
        """Move past whitespace; whether any text is left."""
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.pos < len(self.text)

    def _peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def _expected(self, expectation: str) -> StylesheetSyntaxError:
        if self.pos >= len(self.text) and self.open_brace is not None:
            line, column = _location(self.text, self.open_brace)
            return self._error(f"unclosed '{{' opened at line {line}, column {column}", self.pos)
        if self.pos >= len(self.text):
            return self._error(f"{expectation}, found end of stylesheet", self.pos)
        lexeme = _LEXEME.match(self.text, self.pos)
        found = lexeme.group() if lexeme else self.text[self.pos]
        return self._error(f"{expectation}, found '{found}'", self.pos)

    def _error(self, message: str, pos: int) -> StylesheetSyntaxError:
        line, column = _location(self.text, pos)
        return StylesheetSyntaxError(message, line=line, column=column)


def _location(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of offset ``pos`` in ``text``."""
    line_start = text.rfind("\n", 0, pos) + 1
    return text.count("\n", 0, pos) + 1, pos - line_start + 1


def parse_stylesheet(text: str) -> Stylesheet:
    """Parse model stylesheet text; empty or whitespace-only text is a stylesheet with no rules.

    Raises:
        StylesheetSyntaxError: the text is malformed or sets a property other than
            :data:`RECOGNISED_PROPERTIES`; its line and column are within ``text``.
    """
    return _Parser(text).parse()


def apply_stylesheet(graph: Graph) -> Graph:
    """The graph with each node given the stylesheet properties it does not set itself.

    A node's own attributes always win (spec §8.5), including those it took from a ``node``
    default block, since those are part of its ``attrs``. A graph with no stylesheet is
    returned as it is, and so is one whose stylesheet does not parse: the transform runs
    before validation, which reports the syntax error as ``stylesheet_syntax``.
    """
    text = graph.model_stylesheet
    if not text.strip():
        return graph
    try:
        stylesheet = parse_stylesheet(text)
    except StylesheetSyntaxError:
        return graph
    nodes: dict[str, Node] = {}
    for node_id, node in graph.nodes.items():
        given = stylesheet.resolve(node)
        missing = {key: value for key, value in given.items() if key not in node.attrs}
        nodes[node_id] = node.evolve(attrs={**node.attrs, **missing}) if missing else node
    return graph.evolve(nodes=nodes)


class StylesheetTransform:
    """The built-in transform that applies the graph's ``model_stylesheet`` to its nodes."""

    name = "model_stylesheet"

    def apply(self, graph: Graph) -> Graph:
        return apply_stylesheet(graph)
