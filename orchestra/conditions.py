"""The edge condition language: parse ``outcome=success && context.ready`` and evaluate it.

An edge's ``condition`` attribute gates whether routing may take that edge (Attractor spec
§10). The grammar, with Orchestra's small, documented extensions marked ``(+)``::

    Condition ::= ( Clause ( '&&' Clause )* )?
    Clause    ::= Key Op Literal | Key                      (+) a bare key tests truthiness
    Op        ::= '=' | '!='
    Key       ::= Name ( '.' Name )*                        'outcome', 'preferred_label',
    Name      ::= [A-Za-z_][A-Za-z0-9_-]*                   'context.x' or an unqualified key
    Literal   ::= '"' string with \\" \\\\ \\n \\t escapes '"' | [A-Za-z0-9_.:/-]+

Clauses are AND-ed left to right. ``=`` compares the resolved key (see :func:`resolve_key`)
with the literal exactly and case-sensitively, except for ``outcome``, which ignores case so
that ``outcome=SUCCESS`` matches a ``success`` status. A bare key is true when it resolves to
a non-empty string other than ``0`` or ``false`` (in any case), so a context flag set to
Python ``False`` reads as false. An empty condition is always true. Text that does not parse
raises :class:`~orchestra.errors.ConditionSyntaxError` with the 1-based column of the problem.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from itertools import takewhile
from typing import Literal

import attrs

from orchestra.errors import ConditionSyntaxError

__all__ = ["Clause", "Condition", "evaluate_condition", "parse_condition", "resolve_key"]

Operator = Literal["=", "!=", "truthy"]

_NAME_START = frozenset(string.ascii_letters + "_")
_NAME_CHARS = _NAME_START | frozenset(string.digits + "-")
_BARE_CHARS = frozenset(string.ascii_letters + string.digits + "_.:/-")
_WHITESPACE = frozenset(" \t\r\n")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_FALSE_WORDS = frozenset({"", "false", "0"})


def resolve_key(
    key: str, *, outcome: str, preferred_label: str, context: Mapping[str, object]
) -> str:
    """The string a condition key stands for, as spec §10.4 defines it.

    ``context.x`` looks up ``"context.x"`` and then ``"x"``; any other key looks itself up.
    A missing key, or one whose value is ``None``, resolves to ``""``.
    """
    if key == "outcome":
        return outcome
    if key == "preferred_label":
        return preferred_label
    candidates = [key]
    if key.startswith("context."):
        candidates.append(key.removeprefix("context."))
    for candidate in candidates:
        value = context.get(candidate)
        if isinstance(value, bool):
            # Lowercase, so that `context.flag=true` matches a Python True.
            return "true" if value else "false"
        if value is not None:
            return str(value)
    return ""


@attrs.frozen
class Clause:
    """One ``key op value`` test; ``column`` is where its key starts (1-based)."""

    key: str
    op: Operator
    value: str
    column: int

    def evaluate(
        self, *, outcome: str, preferred_label: str = "", context: Mapping[str, object]
    ) -> bool:
        """Whether this clause holds for the given outcome and context."""
        actual = resolve_key(
            self.key, outcome=outcome, preferred_label=preferred_label, context=context
        )
        if self.op == "truthy":
            return actual.lower() not in _FALSE_WORDS
        expected = self.value
        if self.key == "outcome":
            actual, expected = actual.casefold(), expected.casefold()
        return (actual == expected) == (self.op == "=")


@attrs.frozen
class Condition:
    """A parsed edge condition: the AND of its clauses (none means always true)."""

    clauses: tuple[Clause, ...]
    text: str

    def evaluate(
        self, *, outcome: str, preferred_label: str = "", context: Mapping[str, object]
    ) -> bool:
        """Whether every clause holds, checked left to right."""
        return all(
            clause.evaluate(outcome=outcome, preferred_label=preferred_label, context=context)
            for clause in self.clauses
        )


def parse_condition(text: str) -> Condition:
    """Parse condition text; raise ConditionSyntaxError naming the column and what was expected."""
    return _Parser(text).parse()


def evaluate_condition(
    condition: str | Condition,
    *,
    outcome: str,
    preferred_label: str = "",
    context: Mapping[str, object],
) -> bool:
    """Whether ``condition`` (parsed first if it is text) holds for this outcome and context."""
    if isinstance(condition, str):
        condition = parse_condition(condition)
    return condition.evaluate(outcome=outcome, preferred_label=preferred_label, context=context)


class _Parser:
    """A recursive-descent parser reading the condition text one character at a time."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Condition:
        clauses: list[Clause] = []
        self._skip_whitespace()
        while not self._at_end():
            clauses.append(self._clause())
            self._skip_whitespace()
            if self._at_end():
                break
            if self._looking_at("&&"):
                conjunction = self.pos
                self.pos += 2
                self._skip_whitespace()
                if self._at_end():
                    raise self._error("empty clause after '&&'", conjunction)
                continue
            self._reject_or()
            raise self._error(f"expected '&&' or end of condition, found {self._found()}")
        return Condition(clauses=tuple(clauses), text=self.text)

    def _clause(self) -> Clause:
        start = self.pos
        if self._looking_at("&&"):
            raise self._error("empty clause before '&&'")
        self._reject_or()
        char = self.text[self.pos]
        if char not in _BARE_CHARS and char not in '"=!&|':
            raise self._error(f"unexpected character {char!r}")
        if char not in _NAME_START:
            raise self._error(f"expected a key such as 'outcome', found {self._found()}")
        key = self._key()
        self._skip_whitespace()
        if self._at_end() or self._looking_at("&&"):
            return Clause(key=key, op="truthy", value="", column=start + 1)
        self._reject_or()
        if self._looking_at("=="):  # §10.2 has '=' only, and §10.7 asks for no more operators
            raise self._error(f"'==' is not an operator: write '{key}=value' with one '='")
        spelling = next((op for op in ("!=", "=") if self._looking_at(op)), None)
        if spelling is None:
            raise self._error(f"expected '=' or '!=' after '{key}', found {self._found()}")
        self.pos += len(spelling)
        self._skip_whitespace()
        value = self._literal(after=spelling)
        op: Operator = "!=" if spelling == "!=" else "="
        return Clause(key=key, op=op, value=value, column=start + 1)

    def _key(self) -> str:
        start = self.pos
        self._take(_NAME_CHARS)
        while self._peek() == ".":
            self.pos += 1
            if self._peek() not in _NAME_START:
                raise self._error(f"expected a name after '.', found {self._found()}")
            self._take(_NAME_CHARS)
        return self.text[start : self.pos]

    def _literal(self, *, after: str) -> str:
        if self._peek() == '"':
            return self._string()
        if literal := self._take(_BARE_CHARS):
            return literal
        found = "" if self._at_end() else f", found {self._found()}"
        raise self._error(f"expected a value after '{after}'{found}")

    def _string(self) -> str:
        opening = self.pos
        self.pos += 1
        chars: list[str] = []
        while (char := self._peek()) != '"':
            if char == "\\" and (escaped := self.text[self.pos + 1 : self.pos + 2]):
                if escaped not in _ESCAPES:
                    raise self._error(
                        f"unknown escape '\\{escaped}': expected \\\" \\\\ \\n or \\t"
                    )
                char = _ESCAPES[escaped]
                self.pos += 1
            if not char:
                raise self._error("unterminated string literal", opening)
            chars.append(char)
            self.pos += 1
        self.pos += 1
        return "".join(chars)

    def _reject_or(self) -> None:
        if self._looking_at("||"):
            raise self._error("'||' is not supported: only '&&' (AND) is")

    def _found(self) -> str:
        if self._at_end():
            return "end of condition"
        for operator in ("&&", "||", "==", "!="):
            if self._looking_at(operator):
                return f"'{operator}'"
        word = "".join(takewhile(_BARE_CHARS.__contains__, self.text[self.pos :]))
        return repr(word or self.text[self.pos])

    def _take(self, chars: frozenset[str]) -> str:
        run = "".join(takewhile(chars.__contains__, self.text[self.pos :]))
        self.pos += len(run)
        return run

    def _skip_whitespace(self) -> None:
        self._take(_WHITESPACE)

    def _peek(self) -> str:
        # At the end this is "", which is in none of the character sets.
        return self.text[self.pos : self.pos + 1]

    def _at_end(self) -> bool:
        return not self._peek()

    def _looking_at(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def _error(self, message: str, position: int | None = None) -> ConditionSyntaxError:
        column = (self.pos if position is None else position) + 1
        return ConditionSyntaxError(message, condition=self.text, column=column)
