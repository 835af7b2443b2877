"""The standard tools an agent gets inside one node's workspace (``llm-sdks.md`` §3.5-§3.7).

``read_file``, ``write_file``, ``edit_file``, ``grep`` and ``glob`` reach only files under
the :class:`Workspace` root: a path that leaves it (``..``, an absolute path elsewhere, a
symbolic link pointing out, directly or through a parent directory) is refused with an
error result. ``shell`` runs ``/bin/bash -c`` with the workspace as its working directory,
in its own process group, with secrets filtered out of its environment; it is not a
sandbox (OS sandboxing is out of scope), only the file tools are confined.

Every tool answers with a :class:`ToolOutput`: problems the model can act on (a missing
file, an ambiguous edit, a timeout) are error results, never exceptions. ``text`` is
truncated as §3.6 says (characters first, then lines) for the model; ``full_text`` keeps
the whole output for the logs. :class:`Toolset` dispatches a model's :class:`ToolCall`,
checking its arguments against the tool's schema first.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from orchestra.errors import OrchestraError
from orchestra.llm.types import ToolCall, ToolDefinition, ToolResult
from orchestra.process import run_in_group
from orchestra.secrets import filter_environment, redact

if TYPE_CHECKING:
    from orchestra.agent.hooks import ToolCallHooks

__all__ = [
    "OUTPUT_LIMITS",
    "Executor",
    "OutputLimit",
    "Tool",
    "ToolOutput",
    "Toolset",
    "Workspace",
    "WorkspaceError",
    "edit_file",
    "filter_environment",
    "glob",
    "grep",
    "read_file",
    "repo_tool",
    "shell",
    "truncate_chars",
    "truncate_lines",
    "truncate_output",
    "write_file",
]

DEFAULT_SHELL_TIMEOUT = 10.0
MAX_SHELL_TIMEOUT = 600.0
_BINARY_SNIFF = 8192


class WorkspaceError(OrchestraError, ValueError):
    """A path a tool was given that leads outside its workspace."""


@attrs.frozen
class ToolOutput:
    """What a tool answered: ``text`` for the model (truncated), ``full_text`` for the logs,
    and the workspace-relative paths the call wrote."""

    text: str
    is_error: bool = False
    full_text: str = attrs.field(default=attrs.Factory(lambda self: self.text, takes_self=True))
    files_written: tuple[str, ...] = ()

    def as_result(self, tool_call_id: str) -> ToolResult:
        """The result to send back to the model for the call ``tool_call_id``."""
        return ToolResult(tool_call_id, self.text, self.is_error)


# --- the workspace --------------------------------------------------------------------------


def _real_path(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(path))


@attrs.frozen
class Workspace:
    """One node's working directory; ``root`` is stored as its real path."""

    root: Path = attrs.field(converter=_real_path)

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` (relative to the root, or absolute inside it); raises
        :class:`WorkspaceError` when it, or a symbolic link along it, leads outside.

        The real path of the longest existing prefix decides, so a link inside the
        workspace pointing out is refused whether it names the file or a parent directory,
        and so is a dangling link whose target would be created outside.
        """
        if "\0" in path:
            raise WorkspaceError(f"Path {path!r} contains a NUL character")
        joined = self.root / path
        real = _real_path(joined)
        if real.is_relative_to(self.root):
            return real
        if Path(os.path.normpath(joined)).is_relative_to(self.root):
            raise WorkspaceError(
                f"Path '{path}' leads outside the workspace through a symbolic link "
                f"(to {real}); file tools only reach files under {self.root}"
            )
        raise WorkspaceError(
            f"Path '{path}' is outside the workspace; file tools only reach files under "
            f"{self.root} (give a path relative to it)"
        )

    def relative(self, path: Path) -> str:
        """``path`` (inside the workspace) as the model should see it: relative, with '/'."""
        return path.relative_to(self.root).as_posix() if path != self.root else "."

    def contains(self, path: Path) -> bool:
        """Whether ``path``'s real path lies inside the workspace."""
        return _real_path(path).is_relative_to(self.root)


# --- truncation (§3.6) ----------------------------------------------------------------------


@attrs.frozen
class OutputLimit:
    """How much of a tool's output the model sees: ``max_chars`` in ``mode``, then at most
    ``max_lines`` lines (None: no line limit)."""

    max_chars: int
    mode: Literal["head_tail", "tail"]
    max_lines: int | None = None


#: The per-tool limits of §3.5.
OUTPUT_LIMITS: Mapping[str, OutputLimit] = {
    "read_file": OutputLimit(50_000, "head_tail"),
    "write_file": OutputLimit(1_000, "tail"),
    "edit_file": OutputLimit(10_000, "tail"),
    "shell": OutputLimit(30_000, "head_tail", 256),
    "grep": OutputLimit(20_000, "tail", 200),
    "glob": OutputLimit(20_000, "tail", 500),
}


def truncate_chars(text: str, max_chars: int, mode: Literal["head_tail", "tail"]) -> str:
    """``text`` cut to ``max_chars`` characters plus the spec's warning: the middle removed
    (``head_tail``) or the beginning (``tail``)."""
    removed = len(text) - max_chars
    if removed <= 0:
        return text
    if mode == "tail":
        return (
            f"[WARNING: Tool output was truncated. First {removed} characters were removed. "
            f"The full output is available in the event stream.]\n\n{text[-max_chars:]}"
        )
    head = max_chars // 2
    tail = max_chars - head
    return (
        f"{text[:head]}\n\n[WARNING: Tool output was truncated. {removed} characters were "
        "removed from the middle. The full output is available in the event stream. If you "
        "need to see specific parts, re-run the tool with more targeted parameters.]\n\n"
        f"{text[len(text) - tail :]}"
    )


def truncate_lines(text: str, max_lines: int) -> str:
    """``text`` cut to its first ``max_lines // 2`` and the remaining count of last lines,
    with a marker saying how many were omitted between them."""
    lines = text.split("\n")
    if len(lines) <= max_lines:
        return text
    head = max_lines // 2
    tail = max_lines - head
    omitted = len(lines) - max_lines
    return (
        "\n".join(lines[:head])
        + f"\n[... {omitted} lines omitted ...]\n"
        + "\n".join(lines[len(lines) - tail :])
    )


def truncate_output(text: str, limit: OutputLimit) -> str:
    """``text`` as the model sees it: characters cut first (a single 10 MB line is still
    cut), then lines."""
    text = truncate_chars(text, limit.max_chars, limit.mode)
    if limit.max_lines is not None:
        text = truncate_lines(text, limit.max_lines)
    return text


def _limited(output: ToolOutput, limit: OutputLimit) -> ToolOutput:
    return attrs.evolve(output, text=truncate_output(output.full_text, limit))


# --- the file tools -------------------------------------------------------------------------


class _Refused(Exception):
    """A tool's error answer to the model: the message is the result text."""


def _argument(arguments: Mapping[str, Any], name: str, default: Any) -> Any:
    value = arguments.get(name)
    return default if value is None else value


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_SNIFF]


def _existing_file(workspace: Workspace, given: str) -> tuple[Path, str]:
    path = workspace.resolve(given)
    shown = workspace.relative(path)
    if path.is_dir():
        raise _Refused(f"{shown} is a directory, not a file; use glob to list it")
    if not path.exists():
        raise _Refused(f"File not found: {shown}")
    return path, shown


def _read_text(path: Path, shown: str) -> str:
    data = path.read_bytes()
    if _is_binary(data):
        raise _Refused(f"{shown} is a binary file; these tools read and edit text only")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Refused(f"{shown} is not UTF-8 text ({err.reason} at byte {err.start})") from None


def _os_error_text(err: OSError, workspace: Workspace) -> str:
    if not err.filename:
        return str(err)
    path = Path(os.fsdecode(err.filename))
    shown = workspace.relative(path) if path.is_relative_to(workspace.root) else str(path)
    return f"{err.strerror or err}: {shown}"


_Body = Callable[[Mapping[str, Any], Workspace], ToolOutput]


async def _run_body(
    body: _Body, arguments: Mapping[str, Any], workspace: Workspace, limit: OutputLimit
) -> ToolOutput:
    try:
        output = await anyio.to_thread.run_sync(body, arguments, workspace)
    except (WorkspaceError, _Refused) as err:
        output = ToolOutput(str(err), is_error=True)
    except OSError as err:
        output = ToolOutput(_os_error_text(err, workspace), is_error=True)
    return _limited(output, limit)


def _read_file(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    path, shown = _existing_file(workspace, arguments["file_path"])
    offset: int = _argument(arguments, "offset", 1)
    limit: int = _argument(arguments, "limit", 2000)
    data = path.read_bytes()
    if _is_binary(data):
        raise _Refused(f"{shown} is a binary file; read_file reads text files only")
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        return ToolOutput(f"({shown} is empty)")
    if offset > len(lines):
        raise _Refused(f"offset {offset} is past the end of {shown} ({len(lines)} lines)")
    last = min(len(lines), offset + limit - 1)
    width = len(str(last))
    numbered = [
        f"{number:>{width}} | {line.removesuffix(chr(13))}"
        for number, line in enumerate(lines[offset - 1 : last], start=offset)
    ]
    if last < len(lines):
        numbered.append(
            f"[showing lines {offset}-{last} of {len(lines)}; read on with offset={last + 1}]"
        )
    return ToolOutput("\n".join(numbered))


def _write_file(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    path = workspace.resolve(arguments["file_path"])
    shown = workspace.relative(path)
    if path.is_dir():
        raise _Refused(f"{shown} is a directory; give a file path")
    data = arguments["content"].encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ToolOutput(f"Wrote {len(data)} bytes to {shown}", files_written=(shown,))


def _edit_file(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    path, shown = _existing_file(workspace, arguments["file_path"])
    old: str = arguments["old_string"]
    new: str = arguments["new_string"]
    replace_all: bool = _argument(arguments, "replace_all", False)
    if not old:
        raise _Refused("old_string is empty; to create or overwrite a file use write_file")
    if old == new:
        raise _Refused("old_string and new_string are the same; there is nothing to change")
    text = _read_text(path, shown)
    count = text.count(old)
    if count == 0:
        raise _Refused(f"old_string not found in {shown}; read the file and copy the exact text")
    if count > 1 and not replace_all:
        raise _Refused(
            f"old_string occurs {count} times in {shown}; add surrounding lines to make it "
            "unique, or set replace_all"
        )
    path.write_bytes(text.replace(old, new).encode("utf-8"))
    noun = "occurrence" if count == 1 else "occurrences"
    return ToolOutput(f"Replaced {count} {noun} in {shown}", files_written=(shown,))


def _search_root(workspace: Workspace, given: str | None) -> tuple[Path, str]:
    path = workspace.resolve(given or ".")
    shown = workspace.relative(path)
    if not path.exists():
        raise _Refused(f"Path not found: {shown}")
    return path, shown


def _files_under(base: Path, workspace: Workspace) -> Iterator[Path]:
    if not base.is_dir():
        yield base
        return
    # os.walk does not descend into symlinked directories; symlinked files are checked
    # one by one, so nothing outside the workspace is read.
    for directory, subdirs, files in os.walk(base):
        subdirs[:] = sorted(d for d in subdirs if d != ".git")
        for name in sorted(files):
            path = Path(directory, name)
            if workspace.contains(path):
                yield path


def _grep(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    pattern: str = arguments["pattern"]
    glob_filter: str | None = arguments.get("glob_filter")
    max_results: int = _argument(arguments, "max_results", 100)
    flags = re.IGNORECASE if _argument(arguments, "case_insensitive", False) else 0
    try:
        regex = re.compile(pattern, flags)
    except re.error as err:
        raise _Refused(f"Invalid regex {pattern!r}: {err}") from None
    base, shown_base = _search_root(workspace, arguments.get("path"))
    matches: list[str] = []
    for path in _files_under(base, workspace):
        shown = workspace.relative(path)
        if glob_filter and not fnmatch.fnmatchcase(
            shown if "/" in glob_filter else path.name, glob_filter
        ):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue  # unreadable files are skipped, as binary ones are
        if _is_binary(data):
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").split("\n"), 1):
            if regex.search(line):
                if len(matches) == max_results:
                    matches.append(
                        f"[stopped after {max_results} matches; narrow the pattern or the "
                        "path, or raise max_results]"
                    )
                    return ToolOutput("\n".join(matches))
                matches.append(f"{shown}:{number}: {line.removesuffix(chr(13))}")
    if not matches:
        return ToolOutput(f"No matches for {pattern!r} in {shown_base}")
    return ToolOutput("\n".join(matches))


def _glob(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    pattern: str = arguments["pattern"]
    base, shown_base = _search_root(workspace, arguments.get("path"))
    if not base.is_dir():
        raise _Refused(f"{shown_base} is not a directory")
    try:
        candidates = list(base.glob(pattern))
    except (ValueError, NotImplementedError) as err:
        raise _Refused(
            f"Invalid glob pattern {pattern!r} ({err}); give a pattern relative to the path, "
            "such as '**/*.py'"
        ) from None
    skip_git = ".git" not in pattern
    found: dict[str, float] = {}
    for path in candidates:
        if not workspace.contains(path):
            continue
        lexical = Path(os.path.normpath(path))
        shown = workspace.relative(lexical if lexical.is_relative_to(workspace.root) else path)
        if skip_git and ".git" in shown.split("/"):
            continue
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = path.lstat().st_mtime
        found[shown + ("/" if path.is_dir() else "")] = mtime
    if not found:
        return ToolOutput(f"No paths match {pattern!r} in {shown_base}")
    ordered = sorted(found, key=lambda shown: (-found[shown], shown))
    return ToolOutput("\n".join(ordered))


async def read_file(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    """Lines ``offset`` to ``offset + limit - 1`` of a text file, numbered ``N | content``."""
    return await _run_body(_read_file, arguments, workspace, OUTPUT_LIMITS["read_file"])


async def write_file(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    """Write ``content`` to a file (creating parent directories); answers the byte count."""
    return await _run_body(_write_file, arguments, workspace, OUTPUT_LIMITS["write_file"])


async def edit_file(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    """Replace the exact ``old_string`` (unique unless ``replace_all``) with ``new_string``."""
    return await _run_body(_edit_file, arguments, workspace, OUTPUT_LIMITS["edit_file"])


async def grep(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    """Lines matching a Python regex, as ``file:line: text``, skipping ``.git`` and binary
    files."""
    return await _run_body(_grep, arguments, workspace, OUTPUT_LIMITS["grep"])


async def glob(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
    """Workspace paths matching a glob pattern, newest first."""
    return await _run_body(_glob, arguments, workspace, OUTPUT_LIMITS["glob"])


# --- shell ----------------------------------------------------------------------------------


def _timeout_message(timeout_ms: int) -> str:
    return (
        f"[ERROR: Command timed out after {timeout_ms}ms. Partial output is shown above.\n"
        "You can retry with a longer timeout by setting the timeout_ms parameter.]"
    )


def _shell_report(
    stdout: bytes, stderr: bytes, code: int | None, duration_ms: int, timeout_ms: int | None
) -> str:
    sections = []
    if stdout:
        sections.append(stdout.decode("utf-8", errors="replace").rstrip("\n"))
    if stderr:
        sections.append("[stderr]\n" + stderr.decode("utf-8", errors="replace").rstrip("\n"))
    if timeout_ms is not None:
        sections.append(_timeout_message(timeout_ms))
    elif code is not None and code < 0:
        sections.append(f"[killed by signal {-code} after {duration_ms} ms]")
    else:
        sections.append(f"[exit code {code}, {duration_ms} ms]")
    return "\n".join(sections)


async def shell(
    arguments: Mapping[str, Any],
    workspace: Workspace,
    *,
    default_timeout: float = DEFAULT_SHELL_TIMEOUT,
) -> ToolOutput:
    """Run ``command`` with ``/bin/bash -c`` in the workspace, in a new process group.

    stdout and stderr are captured apart and then combined with the exit code and the
    duration; a non-zero exit is output, not an error. On timeout (``timeout_ms``, else
    ``default_timeout`` seconds, at most 600 s) the group gets SIGTERM, then SIGKILL after
    2 s, and the answer is the partial output plus the spec's timeout message, as an error.
    Cancelled, the group is killed the same way. Whatever the command left running in its
    group when it exits is killed too, so nothing outlives the call.
    """
    command: str = arguments["command"]
    timeout_ms = _argument(arguments, "timeout_ms", round(default_timeout * 1000))
    timeout_ms = min(timeout_ms, round(MAX_SHELL_TIMEOUT * 1000))
    program = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    stdout = bytearray()
    stderr = bytearray()
    started = time.monotonic()
    finished = await run_in_group(
        [program, "-c", command],
        cwd=workspace.root,
        env=filter_environment(os.environ),
        stdout=stdout.extend,
        stderr=stderr.extend,
        timeout=timeout_ms / 1000,
    )
    timed_out = finished.timed_out
    duration_ms = round((time.monotonic() - started) * 1000)
    report = _shell_report(
        bytes(stdout),
        bytes(stderr),
        finished.returncode,
        duration_ms,
        timeout_ms if timed_out else None,
    )
    return _limited(ToolOutput(redact(report), is_error=timed_out), OUTPUT_LIMITS["shell"])


# --- definitions and dispatch ---------------------------------------------------------------

_PATH = "relative to the workspace root (an absolute path must lie inside the workspace)"


def _schema(properties: Mapping[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }


_DEFINITIONS = {
    "read_file": ToolDefinition(
        "read_file",
        "Read a text file in the workspace. Lines come numbered as 'N | content' (the numbers "
        "are not part of the file). Use offset and limit to page through long files.",
        _schema(
            {
                "file_path": {"type": "string", "description": f"The file, {_PATH}."},
                "offset": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "First line to show, counting from 1 (default 1).",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Most lines to show (default 2000).",
                },
            },
            ("file_path",),
        ),
    ),
    "write_file": ToolDefinition(
        "write_file",
        "Write a file in the workspace, replacing it if it exists and creating missing parent "
        "directories. Prefer edit_file to change part of an existing file.",
        _schema(
            {
                "file_path": {"type": "string", "description": f"The file, {_PATH}."},
                "content": {"type": "string", "description": "The whole new content."},
            },
            ("file_path", "content"),
        ),
    ),
    "edit_file": ToolDefinition(
        "edit_file",
        "Replace an exact piece of text in a file. old_string must match the file exactly, "
        "whitespace included, and occur once unless replace_all is set; read the file first.",
        _schema(
            {
                "file_path": {"type": "string", "description": f"The file, {_PATH}."},
                "old_string": {"type": "string", "description": "The exact text to replace."},
                "new_string": {"type": "string", "description": "The text to put instead."},
                "replace_all": {
                    "type": "boolean",
                    "description": "Replace every occurrence (default false: exactly one).",
                },
            },
            ("file_path", "old_string", "new_string"),
        ),
    ),
    "grep": ToolDefinition(
        "grep",
        "Search file contents with a Python regular expression. Returns 'file:line: text' "
        "lines; skips .git and binary files.",
        _schema(
            {
                "pattern": {"type": "string", "description": "The regular expression."},
                "path": {
                    "type": "string",
                    "description": f"File or directory to search, {_PATH} (default: all).",
                },
                "glob_filter": {
                    "type": "string",
                    "description": "Only files whose name matches this glob, e.g. '*.py' "
                    "(with a '/', matched against the workspace-relative path).",
                },
                "case_insensitive": {"type": "boolean", "description": "Ignore case."},
                "max_results": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Most matching lines to return (default 100).",
                },
            },
            ("pattern",),
        ),
    ),
    "glob": ToolDefinition(
        "glob",
        "Find paths matching a glob pattern such as '**/*.py'. Returns workspace-relative "
        "paths, newest first; directories end in '/'.",
        _schema(
            {
                "pattern": {"type": "string", "description": "The glob pattern."},
                "path": {
                    "type": "string",
                    "description": f"Directory to search from, {_PATH} (default: the root).",
                },
            },
            ("pattern",),
        ),
    ),
}


def _shell_definition(default_timeout: float) -> ToolDefinition:
    return ToolDefinition(
        "shell",
        "Run a command with bash in the workspace directory. Returns stdout, stderr, the exit "
        "code and the duration. Commands that run too long are killed (see timeout_ms).",
        _schema(
            {
                "command": {"type": "string", "description": "The command line to run."},
                "timeout_ms": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Kill the command after this many milliseconds "
                    f"(default {round(default_timeout * 1000)}, at most "
                    f"{round(MAX_SHELL_TIMEOUT * 1000)}).",
                },
                "description": {
                    "type": "string",
                    "description": "A few words on what the command is for.",
                },
            },
            ("command",),
        ),
    )


Executor = Callable[[Mapping[str, Any], Workspace], Awaitable[ToolOutput]]


def repo_tool(name: str, command: str, cwd: Path, default_timeout: float, repo: str) -> Tool:
    """A fixed shell command offered as a tool (``workspace.tools`` in ``orchestra.yaml``):
    it runs in ``cwd``, a repository's worktree, by the ``shell`` tool's rules (process
    group, timeout, output truncation). The model passes no command text, so none can be
    injected."""
    definition = ToolDefinition(
        name,
        f"Run `{command}` in the {repo} repository's worktree. Returns stdout, stderr, the "
        "exit code and the duration.",
        _schema(
            {
                "timeout_ms": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Kill the command after this many milliseconds "
                    f"(default {round(default_timeout * 1000)}).",
                }
            },
            (),
        ),
    )
    where = Workspace(cwd)

    async def run(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
        given = {**dict(arguments), "command": command}
        return await shell(given, where, default_timeout=default_timeout)

    return Tool(definition, run)


@attrs.frozen
class Tool:
    """A tool the model can call: what it is told (``definition``) and what runs."""

    definition: ToolDefinition
    execute: Executor

    @property
    def name(self) -> str:
        return self.definition.name


# shell is bound per Toolset, to its default timeout.
_FILE_TOOLS = (
    Tool(_DEFINITIONS["read_file"], read_file),
    Tool(_DEFINITIONS["write_file"], write_file),
    Tool(_DEFINITIONS["edit_file"], edit_file),
    Tool(_DEFINITIONS["grep"], grep),
    Tool(_DEFINITIONS["glob"], glob),
)

_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
}


def _argument_problems(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``arguments`` for an object ``schema`` of strings, integers and
    booleans. A null optional field counts as absent (some models send every field)."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    problems = [f"missing required field '{name}'" for name in sorted(required - arguments.keys())]
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is None:
            problems.append(f"unexpected field '{name}'")
            continue
        if value is None and name not in required:
            continue
        kind = spec.get("type")
        is_bool = isinstance(value, bool)
        if not isinstance(value, _JSON_TYPES[kind]) or (kind != "boolean" and is_bool):
            problems.append(
                f"'{name}' must be {'an' if kind == 'integer' else 'a'} {kind}, "
                f"got {json.dumps(value)}"
            )
        elif "minimum" in spec and value < spec["minimum"]:
            problems.append(f"'{name}' must be at least {spec['minimum']}, got {value}")
    return problems


class Toolset:
    """The standard tools bound to one workspace: their definitions for the model, and
    :meth:`run` to answer a call, between the stage's tool call ``hooks`` if it has any."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        shell_timeout: float = DEFAULT_SHELL_TIMEOUT,
        hooks: ToolCallHooks | None = None,
        extra: Sequence[Tool] = (),
        only: Collection[str] | None = None,
    ) -> None:
        """``only`` keeps just the tools named (``read_file``, ``grep``, ``glob`` for a
        reviewer that must not change anything); a name that is no tool is a ValueError."""
        if not 0 < shell_timeout <= MAX_SHELL_TIMEOUT:
            raise ValueError(
                f"shell_timeout must be more than 0 and at most {MAX_SHELL_TIMEOUT:g} seconds, "
                f"got {shell_timeout:g}"
            )
        self.workspace = workspace
        self.hooks = hooks

        async def run_shell(arguments: Mapping[str, Any], workspace: Workspace) -> ToolOutput:
            return await shell(arguments, workspace, default_timeout=shell_timeout)

        tools = (*_FILE_TOOLS, Tool(_shell_definition(shell_timeout), run_shell), *extra)
        self._tools = {tool.name: tool for tool in tools}
        if only is not None:
            unknown = [name for name in only if name not in self._tools]
            if unknown:
                raise ValueError(
                    f"no tool named {', '.join(unknown)} (the tools: {', '.join(self._tools)})"
                )
            self._tools = {name: tool for name, tool in self._tools.items() if name in only}

    def definitions(self) -> tuple[ToolDefinition, ...]:
        """The tools' definitions, to send with each request."""
        return tuple(tool.definition for tool in self._tools.values())

    async def run(self, call: ToolCall) -> ToolOutput:
        """Run ``call``; every failure is an error result: an unknown tool, arguments that
        do not fit the schema, a refusal (by the tool or by the pre hook), or an exception
        in the tool itself. A call that reaches its tool runs the pre hook first (a failed
        one skips the call) and the post hook after."""
        tool = self._tools.get(call.name)
        if tool is None:
            return ToolOutput(
                f"Unknown tool: {call.name} (available: {', '.join(self._tools)})", is_error=True
            )
        arguments = call.arguments
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError as err:
                return self._invalid(call.name, f"not valid JSON ({err})")
        if not isinstance(arguments, Mapping):
            return self._invalid(call.name, f"expected a JSON object, got {json.dumps(arguments)}")
        problems = _argument_problems(tool.definition.parameters, arguments)
        if problems:
            return self._invalid(call.name, "; ".join(problems))
        if self.hooks is None:
            return await self._execute(tool, call.name, arguments)
        pre = await self.hooks.run_pre(call, arguments, self.workspace.root)
        if pre is not None and not pre.ok:
            return pre.refusal()
        output = await self._execute(tool, call.name, arguments)
        await self.hooks.run_post(call, arguments, output, self.workspace.root)
        return output

    async def _execute(self, tool: Tool, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        try:
            return await tool.execute(arguments, self.workspace)
        except Exception as err:  # the model gets the error; the loop goes on
            return ToolOutput(f"Tool error ({name}): {type(err).__name__}: {err}", True)

    @staticmethod
    def _invalid(name: str, problem: str) -> ToolOutput:
        return ToolOutput(f"Invalid arguments for tool {name}: {problem}", is_error=True)
