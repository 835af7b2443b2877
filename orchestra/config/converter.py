"""The one cattrs converter that turns ``orchestra.yaml``'s parsed data into a ``Config``.

Its hooks are strict (a list is never silently turned into a string, a number never into a
path) and say what they expected. :func:`problems` flattens cattrs' grouped errors into
``(key path, message)`` pairs, the key path read from the notes cattrs attaches to each
failure, so that the loader can name the dotted key and its line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_mapping_structure_fn, override

from orchestra.attributes import AttrType, Duration, convert
from orchestra.config.model import (
    Backend,
    Config,
    ModelPrice,
    ProviderConfig,
    Providers,
    PushPolicy,
    ReasoningEffort,
    Tier,
    ToolsConfig,
)

__all__ = ["CONVERTER", "Invalid", "KeyPath", "UnknownKey", "did_you_mean", "problems"]

T = TypeVar("T")
KeyPath = tuple[str, ...]

CONVERTER = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

# How a rejected choice is named in messages: (the thing, the list of them).
_CHOICE_NAMES: dict[Any, tuple[str, str]] = {
    Backend: ("backend", "backends"),
    Tier: ("tier", "tiers"),
    PushPolicy: ("push policy", "policies"),
    ReasoningEffort: ("reasoning effort", "efforts"),
}
# Names older configurations use for a choice that has since been renamed.
_CHOICE_ALIASES: dict[Any, dict[str, str]] = {Backend: {"langgraph": "agent"}}


class Invalid(ValueError):
    """A value a hook rejects; the message says what was expected instead."""


class UnknownKey(ValueError):
    """A key the section does not have; ``known`` are the keys it does have."""

    def __init__(self, key: str, known: Sequence[str]) -> None:
        super().__init__(key)
        self.key = key
        self.known = tuple(known)


def describe(value: object) -> str:
    """What kind of YAML value ``value`` is, for "expected X, got Y" messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    return "a " + type(value).__name__


