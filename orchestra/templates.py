"""Jinja2 rendering of prompts and tool commands with run variables and context values.

Prompts render as text. Tool commands render for the shell: every substituted value is
quoted with ``shlex.quote`` unless marked ``|safe``, so a context value can never inject
shell syntax (DESIGN §5). A name that is neither a variable nor a context key is an error
naming it, not an empty string. Text without ``{{`` or ``{%`` is left as it is.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

__all__ = ["TemplateError", "render_prompt", "render_shell"]


class TemplateError(ValueError):
    """A template that does not render; the message names the node and attribute."""


def _shell_quote(value: Any) -> Any:
    from markupsafe import Markup

    if isinstance(value, Markup):
        return str(value)
    return shlex.quote("" if value is None else str(value))


@functools.cache
def _environment(shell: bool) -> jinja2.Environment:
    # Imported on first use: most pipelines have no templates, and the CLI starts faster.
    import jinja2.sandbox

    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_shell_quote if shell else None,
    )


def _namespace(
    variables: Mapping[str, str],
    context: Mapping[str, Any],
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> dict[str, Any]:
    # Context keys are reachable as context["a.b"] and, when they are plain names, directly;
    # run variables win over context keys of the same name.
    names: dict[str, Any] = {k: v for k, v in context.items() if k.isidentifier()}
    names.update(variables)
    names["context"] = dict(context)
    names.update(functions or {})
    return names


def _render(
    shell: bool,
    text: str,
    variables: Mapping[str, str],
    context: Mapping[str, Any],
    where: str,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> str:
    if "{{" not in text and "{%" not in text:
        return text
    import jinja2

    try:
        namespace = _namespace(variables, context, functions)
        return _environment(shell).from_string(text).render(namespace)
    except jinja2.UndefinedError as err:
        raise TemplateError(
            f"{where}: {err.message}; pass it as name=value after the pipeline file "
            "or set it in the context before this node"
        ) from None
    except jinja2.TemplateError as err:
        line = getattr(err, "lineno", None)
        at = f" (template line {line})" if line else ""
        raise TemplateError(f"{where}: {err.message or err}{at}") from None


def render_prompt(
    text: str,
    variables: Mapping[str, str],
    context: Mapping[str, Any],
    where: str,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> str:
    """``text`` rendered; ``functions`` are more names it may call (``response('node')``)."""
    return _render(False, text, variables, context, where, functions)


def render_shell(
    text: str, variables: Mapping[str, str], context: Mapping[str, Any], where: str
) -> str:
    """``text`` rendered for ``/bin/sh``; a placeholder the shell would not read as one
    quoted word (see ``orchestra.shellwords``) is a ``TemplateError``, whatever its value."""
    from orchestra.shellwords import placeholder_problems

    problems = placeholder_problems(text) if "{{" in text else []
    if problems:
        first = problems[0]
        raise TemplateError(f"{where}: {first.message}; {first.fix}")
    return _render(True, text, variables, context, where)
