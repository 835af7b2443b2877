"""Finding and reading ``orchestra.yaml``, and the ``.env`` file beside it.

``orchestra.yaml`` is the nearest one in the working directory (or the pipeline's) or a
parent. Every mistake in it is a :class:`~orchestra.errors.ConfigError` naming the file, the
line and the dotted key (``orchestra.yaml:12: agents.critic.model: unknown tier 'smrt'``),
never a traceback, and never a quotation of the file's text, which may hold secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from orchestra.config.converter import CONVERTER, KeyPath, problems, unknown_choice
from orchestra.config.model import TIERS, Backend, Config, RepoConfig
from orchestra.config.models import misspelt_tier
from orchestra.errors import ConfigError

__all__ = [
    "CONFIG_FILE_NAME",
    "PROVIDER_KEYS",
    "default_backend",
    "find_config",
    "load_config",
    "load_env",
    "parse_yaml",
    "read_text",
    "read_yaml",
]

CONFIG_FILE_NAME = "orchestra.yaml"

PROVIDER_KEYS: Mapping[str, str] = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
}
"""The providers Orchestra has clients for, and the environment variable holding each key."""

_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")


def find_config(start: Path) -> Path | None:
    """``orchestra.yaml`` in ``start`` (a directory, or a file such as the pipeline's) or
    the nearest parent that has one."""
    here = start.absolute()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def default_backend(environ: Mapping[str, str]) -> Backend:
    """The backend when ``orchestra.yaml`` names none: ``agent`` when a provider key is
    set in ``environ``, else ``simulation``, which needs no model at all."""
    if any(environ.get(variable, "").strip() for variable in PROVIDER_KEYS.values()):
        return "agent"
    return "simulation"


def load_config(
    path: Path | None = None,
    *,
    start: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The configuration in ``path``, or in the ``orchestra.yaml`` that :func:`find_config`
    finds from ``start`` (default: the working directory); defaults when there is none.

    ``environ`` (default ``os.environ``) decides the backend when the file names none; call
    :func:`load_env` first so that keys in ``.env`` count.
    """
    environ = os.environ if environ is None else environ
    if path is None:
        path = find_config(start if start is not None else Path.cwd())
        if path is None:
            return Config(backend=default_backend(environ))
    text = read_text(path)
    data = parse_yaml(text, path)
    lines = _KeyLines(text)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            "expected a map of settings (backend, providers, agents, cxdb, workspace, tools, "
            f"prices), got {_kind(data)}",
            path=str(path),
            line=1,
        )
    try:
        config = CONVERTER.structure(data, Config)
    except Exception as err:
        raise _first(problems(err), path, lines) from None
    config, found = _finish(config, path.parent.absolute())
    if found:
        raise _first(found, path, lines)
    backend = config.backend if "backend" in data else default_backend(environ)
    return attrs.evolve(config, backend=backend, path=path)