def did_you_mean(word: str, candidates: Sequence[str], *, cutoff: float = 0.6) -> str | None:
    """The candidate closest to ``word``, when one is close enough to be a likely typo."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return close[0] if close else None


def unknown_choice(value: object, noun: str, plural: str, choices: Sequence[str]) -> str:
    """``unknown tier 'smrt' (tiers: smart, worker, cheap); did you mean 'smart'?``"""
    listed = f"({plural}: {', '.join(choices)})"
    if not isinstance(value, str):
        return f"expected a {noun} {listed}, got {describe(value)}"
    message = f"unknown {noun} {value!r} {listed}"
    close = did_you_mean(value, choices)
    return f"{message}; did you mean {close!r}?" if close else message


def problems(err: BaseException, path: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
    """Each failure inside ``err`` (a cattrs error group, or one hook's error) as the key
    path it concerns and a message saying what was expected."""
    for note in getattr(err, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            path = (*path, note.name)
        elif isinstance(note, IterableValidationNote):
            path = (*path, str(note.index))
    if isinstance(err, ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(err.cl) if f.name != "path" or err.cl is not Config]
        for key in sorted(err.extra_fields):
            yield from problems(UnknownKey(key, known), path)
    elif isinstance(err, UnknownKey):
        close = did_you_mean(err.key, err.known)
        hint = f"did you mean {close!r}?" if close else f"expected one of: {', '.join(err.known)}"
        yield (*path, err.key), f"unknown key; {hint}"
    elif isinstance(err, BaseExceptionGroup):
        for inner in err.exceptions:
            yield from problems(inner, path)
    elif isinstance(err, KeyError):
        yield path, "missing; this key is required"
    elif isinstance(err, Invalid):
        yield path, str(err)
    else:
        yield path, f"invalid value ({type(err).__name__}: {err})"


# scalars -------------------------------------------------------------------------------------


def _string(value: object, _: object) -> str:
    if isinstance(value, str):
        return value
    raise Invalid(f"expected a string, got {describe(value)}")


def _number(value: object, _: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise Invalid(f"expected a number, got {describe(value)}")


def _path(value: object, _: object) -> Path:
    # Kept relative here; the loader resolves it against the config file's directory.
    if isinstance(value, str) and value.strip():
        return Path(value.strip())
    raise Invalid(f"expected a file path, got {describe(value)}")


def _seconds(value: object, _: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            duration = convert(value, AttrType.DURATION)
        except ValueError:
            duration = None
        if isinstance(duration, Duration) and duration.seconds >= 0:
            return duration.seconds
    raise Invalid(
        f"expected a number of seconds or a duration such as 30s or 5m, got {describe(value)}"
    )


def _prices(value: object, _: object) -> Path | Mapping[str, ModelPrice] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _path(value, Path)
    if isinstance(value, Mapping):
        return CONVERTER.structure(value, dict[str, ModelPrice])
    raise Invalid(
        "expected a prices file or a map of model id to {input, output} prices, "
        f"got {describe(value)}"
    )


# choices, maps and sections ------------------------------------------------------------------


def _is_literal(kind: Any) -> bool:
    return get_origin(kind) is Literal


def _literal_hook(kind: Any) -> Callable[[object, object], object]:
    choices: tuple[str, ...] = get_args(kind)
    noun, plural = _CHOICE_NAMES.get(kind, ("value", "choices"))
    aliases = _CHOICE_ALIASES.get(kind, {})

    def structure(value: object, _: object) -> object:
        if isinstance(value, str):
            value = aliases.get(value, value)
        if value in choices:
            return value
        raise Invalid(unknown_choice(value, noun, plural, choices))

    return structure


def _is_mapping(kind: Any) -> bool:
    return get_origin(kind) in (Mapping, dict)


def _mapping_hook(kind: Any) -> Callable[[object, object], object]:
    structure_items = make_mapping_structure_fn(kind, CONVERTER)

    def structure(value: object, _: object) -> object:
        # An empty section (``agents:`` with everything under it commented out) is no entries.
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise Invalid(f"expected a map, got {describe(value)}")
        return structure_items(value, kind)

    return structure


_SECTION_OVERRIDES: dict[type, dict[str, Any]] = {
    Config: {"path": override(omit=True), "prices": override(struct_hook=_prices)},
    ToolsConfig: {"shell_timeout": override(struct_hook=_seconds)},
}


def _section_hook(cls: type[T]) -> Callable[[object, object], T]:
    structure_fields = make_dict_structure_fn(cls, CONVERTER, **_SECTION_OVERRIDES.get(cls, {}))
    section: Any = cls
    keys = ", ".join(f.name for f in attrs.fields(section) if f.name != "path")

    def structure(value: object, _: object) -> T:
        if value is None:
            return structure_fields({}, cls)
        if not isinstance(value, Mapping):
            raise Invalid(f"expected a map with keys such as {keys}, got {describe(value)}")
        return structure_fields(value, cls)

    return structure


def _providers(value: object, _: object) -> Providers:
    """``providers``: ``default`` beside one entry per provider name."""
    if value is None:
        return Providers()
    if not isinstance(value, Mapping):
        raise Invalid(f"expected a map of provider names (and default), got {describe(value)}")
    failures: list[Exception] = []
    default = value.get("default")
    if default is not None and not isinstance(default, str):
        failure = Invalid(f"expected a provider name, got {describe(default)}")
        failure.add_note(AttributeValidationNote("providers.default", "default", str))
        failures.append(failure)
    entries = {}
    for name, entry in value.items():
        if name == "default":
            continue
        if isinstance(entry, str) and did_you_mean(str(name), ["default"]):
            # ``defualt: anthropic``: a misspelt key, not a provider named "defualt"
            failures.append(UnknownKey(str(name), ["default"]))
        else:
            entries[name] = entry
    by_name: dict[str, ProviderConfig] = {}
    try:
        by_name = CONVERTER.structure(entries, dict[str, ProviderConfig])
    except Exception as err:
        failures.append(err)
    if failures:
        raise ClassValidationError("While structuring Providers", failures, Providers)
    return Providers(default=default, by_name=by_name)


CONVERTER.register_structure_hook(str, _string)
CONVERTER.register_structure_hook(float, _number)
CONVERTER.register_structure_hook(Path, _path)
CONVERTER.register_structure_hook_factory(_is_literal, _literal_hook)
CONVERTER.register_structure_hook_factory(_is_mapping, _mapping_hook)
CONVERTER.register_structure_hook_factory(attrs.has, _section_hook)
CONVERTER.register_structure_hook(Providers, _providers)
