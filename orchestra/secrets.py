"""Keeping secrets out of what Orchestra starts and writes.

A secret is an environment variable whose name ends in ``_API_KEY``, ``_SECRET``,
``_TOKEN``, ``_PASSWORD`` or ``_CREDENTIAL`` (or is one of those words), in any case: the
provider keys among them. Processes Orchestra starts for a pipeline (tool nodes, the
agent's shell, tool hooks) get the environment without them, unless a name is passed
through on purpose (``tool_env_passthrough``); and whatever they print is redacted of every
secret's value before it is written anywhere (files, the context, the store).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping

__all__ = [
    "REDACTED",
    "filter_environment",
    "is_secret_name",
    "passthrough_names",
    "redact",
    "secret_values",
]

_SECRET_SUFFIXES = ("API_KEY", "SECRET", "TOKEN", "PASSWORD", "CREDENTIAL")
#: what stands in for a secret's value in text Orchestra writes
REDACTED = "[redacted]"
#: shorter values are not redacted: they would match ordinary text
_MIN_SECRET_CHARS = 8


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(upper == suffix or upper.endswith(f"_{suffix}") for suffix in _SECRET_SUFFIXES)


def filter_environment(
    environ: Mapping[str, str], passthrough: Collection[str] = ()
) -> dict[str, str]:
    """``environ`` without its secrets, except the names in ``passthrough``."""
    return {
        name: value
        for name, value in environ.items()
        if name in passthrough or not is_secret_name(name)
    }


def passthrough_names(*given: object) -> set[str]:
    """The names listed in ``tool_env_passthrough`` values (comma or space separated)."""
    names: set[str] = set()
    for value in given:
        if value:
            names.update(str(value).replace(",", " ").split())
    return names


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secrets in ``environ`` (default ``os.environ``), longest first."""
    environ = os.environ if environ is None else environ
    values = {
        value
        for name, value in environ.items()
        if is_secret_name(name) and len(value.strip()) >= _MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str, values: Collection[str] | None = None) -> str:
    """``text`` with every secret value (default: those of ``os.environ``) replaced."""
    for value in secret_values() if values is None else values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text
