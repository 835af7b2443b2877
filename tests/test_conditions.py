"""The edge condition language: parsing, key resolution, evaluation and syntax errors."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestra.conditions import (
    Clause,
    Condition,
    evaluate_condition,
    parse_condition,
    resolve_key,
)
from orchestra.errors import ConditionSyntaxError


def holds(
    condition: str,
    *,
    outcome: str = "success",
    preferred_label: str = "",
    context: Mapping[str, object] | None = None,
) -> bool:
    return evaluate_condition(
        condition, outcome=outcome, preferred_label=preferred_label, context=context or {}
    )


def assert_parses_or_reports(text: str) -> None:
    try:
        result: Condition | ConditionSyntaxError = parse_condition(text)
    except ConditionSyntaxError as error:
        result = error
    if isinstance(result, ConditionSyntaxError):
        assert 1 <= result.column <= len(text) + 1
    else:
        assert result.text == text


class TestDefinitionOfDone:
    """One test per item of the spec's §11.9 checklist."""

    def test_equals_operator_works_for_string_comparison(self) -> None:
        """`=` is true exactly when the resolved key equals the literal, case-sensitively."""
        context = {"mode": "fast"}
        assert holds("context.mode=fast", context=context)
        assert not holds("context.mode=slow", context=context)
        assert not holds("context.mode=FAST", context=context)

    def test_not_equals_operator_works(self) -> None:
        """`!=` is the negation of `=`."""
        context = {"loop_state": "running"}
        assert holds("context.loop_state!=exhausted", context=context)
        assert not holds("context.loop_state!=running", context=context)

    def test_and_conjunction_works_with_multiple_clauses(self) -> None:
        """`&&` is true only when every clause is."""
        context = {"tests_passed": "true", "lint": "clean"}
        condition = "outcome=success && context.tests_passed=true && context.lint=clean"
        assert holds(condition, context=context)
        assert not holds(condition, outcome="fail", context=context)
        assert not holds(condition, context={**context, "lint": "dirty"})

    def test_outcome_variable_resolves_to_current_node_outcome_status(self) -> None:
        """`outcome` is the status of the node that just ran."""
        for status in ("success", "fail", "retry", "partial_success", "skipped"):
            assert holds(f"outcome={status}", outcome=status)
        assert not holds("outcome=success", outcome="fail")

    def test_preferred_label_variable_resolves_to_outcome_preferred_label(self) -> None:
        """`preferred_label` is the label the outcome prefers, compared exactly."""
        assert holds("preferred_label=Fix", preferred_label="Fix")
        assert not holds("preferred_label=Fix", preferred_label="Ship")
        assert not holds("preferred_label=Fix")

    def test_context_variables_resolve_to_context_values_missing_keys_empty(self) -> None:
        """`context.x` reads the run context; a missing key is the empty string."""
        assert holds("context.ticket=42", context={"context.ticket": 42})
        assert not holds("context.absent=anything")
        assert holds('context.absent=""')
        assert holds("context.absent!=anything")

    def test_empty_condition_always_evaluates_true(self) -> None:
        """An empty or blank condition has no clauses and lets the edge through."""
        for text in ("", "   ", "\t\n"):
            assert parse_condition(text).clauses == ()
            assert holds(text, outcome="fail")


class TestResolveKey:
    """How a key turns into the string a clause compares."""

    def resolve(self, key: str, context: Mapping[str, object]) -> str:
        return resolve_key(key, outcome="retry", preferred_label="Fix", context=context)

    def test_outcome_and_preferred_label_come_from_the_outcome(self) -> None:
        """`outcome` and `preferred_label` never read the context."""
        context = {"outcome": "x", "preferred_label": "y"}
        assert self.resolve("outcome", context) == "retry"
        assert self.resolve("preferred_label", context) == "Fix"

    def test_qualified_key_prefers_the_full_name(self) -> None:
        """`context.x` reads key `context.x` before key `x`."""
        assert self.resolve("context.x", {"context.x": "full", "x": "short"}) == "full"

    def test_qualified_key_falls_back_to_the_unqualified_name(self) -> None:
        """`context.x` finds a value stored under plain `x`."""
        assert self.resolve("context.x", {"x": "short"}) == "short"
        assert holds("context.tests_passed=true", context={"tests_passed": True})

    def test_unqualified_key_reads_the_context_directly(self) -> None:
        """A key without `context.` is looked up as written."""
        assert self.resolve("human.gate.selected", {"human.gate.selected": "A"}) == "A"
        assert self.resolve("missing", {}) == ""

    def test_none_counts_as_missing(self) -> None:
        """A None value falls through to the next candidate, then to the empty string."""
        assert self.resolve("context.x", {"context.x": None, "x": "short"}) == "short"
        assert self.resolve("x", {"x": None}) == ""

    def test_values_are_stringified_with_lowercase_booleans(self) -> None:
        """Booleans become `true`/`false`; other values use str()."""
        assert self.resolve("flag", {"flag": True}) == "true"
        assert self.resolve("flag", {"flag": False}) == "false"
        assert self.resolve("count", {"count": 3}) == "3"
        assert self.resolve("ratio", {"ratio": 0.5}) == "0.5"


