"""Every error Orchestra raises, in one tree.

Catch :class:`OrchestraError` to handle them all. Each class also inherits the builtin
a caller would naturally catch, so ``except ValueError`` still works for bad input::

    OrchestraError
    ├── PipelineFileError (OSError)        a DOT file that cannot be read
    ├── DotSyntaxError (ValueError)        DOT text outside the Attractor subset, with line:col
    │   └── AttributeValueError            a known attribute with a value of the wrong type
    ├── ConditionSyntaxError (ValueError)  an edge condition that does not parse, with column
    ├── StylesheetSyntaxError (ValueError) a model_stylesheet that does not parse, with line:col
    ├── TransformError (TypeError)         a custom transform that did not return a Graph
    ├── ValidationError (ValueError)       a graph with error-severity diagnostics
    ├── ConfigError (ValueError)           an orchestra.yaml or .env mistake, with file:line and key
    ├── StoreError (OSError)               durable state that cannot be read or written
    │   └── ContextNotFound (LookupError)  a session or turn id the store does not have
    ├── RunDirectoryError (OSError)        a run directory file that cannot be written
    ├── HumanUnavailable (RuntimeError)    a question with nobody to answer it (no terminal)
    └── RepositoryError (OSError)          a workspace repository that cannot be used, or a
                                           git operation on it that failed

Every error renders as one line a person can act on, naming the file, line and column
(or the node) it concerns; ``str(err)`` is that line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestra.validation import Diagnostic

__all__ = [
    "AttributeValueError",
    "ConditionSyntaxError",
    "ConfigError",
    "ContextNotFound",
    "DotSyntaxError",
    "HumanUnavailable",
    "OrchestraError",
    "PipelineFileError",
    "RepositoryError",
    "RunDirectoryError",
    "StoreError",
    "StylesheetSyntaxError",
    "TransformError",
    "ValidationError",
]


class OrchestraError(Exception):
    """Base class of every error Orchestra raises on purpose."""


class PipelineFileError(OrchestraError, OSError):
    """A pipeline file that does not exist, is not a file, or cannot be read as text."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class DotSyntaxError(OrchestraError, ValueError):
    """DOT text that is malformed or outside the Attractor subset.

    ``line`` and ``column`` are 1-based; ``expected`` says what would have been valid.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        source_line: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.source_line = source_line
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "<string>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"

    def excerpt(self) -> str:
        """The offending source line with a caret under the column, or '' if unknown."""
        if self.source_line is None or self.column is None:
            return ""
        line = self.source_line.expandtabs(1).rstrip("\n")
        return f"    {line}\n    {' ' * (self.column - 1)}^"


class AttributeValueError(DotSyntaxError):
    """A known attribute whose value does not have the type the spec gives it."""


class ConditionSyntaxError(OrchestraError, ValueError):
    """An edge condition that does not parse; ``column`` is 1-based within the condition."""

    def __init__(self, message: str, *, condition: str, column: int) -> None:
        self.message = message
        self.condition = condition
        self.column = column
        super().__init__(f"column {column}: {message}")


class StylesheetSyntaxError(OrchestraError, ValueError):
    """A model stylesheet that does not parse; ``line``/``column`` are within the stylesheet."""

    def __init__(self, message: str, *, line: int, column: int) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"line {line}, column {column}: {message}")


class TransformError(OrchestraError, TypeError):
    """A custom transform that returned something other than a ``Graph``."""


class ValidationError(OrchestraError, ValueError):
    """A graph that has error-severity diagnostics and must not run."""

    def __init__(self, diagnostics: Sequence[Diagnostic], *, file: str | None = None) -> None:
        self.diagnostics = tuple(diagnostics)
        self.file = file
        errors = [d for d in self.diagnostics if d.severity.name == "ERROR"]
        where = file or "<string>"
        lines = [f"{where}: {len(errors)} error(s):"]
        lines += [f"  {d.render(file)}" for d in errors]
        super().__init__("\n".join(lines))


class ConfigError(OrchestraError, ValueError):
    """A configuration mistake: an ``orchestra.yaml`` or ``.env`` that does not parse or holds
    a value Orchestra cannot use, or a model that the configuration cannot resolve.

    ``path`` is the file, ``key`` the dotted key (``agents.critic.model``), ``line`` and
    ``column`` are 1-based; each is None when not known. The message never quotes the
    file's text, which may hold secrets.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.key = key
        self.line = line
        self.column = column
        where = path or ""
        if path is not None and line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        super().__init__(": ".join(part for part in (where, key, message) if part))


class StoreError(OrchestraError, OSError):
    """The state store cannot be opened, read or written; the message says which and why."""


class ContextNotFound(StoreError, LookupError):
    """A context (session) or turn id that the store does not hold."""


class RunDirectoryError(OrchestraError, OSError):
    """A file of the run directory (``status.json``, ``checkpoint.json``) that cannot be
    written. The store still holds every checkpoint, so the run can be resumed once the
    directory is writable again."""


class RepositoryError(OrchestraError, OSError):
    """A repository of ``workspace.repos`` that cannot be used (not a git repository, no
    commit to start from) or a git operation on it that failed; names the repository."""

    def __init__(self, repo: str, problem: str) -> None:
        super().__init__(f"workspace repo '{repo}': {problem}")
        self.repo = repo
        self.problem = problem


class HeadMoved(StoreError):
    """An append that expected the context's head to be one turn found another there."""

    def __init__(self, message: str, head_turn_id: int) -> None:
        super().__init__(message)
        self.head_turn_id = head_turn_id


class SessionTaken(OrchestraError, RuntimeError):
    """Another runner holds the session: it refuses to run it too (exit 2)."""


class HumanUnavailable(OrchestraError, RuntimeError):
    """A gate (or chat) asked a person, and there is nobody to ask: stdin is not a terminal
    and no answers were arranged. It stops the run (resumable), rather than failing the
    node or, worse, answering for the person."""
