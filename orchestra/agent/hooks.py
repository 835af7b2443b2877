"""Tool call hooks (Attractor §9.7): shell commands run around each tool call of an agent.

A ``pre`` hook runs before the call and decides whether it happens: exit 0 lets it run;
any other exit, a timeout, or a hook that cannot start skips it, and the model gets an error
result saying the pre-hook refused the call. A ``post`` hook runs after the call, with its
result; its failures are recorded and change nothing. A call that was skipped, or that never
reached its tool (an unknown tool, arguments that do not fit the schema), runs no hooks.

Hooks run like the ``shell`` tool: ``/bin/bash -c`` in the workspace, in their own process
group (killed as one on timeout or cancellation, and whatever they leave behind is killed
when they exit), with secrets filtered out of the environment. They learn about the call
from environment variables (``ORCHESTRA_HOOK``, ``ORCHESTRA_TOOL_NAME``,
``ORCHESTRA_TOOL_CALL_ID``, ``ORCHESTRA_NODE_ID``, ``ORCHESTRA_STAGE_DIR``, and for post
hooks ``ORCHESTRA_TOOL_IS_ERROR``; also Attractor's ``ATTRACTOR_TOOL_NAME``,
``ATTRACTOR_NODE_ID`` and ``ATTRACTOR_STAGE_DIR``) and from one JSON object on stdin::

    {"hook": "pre", "tool": "write_file", "call_id": "...", "arguments": {...},
     "node_id": "build"}

to which a post hook's input adds ``"output"`` (the text the model sees, truncated) and
``"is_error"``. Every run is appended to the stage's hook log as one JSON line: the command,
exit code, duration and the first lines of its output, never its environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from orchestra.agent.tools import ToolOutput
from orchestra.config.model import ToolHooks
from orchestra.llm.types import ToolCall
from orchestra.process import collect, run_in_group
from orchestra.secrets import filter_environment, redact

__all__ = [
    "DEFAULT_HOOK_TIMEOUT",
    "TOOL_HOOKS_LOG",
    "Hook",
    "HookRun",
    "ToolCallHooks",
    "hook_commands",
]

Hook = Literal["pre", "post"]

DEFAULT_HOOK_TIMEOUT = 30.0
#: the hook log's usual name in a stage directory
TOOL_HOOKS_LOG = "tool_hooks.jsonl"
_BASH = "/bin/bash"
_CAPTURE_BYTES = 64 * 1024
_LOG_LINES = 5
_LOG_LINE_CHARS = 500
# Cleared from the inherited environment first, so a value from an enclosing run never
# passes for this call's.
_CALL_VARIABLES = (
    "ORCHESTRA_HOOK",
    "ORCHESTRA_TOOL_NAME",
    "ORCHESTRA_TOOL_CALL_ID",
    "ORCHESTRA_TOOL_IS_ERROR",
    "ORCHESTRA_NODE_ID",
    "ORCHESTRA_STAGE_DIR",
    "ATTRACTOR_TOOL_NAME",
    "ATTRACTOR_NODE_ID",
    "ATTRACTOR_STAGE_DIR",
)


def hook_commands(
    node_attrs: Mapping[str, Any], graph_attrs: Mapping[str, Any], config_hooks: ToolHooks
) -> ToolHooks:
    """The hook commands for a node: its ``tool_hooks.pre``/``tool_hooks.post`` attribute,
    else the graph's, else ``tools.hooks`` of ``orchestra.yaml``. Each is chosen on its own;
    an empty string at a level disables that hook there (None in the answer)."""
    return ToolHooks(
        pre=_command("pre", node_attrs, graph_attrs, config_hooks.pre),
        post=_command("post", node_attrs, graph_attrs, config_hooks.post),
    )


def _command(
    hook: Hook, node_attrs: Mapping[str, Any], graph_attrs: Mapping[str, Any], configured: Any
) -> str | None:
    key = f"tool_hooks.{hook}"
    for level in (node_attrs, graph_attrs):
        if level.get(key) is not None:
            return _enabled(level[key])
    return _enabled(configured)


def _enabled(command: Any) -> str | None:
    if command is None:
        return None
    text = str(command)
    return text if text.strip() else None


def _head(data: bytes) -> str:
    text = redact(data.decode("utf-8", errors="replace"))
    lines = text.strip("\n").split("\n")[:_LOG_LINES]
    return "\n".join(line.rstrip("\r")[:_LOG_LINE_CHARS] for line in lines)


@attrs.frozen
class HookRun:
    """One run of a hook. ``stdout`` and ``stderr`` hold their first lines only.
    ``exit_code`` is negative when a signal ended the hook (as after a timeout) and None
    when it never started (``error`` says why) or was cancelled."""

    hook: Hook
    command: str
    tool: str
    call_id: str
    exit_code: int | None
    duration_ms: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the hook exited 0 in time: for a pre hook, whether the call may run."""
        return self.exit_code == 0 and not self.timed_out and not self.cancelled

    @property
    def status(self) -> str:
        """How the hook ended, in a few words: ``exit code 1``, ``timed out after 30000 ms``."""
        if self.cancelled:
            return "cancelled"
        if self.error is not None:
            return f"could not start: {self.error}"
        if self.timed_out:
            return f"timed out after {self.duration_ms} ms"
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        return f"exit code {self.exit_code}"

    @property
    def first_line(self) -> str:
        """The first line of what the hook said: stderr's, else stdout's ('' if silent)."""
        for text in (self.stderr, self.stdout):
            for line in text.split("\n"):
                if line.strip():
                    return line.strip()
        return ""

    def refusal(self) -> ToolOutput:
        """The error result the model gets for a call this (failed) pre hook skipped."""
        said = f": {self.first_line}" if self.first_line else ""
        return ToolOutput(
            f"Tool call refused by the pre-hook ({self.status}){said}. "
            f"The {self.tool} call was not run.",
            is_error=True,
        )

    def record(self, node_id: str | None) -> dict[str, Any]:
        """The hook log's line for this run."""
        if self.cancelled:
            outcome = "cancelled"
        elif self.hook == "pre":
            outcome = "proceeded" if self.ok else "skipped the call"
        else:
            outcome = "ok" if self.ok else "failed"
        return {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "hook": self.hook,
            "node_id": node_id,
            "tool": self.tool,
            "call_id": self.call_id,
            "command": self.command,
            "outcome": outcome,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration_ms": self.duration_ms,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be more than 0 seconds, got {value:g}")