class TestEvaluation:
    """Comparison rules beyond the checklist."""

    def test_outcome_compares_case_insensitively(self) -> None:
        """`outcome=SUCCESS` matches a `success` status; `!=` follows suit."""
        assert holds("outcome=SUCCESS", outcome="success")
        assert not holds("outcome!=Success", outcome="success")

    def test_double_equals_is_an_error_suggesting_one(self) -> None:
        """§10.2 defines '=' and '!=' only (and §10.7 asks for no more): `==` is a syntax
        error at its column, saying what to write."""
        with pytest.raises(ConditionSyntaxError) as raised:
            parse_condition("outcome==success")
        assert raised.value.column == 8
        assert "'==' is not an operator: write 'outcome=value' with one '='" in str(raised.value)

    def test_python_true_matches_literal_true(self) -> None:
        """A boolean context value compares equal to the bare literal `true`."""
        assert holds("context.flag=true", context={"flag": True})
        assert holds("context.flag=false", context={"flag": False})

    def test_negative_integer_literal(self) -> None:
        """A bare literal may be a negative integer."""
        assert holds("context.exit_code=-1", context={"exit_code": -1})

    def test_evaluate_accepts_a_parsed_condition(self) -> None:
        """A Condition can be parsed once and evaluated many times."""
        condition = parse_condition("outcome=success")
        assert evaluate_condition(condition, outcome="success", context={})
        assert not condition.evaluate(outcome="fail", context={})

    def test_one_false_clause_makes_the_condition_false(self) -> None:
        """A false clause decides the result, whatever the other clauses say."""
        assert not holds("outcome=fail && context.x", outcome="success", context={"x": "y"})


class TestTruthiness:
    """A bare key is a truthiness test."""

    @pytest.mark.parametrize("value", ["yes", "true", "1", 7, True, "no"])
    def test_truthy_values(self, value: object) -> None:
        """Any non-empty value other than false/0 is truthy."""
        assert holds("context.ready", context={"ready": value})

    @pytest.mark.parametrize("value", ["", "false", "FALSE", "False", "0", 0, False, None])
    def test_falsy_values(self, value: object) -> None:
        """Empty, `false` (any case) and `0` are falsy."""
        assert not holds("context.ready", context={"ready": value})

    def test_missing_key_is_falsy(self) -> None:
        """A key absent from the context is falsy."""
        assert not holds("context.ready")

    def test_hyphenated_key(self) -> None:
        """Path segments may contain hyphens after their first character."""
        condition = parse_condition("context.tests-passed && outcome=success")
        assert condition.clauses[0] == Clause(
            key="context.tests-passed", op="truthy", value="", column=1
        )
        assert holds("context.tests-passed", context={"tests-passed": True})