def load_env(directory: Path, *, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The variables ``.env`` in ``directory`` defines (the directory of ``orchestra.yaml``,
    or the working directory when there is none); {} when there is no such file.

    Each variable not already in ``environ`` (default ``os.environ``) is set there; one
    already set keeps its value. Lines are ``KEY=VALUE``, optionally ``export KEY=VALUE``;
    quotes around a value are removed, ``#`` starts a comment. Values are never logged.
    """
    path = directory / ".env"
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read it ({type(err).__name__})", path=str(path)) from None
    values = _parse_env(text, path)
    target = os.environ if environ is None else environ
    for name, value in values.items():
        target.setdefault(name, value)
    return values


# reading -------------------------------------------------------------------------------------


def read_text(path: Path, *, missing: str = "no such file") -> str:
    """A configuration file's text; a ConfigError naming it when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(missing, path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path=str(path)) from None
    except OSError as err:
        raise ConfigError(f"cannot read it: {err.strerror or err}", path=str(path)) from None


def parse_yaml(text: str, path: Path) -> Any:
    """YAML read with the safe loader (plain dicts, lists and scalars only). A syntax error
    is a ConfigError with the file, line, column and the parser's problem, never its full
    message, which quotes the file's lines (they may hold secrets). Every configuration
    file Orchestra reads (orchestra.yaml, prompt layers, prices) goes through here."""
    try:
        return YAML(typ="safe").load(text)
    except MarkedYAMLError as err:
        raise _syntax_error(err, path) from None
    except YAMLError as err:
        raise ConfigError(f"not valid YAML ({type(err).__name__})", path=str(path)) from None


def read_yaml(path: Path, *, missing: str = "no such file") -> Any:
    """``parse_yaml(read_text(path))``."""
    return parse_yaml(read_text(path, missing=missing), path)


def _syntax_error(err: MarkedYAMLError, path: Path) -> ConfigError:
    if isinstance(err, DuplicateKeyError):
        # its problem quotes both values
        problem = "duplicate key; a key may appear once in a map"
    else:
        problem = err.problem or err.context or "not valid YAML"
        begun, found = err.context_mark, err.problem_mark
        if err.context and err.problem and begun and found and begun.line != found.line:
            # an unclosed quote or bracket: found at the end, begun earlier
            problem += f" ({err.context} at line {begun.line + 1})"
        if "unhashable key" in problem:
            # ``prompt: {{ goal }}`` reads as a YAML map with a map for its key
            problem += " (quote text that starts with {{, or give it as a | block)"
    mark = err.problem_mark or err.context_mark
    return ConfigError(
        f"YAML syntax error: {problem}",
        path=str(path),
        line=mark.line + 1 if mark is not None else None,
        column=mark.column + 1 if mark is not None else None,
    )


class _KeyLines:
    """The line of each key, from a round-trip parse made only when a mistake needs it."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._root: Any = None
        self._parsed = False

    def line(self, key: KeyPath) -> int | None:
        """The line of ``key``, or of its nearest enclosing key the file has."""
        if not self._parsed:
            self._parsed = True
            try:
                self._root = YAML(typ="rt").load(self._text)
            except YAMLError:
                self._root = None
        node, line = self._root, None
        for part in key:
            if isinstance(node, CommentedMap):
                found = next((k for k in node if str(k) == part), None)
                if found is None:
                    break
                line, node = node.lc.key(found)[0] + 1, node[found]
            elif isinstance(node, CommentedSeq) and part.isdigit() and int(part) < len(node):
                line, node = node.lc.item(int(part))[0] + 1, node[int(part)]
            else:
                break
        return line


def _first(found: Iterable[tuple[KeyPath, str]], path: Path, lines: _KeyLines) -> ConfigError:
    """The first mistake in file order, saying how many more follow it."""
    located = sorted(
        ((lines.line(key), key, message) for key, message in found),
        key=lambda item: item[0] or 0,
    )
    line, key, message = located[0]
    if len(located) > 1:
        more = len(located) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, path=str(path), key=".".join(key) or None, line=line)


def _kind(value: object) -> str:
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


# checks that need the whole file, and paths --------------------------------------------------


def _finish(config: Config, base: Path) -> tuple[Config, list[tuple[KeyPath, str]]]:
    """``config`` with its paths made absolute against ``base``, and the mistakes that only
    the whole configuration shows: provider names, misspelt tiers, missing layer files."""
    found: list[tuple[KeyPath, str]] = []
    providers = sorted({*config.providers.by_name, *PROVIDER_KEYS})
    default = config.providers.default
    if default is not None and default not in providers:
        found.append((("providers", "default"), _unknown_provider(default, providers)))

    agents = {}
    for name, agent in config.agents.items():
        if agent.model is not None and misspelt_tier(agent.model) is not None:
            message = unknown_choice(agent.model, "tier", "tiers", TIERS)
            found.append((("agents", name, "model"), message))
        if agent.provider is not None and agent.provider not in providers:
            found.append(
                (("agents", name, "provider"), _unknown_provider(agent.provider, providers))
            )

        key = ("agents", name)
        agents[name] = attrs.evolve(
            agent,
            role=_file((*key, "role"), agent.role, base, found),
            persona=_file((*key, "persona"), agent.persona, base, found),
            personality=_file((*key, "personality"), agent.personality, base, found),
            task=_file((*key, "task"), agent.task, base, found),
        )

    repos = _repos(config, base, found)
    prices = config.prices
    if isinstance(prices, Path):
        prices = _file(("prices",), prices, base, found)

    resolved = attrs.evolve(
        config,
        agents=agents,
        workspace=attrs.evolve(config.workspace, repos=repos),
        prices=prices,
    )
    return resolved, found


_REPO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]+")
#: ``git@host:owner/repo.git``, a URL though it has no ``://``
_SCP_LIKE = re.compile(r"[\w.-]+@[\w.-]+:")


def _repos(config: Config, base: Path, found: list[tuple[KeyPath, str]]) -> dict[str, RepoConfig]:
    """``workspace.repos`` with absolute paths; mistakes (a name that cannot be a tool
    prefix, a missing path with nowhere to clone it from, tools of an unknown repository)
    go to ``found``."""
    repos: dict[str, RepoConfig] = {}
    for name, repo in config.workspace.repos.items():
        key = ("workspace", "repos", name)
        if not _REPO_NAME.fullmatch(name) or "__" in name:
            found.append(
                (
                    key,
                    "a repository name is letters, digits, '.', '_' and '-' "
                    "(no '__'): it names the repository's tools, REPO__TOOL",
                )
            )
        path = _absolute(repo.path, base)
        if not path.exists() and not repo.remote:
            found.append(
                (
                    (*key, "path"),
                    f"{path} does not exist; fix the path, or set "
                    f"workspace.repos.{name}.remote to clone it from",
                )
            )
        if repo.clone_depth is not None and repo.clone_depth < 1:
            found.append(((*key, "clone_depth"), "expected a number of commits, 1 or more"))
        if not repo.branch_prefix.strip() or any(c in repo.branch_prefix for c in " ~^:?*[\\"):
            found.append(
                (
                    (*key, "branch_prefix"),
                    "expected a git branch name prefix such as "
                    "'orchestra/' (no spaces or ~^:?*[\\)",
                )
            )
        remote = repo.remote
        if remote and "://" not in remote and not _SCP_LIKE.match(remote) and "/" in remote:
            remote = str(_absolute(Path(remote), base))  # a path, relative to this file
        repos[name] = attrs.evolve(repo, path=path, remote=remote)
    for name, tools in config.workspace.tools.items():
        if name not in repos:
            found.append(
                (
                    ("workspace", "tools", name),
                    unknown_choice(name, "repository", "repositories", list(repos)),
                )
            )
        for tool in tools:
            if not _TOOL_NAME.fullmatch(tool):
                found.append(
                    (
                        ("workspace", "tools", name, tool),
                        "a tool name is letters, digits, '_' and '-'",
                    )
                )
    return repos


def _file(
    key: KeyPath, given: Path | None, base: Path, found: list[tuple[KeyPath, str]]
) -> Path | None:
    """``given`` made absolute against ``base``; a mistake in ``found`` when no file is there."""
    if given is None:
        return None
    absolute = _absolute(given, base)
    if not absolute.is_file():
        found.append((key, f"file not found: {absolute}"))
    return absolute


def _unknown_provider(name: str, providers: list[str]) -> str:
    return unknown_choice(name, "provider", "providers", providers)


def _absolute(path: Path, base: Path) -> Path:
    return base / path.expanduser()


# .env ----------------------------------------------------------------------------------------


def _parse_env(text: str, path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(line)
        if match is None:
            raise ConfigError(
                "expected KEY=VALUE (a name of letters, digits and _)",
                path=str(path),
                line=number,
            )
        name, rest = match.groups()
        value = _env_value(rest)
        if value is None:
            raise ConfigError(
                "a quoted value needs its closing quote, and nothing but a comment after it",
                path=str(path),
                key=name,
                line=number,
            )
        values[name] = value
    return values


def _env_value(text: str) -> str | None:
    """The value of a ``.env`` line after ``=``; None when its quoting is broken."""
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        if end < 0:
            return None
        after = text[end + 1 :].strip()
        if after and not after.startswith("#"):
            return None
        return text[1:end]
    comment = re.search(r"\s#", text)
    return (text[: comment.start()] if comment else text).strip()