@attrs.frozen
class ToolCallHooks:
    """The hooks around one stage's tool calls: the ``commands`` to run (None or empty:
    no such hook), what they are told about the stage, and where each run is logged
    (``log_path``; None: nowhere). A hook running longer than ``timeout`` seconds is
    killed and counts as failed."""

    commands: ToolHooks
    node_id: str | None = None
    stage_dir: Path | None = None
    log_path: Path | None = None
    timeout: float = attrs.field(default=DEFAULT_HOOK_TIMEOUT, validator=_positive)

    async def run_pre(
        self, call: ToolCall, arguments: Mapping[str, Any], cwd: Path
    ) -> HookRun | None:
        """Run the pre hook for ``call`` (with its parsed ``arguments``) in ``cwd``; None
        when there is no pre hook. The call may run if the answer is None or ``ok``."""
        payload = self._payload("pre", call, arguments)
        return await self._run("pre", self.commands.pre, call, payload, cwd, {})

    async def run_post(
        self, call: ToolCall, arguments: Mapping[str, Any], output: ToolOutput, cwd: Path
    ) -> HookRun | None:
        """Run the post hook for ``call``, which answered ``output``; None when there is
        no post hook. Its failure is only recorded."""
        payload = {
            **self._payload("post", call, arguments),
            "output": output.text,
            "is_error": output.is_error,
        }
        extra = {"ORCHESTRA_TOOL_IS_ERROR": "true" if output.is_error else "false"}
        return await self._run("post", self.commands.post, call, payload, cwd, extra)

    def _payload(self, hook: Hook, call: ToolCall, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "hook": hook,
            "tool": call.name,
            "call_id": call.id,
            "arguments": dict(arguments),
            "node_id": self.node_id,
        }

    def _environment(self, hook: Hook, call: ToolCall, extra: Mapping[str, str]) -> dict[str, str]:
        env = filter_environment(os.environ)
        for name in _CALL_VARIABLES:
            env.pop(name, None)
        env.update(
            ORCHESTRA_HOOK=hook,
            ORCHESTRA_TOOL_NAME=call.name,
            ORCHESTRA_TOOL_CALL_ID=call.id,
            ATTRACTOR_TOOL_NAME=call.name,
        )
        if self.node_id is not None:
            env.update(ORCHESTRA_NODE_ID=self.node_id, ATTRACTOR_NODE_ID=self.node_id)
        if self.stage_dir is not None:
            stage_dir = str(self.stage_dir)
            env.update(ORCHESTRA_STAGE_DIR=stage_dir, ATTRACTOR_STAGE_DIR=stage_dir)
        env.update(extra)
        return env

    async def _run(
        self,
        hook: Hook,
        command: str | None,
        call: ToolCall,
        payload: Mapping[str, Any],
        cwd: Path,
        extra: Mapping[str, str],
    ) -> HookRun | None:
        command = _enabled(command)
        if command is None:
            return None
        started = time.monotonic()

        def elapsed_ms() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            env = self._environment(hook, call, extra)
            code, stdout, stderr, timed_out = await _execute(command, data, env, cwd, self.timeout)
            run = HookRun(
                hook, command, call.name, call.id, code, elapsed_ms(), stdout, stderr, timed_out
            )
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                cancelled = HookRun(
                    hook, command, call.name, call.id, None, elapsed_ms(), cancelled=True
                )
                await self._log(cancelled)
            raise
        except Exception as err:  # a hook that cannot start has failed; the agent goes on
            error = f"{type(err).__name__}: {err}"
            run = HookRun(hook, command, call.name, call.id, None, elapsed_ms(), error=error)
        await self._log(run)
        return run

    async def _log(self, run: HookRun) -> None:
        if self.log_path is None:
            return
        line = json.dumps(run.record(self.node_id), ensure_ascii=False) + "\n"
        # An unwritable log must not stop the agent; the hook's verdict stands either way.
        with contextlib.suppress(OSError):
            await anyio.to_thread.run_sync(_append, self.log_path, line)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write to an O_APPEND file: lines from concurrent tool calls do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


async def _execute(
    command: str, data: bytes, env: Mapping[str, str], cwd: Path, timeout: float
) -> tuple[int | None, str, str, bool]:
    """Exit code, first lines of stdout and stderr, and whether it timed out."""
    stdout = bytearray()
    stderr = bytearray()
    # Read to the end so the hook never blocks on a full pipe, but keep only the start.
    finished = await run_in_group(
        [_BASH, "-c", command],
        cwd=cwd,
        env=env,
        stdin=data,
        stdout=collect(stdout, _CAPTURE_BYTES),
        stderr=collect(stderr, _CAPTURE_BYTES),
        timeout=timeout,
    )
    return finished.returncode, _head(bytes(stdout)), _head(bytes(stderr)), finished.timed_out