class TestParsing:
    """The structure parse_condition produces."""

    def test_clauses_record_key_op_value_and_column(self) -> None:
        """Each clause keeps its key, normalised operator, literal and 1-based column."""
        text = "outcome = success  &&context.x!=a:b/c.d && flag"
        assert parse_condition(text) == Condition(
            clauses=(
                Clause(key="outcome", op="=", value="success", column=1),
                Clause(key="context.x", op="!=", value="a:b/c.d", column=22),
                Clause(key="flag", op="truthy", value="", column=44),
            ),
            text=text,
        )

    def test_quoted_literal_keeps_spaces_and_operators(self) -> None:
        """A quoted literal may hold spaces, `&&` and `=`."""
        (clause,) = parse_condition('preferred_label="Ship it && x=1"').clauses
        assert clause.value == "Ship it && x=1"
        assert holds('preferred_label = "Ship it"', preferred_label="Ship it")

    @pytest.mark.parametrize(
        ("source", "value"),
        [
            (r'"say \"hi\""', 'say "hi"'),
            (r'"back\\slash"', "back\\slash"),
            (r'"two\nlines"', "two\nlines"),
            (r'"a\tb"', "a\tb"),
            ('""', ""),
        ],
    )
    def test_quoted_literal_escapes(self, source: str, value: str) -> None:
        """`\\"`, `\\\\`, `\\n` and `\\t` are the escapes a quoted literal understands."""
        assert parse_condition(f"context.x={source}").clauses[0].value == value

    def test_condition_and_clause_are_frozen(self) -> None:
        """Parsed conditions are immutable values."""
        condition = parse_condition("outcome=success")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            condition.text = "x"  # type: ignore[misc]


class TestSyntaxErrors:
    """Bad conditions raise ConditionSyntaxError at the right column, saying what was expected."""

    @pytest.mark.parametrize(
        ("text", "column", "message"),
        [
            ("outcome > success", 9, "expected '=' or '!=' after 'outcome', found '>'"),
            ("outcome success", 9, "expected '=' or '!=' after 'outcome', found 'success'"),
            ("context.x !1", 11, "expected '=' or '!=' after 'context.x', found '!'"),
            ("outcome=", 9, "expected a value after '='"),
            ("outcome=  && x", 11, "expected a value after '=', found '&&'"),
            ("context.n==", 10, "'==' is not an operator: write 'context.n=value' with one '='"),
            ("context.x=(y)", 11, "expected a value after '=', found '('"),
            ('preferred_label="Fix', 17, "unterminated string literal"),
            ('preferred_label="Fix\\', 17, "unterminated string literal"),
            ("&& outcome=success", 1, "empty clause before '&&'"),
            ("outcome=success && && x", 20, "empty clause before '&&'"),
            ("outcome=success &&  ", 17, "empty clause after '&&'"),
            ("a=1 || b=2", 5, "'||' is not supported: only '&&' (AND) is"),
            ("a || b", 3, "'||' is not supported: only '&&' (AND) is"),
            ("|| b", 1, "'||' is not supported: only '&&' (AND) is"),
            ("(outcome=success)", 1, "unexpected character '('"),
            ("outcome=success && ~x", 20, "unexpected character '~'"),
            ("=success", 1, "expected a key such as 'outcome', found '='"),
            ("1=2", 1, "expected a key such as 'outcome', found '1'"),
            ("context.", 9, "expected a name after '.', found end of condition"),
            ("context..x", 9, "expected a name after '.', found '.x'"),
            ("outcome=success fail", 17, "expected '&&' or end of condition, found 'fail'"),
            ("outcome=success & x", 17, "expected '&&' or end of condition, found '&'"),
            ('x="a\\qb"', 5, "unknown escape '\\q': expected \\\" \\\\ \\n or \\t"),
        ],
    )
    def test_error_column_and_message(self, text: str, column: int, message: str) -> None:
        """Each malformed condition is reported at its exact column with what was expected."""
        with pytest.raises(ConditionSyntaxError) as caught:
            parse_condition(text)
        assert caught.value.column == column
        assert caught.value.message == message
        assert caught.value.condition == text
        assert str(caught.value) == f"column {column}: {message}"

    def test_error_is_a_value_error(self) -> None:
        """Callers catching ValueError also catch a bad condition."""
        with pytest.raises(ValueError, match="unterminated string literal"):
            evaluate_condition('outcome="x', outcome="success", context={})

    @given(st.text())
    def test_any_text_parses_or_raises_condition_syntax_error(self, text: str) -> None:
        """Arbitrary text yields a Condition or a ConditionSyntaxError, never another error."""
        assert_parses_or_reports(text)

    @given(st.text(alphabet='outcmex._=!&|" \\-1ab', max_size=30))
    def test_condition_alphabet_parses_or_raises_condition_syntax_error(self, text: str) -> None:
        """Text built from the language's own characters never escapes as another error either."""
        assert_parses_or_reports(text)
