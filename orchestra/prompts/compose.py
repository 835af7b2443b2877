"""An agent's prompt, composed from its four YAML layer files (role, persona, personality,
task), each rendered with Jinja2 against the run's variables and context.

Each layer file holds one map named after its layer, with an optional ``name`` and the
layer's text under one of :data:`TEXT_KEYS`::

    role:                         # persona:, personality: or task: in the other files
      name: pr-reviewer
      system: |
        You are an expert code reviewer. The goal is: {{ goal }}

``system``, ``description``, ``instructions`` and ``prompt`` are all accepted for the text,
so that ``persona: {description: ...}`` and ``task: {instructions: ...}`` read naturally; a
layer gives exactly one of them. Any other key is a :class:`~orchestra.errors.ConfigError`
naming the file, the line and the key, and so is a template that does not parse or a
variable that is not defined: no layer silently renders an empty string. Errors never quote
the file's text.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import LiteralScalarString

from orchestra.config.converter import describe, did_you_mean
from orchestra.config.load import parse_yaml, read_text
from orchestra.config.model import AgentConfig
from orchestra.errors import ConfigError

if TYPE_CHECKING:
    import jinja2

__all__ = [
    "LAYER_KINDS",
    "TASK_HEADING",
    "TEXT_KEYS",
    "AgentPrompt",
    "LayerKind",
    "PromptLayer",
    "compose_agent_prompt",
    "load_layer",
]

LayerKind = Literal["role", "persona", "personality", "task"]
"""A prompt layer; the first three make the system prompt, the task the user message."""
LAYER_KINDS: tuple[LayerKind, ...] = get_args(LayerKind)

TEXT_KEYS: tuple[str, ...] = ("system", "description", "instructions", "prompt")
"""The keys a layer's text may be given under; a layer gives exactly one of them."""

TASK_HEADING = "## Task"
"""Introduces the task layer's text in the system prompt when the node has its own prompt."""

_LAYER_KEYS: tuple[str, ...] = ("name", *TEXT_KEYS)
_UNDEFINED_HELP = "pass it as name=value after the pipeline file or set it in the context"
# How many parsed layer files are kept: a pipeline's agents rarely use more.
_CACHED_LAYERS = 256


@attrs.frozen
class AgentPrompt:
    """The messages a node's agent starts with. ``layers`` names the layers that went into
    them, in order (``("role", "persona", "task")``)."""

    system: str
    user: str
    layers: tuple[LayerKind, ...]


@attrs.frozen
class PromptLayer:
    """One parsed layer file: its text, not yet rendered, and the key it was given under."""

    kind: LayerKind
    path: Path
    name: str | None
    text: str
    text_key: str
    # Where errors in a templated text are reported: the line of text_key, and the file line
    # of the text's first line when the text's lines are the file's (a | block, one line).
    _key_line: int | None = attrs.field(default=None, repr=False)
    _text_line: int | None = attrs.field(default=None, repr=False)
    _template: jinja2.Template | None = attrs.field(default=None, eq=False, repr=False)

    def render(self, variables: Mapping[str, str], context: Mapping[str, Any]) -> str:
        """The text with every ``{{ ... }}`` and ``{% ... %}`` evaluated; a ConfigError
        naming the file, its line and the variable when one is not defined."""
        if self._template is None:
            return self.text
        import jinja2

        try:
            return self._template.render(_namespace(variables, context))
        except jinja2.UndefinedError as err:
            message = f"{err.message}; {_UNDEFINED_HELP} before this node"
            raise self._error(message, _failing_line(err)) from None
        except Exception as err:
            # A template can call filters and do arithmetic on context values: whatever
            # fails there is this layer's mistake, reported as one.
            raise self._error(
                f"template failed ({type(err).__name__}: {err})", _failing_line(err)
            ) from None

    def _error(self, message: str, template_line: int | None) -> ConfigError:
        return _text_error(
            self.path,
            f"{self.kind}.{self.text_key}",
            message,
            template_line,
            key_line=self._key_line,
            text_line=self._text_line,
        )


