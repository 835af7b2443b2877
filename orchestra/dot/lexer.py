"""Tokens of DOT text, with the line and column of each.

pydot builds the graph, but it reports no positions, and its grammar splits values the
Attractor grammar allows (``timeout=900s``, ``llm_model=claude-opus-4-6``). This lexer gives
the subset checker exact positions and the values as the spec reads them.
"""

from __future__ import annotations

import bisect
import enum
import re

import attrs

from orchestra.errors import DotSyntaxError

__all__ = ["Kind", "SourceText", "Token", "tokenize"]


class Kind(enum.Enum):
    WORD = "word"  # identifiers, numbers, durations, bare values: [\w.:-]+
    STRING = "string"  # "double quoted", text still escaped
    PUNCT = "punct"  # { } [ ] = ; , -> + :
    UNDIRECTED = "--"
    EOF = "end of file"


@attrs.frozen
class Token:
    kind: Kind
    text: str
    offset: int

    def describe(self) -> str:
        if self.kind is Kind.EOF:
            return "end of file"
        if self.kind is Kind.STRING:
            shown = self.text if len(self.text) <= 30 else self.text[:27] + '..."'
            return f"string {shown}"
        return f"'{self.text}'"


class SourceText:
    """DOT text with a file name, mapping offsets to 1-based line and column."""

    def __init__(self, text: str, file: str | None) -> None:
        self.text = text
        self.file = file
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def line_text(self, line: int) -> str:
        start = self._line_starts[line - 1]
        end = self._line_starts[line] - 1 if line < len(self._line_starts) else len(self.text)
        return self.text[start:end]

    def error(self, offset: int, message: str) -> DotSyntaxError:
        line, column = self.position(offset)
        return DotSyntaxError(
            message,
            file=self.file,
            line=line,
            column=column,
            source_line=self.line_text(line),
        )


# A '-' belongs to a word unless it starts an edge operator ('->' or '--').
_WORD = r"(?:[\w.:]|-(?![->]))+"
_TOKEN = re.compile(
    rf"""
    (?P<ws>[ \t\r\n\f\v]+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.|\\\n)*")
  | (?P<arrow>->)
  | (?P<undirected>--)
  | (?P<word>{_WORD})
  | (?P<punct>[{{}}\[\]=;,+])
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(source: SourceText) -> list[Token]:
    """All tokens of ``source``, comments and whitespace dropped, ending with an EOF token."""
    text = source.text
    tokens: list[Token] = []
    append = tokens.append
    pos, end = 0, len(text)
    match = _TOKEN.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            if text[pos] == "#" and _starts_line(text, pos):
                # C preprocessor output lines, which Graphviz ignores
                newline = text.find("\n", pos)
                pos = end if newline < 0 else newline
                continue
            raise _lexical_error(source, pos)
        kind = m.lastgroup
        if kind == "word":
            append(Token(Kind.WORD, m.group(), pos))
        elif kind == "string":
            append(Token(Kind.STRING, m.group(), pos))
        elif kind == "arrow" or kind == "punct":
            append(Token(Kind.PUNCT, m.group(), pos))
        elif kind == "undirected":
            append(Token(Kind.UNDIRECTED, "--", pos))
        pos = m.end()
    append(Token(Kind.EOF, "", end))
    return tokens


def _starts_line(text: str, pos: int) -> bool:
    line_start = text.rfind("\n", 0, pos) + 1
    return not text[line_start:pos].strip()


def _lexical_error(source: SourceText, pos: int) -> DotSyntaxError:
    char = source.text[pos]
    if char == '"':
        return source.error(pos, "unterminated string: no closing '\"' before end of file")
    if source.text.startswith("/*", pos):
        return source.error(pos, "unterminated comment: no closing '*/' before end of file")
    if char == "<":
        return source.error(
            pos,
            "HTML-like values (<...>) are not part of the Attractor subset; "
            "use a double-quoted string",
        )
    if char == "#":
        return source.error(pos, "unexpected '#': '#' comments must start a line")
    shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
    return source.error(pos, f"unexpected character {shown}")