def load_layer(kind: LayerKind, path: Path) -> PromptLayer:
    """The layer file at ``path``, parsed and its template compiled; a ConfigError naming
    the file, line and key for anything that is not a valid ``kind`` layer.

    Parsed files are kept, keyed by path, modification time and size, so that an agent
    used by many nodes is read once, and a file edited since is read again.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{kind} layer file not found", path=str(path)) from None
    except OSError as err:
        raise ConfigError(f"cannot read it: {err.strerror or err}", path=str(path)) from None
    return _load(kind, path, stat.st_mtime_ns, stat.st_size)


def compose_agent_prompt(
    agent: AgentConfig,
    *,
    variables: Mapping[str, str],
    context: Mapping[str, Any],
    node_prompt: str | None,
) -> AgentPrompt:
    """The system prompt and user message for a node run by ``agent``.

    The system prompt is the role, persona and personality texts, in that order, each
    rendered against ``variables`` (``{{ goal }}``) and ``context`` (``{{ context["key"]
    }}``, or ``{{ key }}`` for a key that is a plain name; a variable wins over a context key
    of the same name). The user message is the task's text, unless the node has a prompt of
    its own: then that is the user message and the task's text ends the system prompt under
    a "Task" heading. ``node_prompt`` is used as given (the node's handler renders it); a
    blank one counts as none. A layer the agent does not name is skipped; ``user`` is empty
    when there is neither a task layer nor a node prompt.
    """
    loaded = [
        load_layer(kind, path)
        for kind, path in zip(
            LAYER_KINDS, (agent.role, agent.persona, agent.personality, agent.task), strict=True
        )
        if path is not None
    ]
    texts = {layer.kind: layer.render(variables, context).strip() for layer in loaded}
    system = [texts[kind] for kind in ("role", "persona", "personality") if texts.get(kind)]
    task = texts.get("task", "")
    prompt = (node_prompt or "").strip()
    if prompt:
        if task:
            system.append(f"{TASK_HEADING}\n\n{task}")
        user = prompt
    else:
        user = task
    return AgentPrompt(
        system="\n\n".join(system), user=user, layers=tuple(layer.kind for layer in loaded)
    )


# loading -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=_CACHED_LAYERS)
def _load(kind: LayerKind, path: Path, mtime_ns: int, size: int) -> PromptLayer:
    # mtime_ns and size are only part of the cache key: a changed file is a new entry.
    source = read_text(path, missing="layer file not found")
    data = parse_yaml(source, path)
    lines = _Lines(source)
    body = _body(kind, data, path, lines)
    unknown = [key for key in body if key not in _LAYER_KEYS]
    if unknown:
        key = str(unknown[0])
        close = did_you_mean(key, _LAYER_KEYS)
        hint = f"did you mean {close!r}?" if close else f"expected one of: {', '.join(_LAYER_KEYS)}"
        raise ConfigError(
            f"unknown key; {hint}", path=str(path), key=f"{kind}.{key}", line=lines.key(kind, key)
        )
    given = [key for key in TEXT_KEYS if key in body]
    if len(given) != 1:
        problem = "no text" if not given else f"text under {len(given)} keys"
        raise ConfigError(
            f"{problem}: give the {kind}'s text under exactly one of {', '.join(TEXT_KEYS)}",
            path=str(path),
            key=kind if not given else f"{kind}.{given[1]}",
            line=lines.key(kind) if not given else lines.key(kind, given[1]),
        )
    text_key = given[0]
    text = body[text_key]
    if not isinstance(text, str) or not text.strip():
        got = "empty text" if isinstance(text, str) else describe(text)
        if isinstance(text, Mapping):
            # ``system: {{ goal }} ...`` reads as a YAML map, not as a template
            got += " (quote text that starts with {{, or give it as a | block)"
        raise ConfigError(
            f"expected text, got {got}",
            path=str(path),
            key=f"{kind}.{text_key}",
            line=lines.key(kind, text_key),
        )
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(
            f"expected a string, got {describe(name)}",
            path=str(path),
            key=f"{kind}.name",
            line=lines.key(kind, "name"),
        )
    templated = "{{" in text or "{%" in text or "{#" in text
    key_line, text_line, template = None, None, None
    if templated:
        key_line, text_line = lines.text(kind, text_key)
        import jinja2

        try:
            template = _environment().from_string(text)
        except jinja2.TemplateSyntaxError as err:
            raise _text_error(
                path,
                f"{kind}.{text_key}",
                f"template syntax error: {err.message or 'does not parse'}",
                err.lineno,
                key_line=key_line,
                text_line=text_line,
            ) from None
    return PromptLayer(kind, path, name, text, text_key, key_line, text_line, template)


def _body(kind: LayerKind, data: Any, path: Path, lines: _Lines) -> Mapping[Any, Any]:
    """The map under the file's one top-level key, which must be ``kind``."""
    expected = f"expected a map with one key, {kind}, holding the {kind}'s name and text"
    if not isinstance(data, Mapping) or not data:
        got = describe(data) if data else "nothing"
        raise ConfigError(f"{expected}; got {got}", path=str(path), line=1)
    others = [key for key in data if key != kind]
    if others:
        key = str(others[0])
        hint = (
            f"this file is the agent's {kind} layer, so its key is {kind}"
            if key in LAYER_KINDS
            else f"expected {kind}"
        )
        raise ConfigError(f"unknown key; {hint}", path=str(path), key=key, line=lines.key(key))
    body = data[kind]
    if not isinstance(body, Mapping):
        raise ConfigError(
            f"expected a map with name and {' or '.join(TEXT_KEYS)}, got {describe(body)}",
            path=str(path),
            key=kind,
            line=lines.key(kind),
        )
    return body


class _Lines:
    """Lines of keys and values, from a round-trip parse made only when one is needed."""

    def __init__(self, source: str) -> None:
        self._source = source

    @functools.cached_property
    def _root(self) -> Any:
        try:
            return YAML(typ="rt").load(self._source)
        except YAMLError:
            return None

    def _node(self, *keys: str) -> tuple[Any, Any] | None:
        """The map holding the last of ``keys``, and that key as the file spells it."""
        node: Any = self._root
        for depth, part in enumerate(keys):
            if not isinstance(node, CommentedMap):
                return None
            found = next((k for k in node if str(k) == part), None)
            if found is None:
                return None
            if depth == len(keys) - 1:
                return node, found
            node = node[found]
        return None

    def key(self, *keys: str) -> int | None:
        """The 1-based line of the key ``keys`` leads to, None when the file lacks it."""
        located = self._node(*keys)
        return None if located is None else int(located[0].lc.key(located[1])[0]) + 1

    def text(self, kind: str, text_key: str) -> tuple[int | None, int | None]:
        """The line of ``text_key`` and the file line of its text's first line, the latter
        None when the text's lines are not the file's (folded or multi-line plain text)."""
        located = self._node(kind, text_key)
        if located is None:
            return None, None
        parent, key = located
        key_line = int(parent.lc.key(key)[0]) + 1
        value_line = int(parent.lc.value(key)[0]) + 1
        value = parent[key]
        if isinstance(value, LiteralScalarString):
            # the value's position is the | indicator's; the text starts on the next line
            return key_line, value_line + 1
        source_lines = self._source.splitlines()
        if isinstance(value, str) and value and value in source_lines[value_line - 1]:
            # text written out whole on one line
            return key_line, value_line
        return key_line, None


def _text_error(
    path: Path,
    key: str,
    message: str,
    template_line: int | None,
    *,
    key_line: int | None,
    text_line: int | None,
) -> ConfigError:
    """An error in a layer's text at ``template_line`` (1-based within the text), placed at
    its file line when the text's lines are the file's, else at its key."""
    if template_line is not None and text_line is not None:
        return ConfigError(message, path=str(path), key=key, line=text_line + template_line - 1)
    if template_line is not None:
        message += f" (line {template_line} of the text)"
    return ConfigError(message, path=str(path), key=key, line=key_line)


# rendering -----------------------------------------------------------------------------------


class _ContextValues(dict[str, Any]):
    """The context as templates see it (``context["key"]``), told apart in error messages."""


def _namespace(variables: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, Any]:
    # The same names orchestra.templates gives node prompts: context keys that are plain
    # names directly, every key as context["a.b"]; run variables win over context keys.
    names: dict[str, Any] = {k: v for k, v in context.items() if k.isidentifier()}
    names.update(variables)
    names["context"] = _ContextValues(context)
    return names


def _failing_line(err: BaseException) -> int | None:
    """The template line that raised ``err``: Jinja2 rewrites a rendering traceback so that
    the template's frames carry its line numbers."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == "<template>"]
    return frames[-1].lineno if frames else None


@functools.cache
def _environment() -> jinja2.Environment:
    # Imported on first use, like orchestra.templates: most prompts have no templates.
    # Unlike its shell environment, nothing here quotes values: prompts are text.
    import jinja2.sandbox
    from jinja2.utils import missing

    class PromptUndefined(jinja2.StrictUndefined):
        """Fails on any use, with a message that names what is missing."""

        __slots__ = ()

        def __init__(
            self,
            hint: str | None = None,
            obj: Any = missing,
            name: str | None = None,
            exc: type[jinja2.TemplateRuntimeError] = jinja2.UndefinedError,
        ) -> None:
            if hint is None:
                if obj is missing:
                    hint = f"undefined variable {name!r}"
                elif isinstance(obj, _ContextValues):
                    hint = f"no context key {name!r}"
                else:
                    hint = f"undefined {name!r} (no such key or attribute)"
            super().__init__(hint, obj, name, exc)

    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=PromptUndefined, keep_trailing_newline=True, autoescape=False
    )
