"""The tool handler (spec §4.10): run ``tool_command`` in a shell, in its own process group.

The command is rendered with Jinja2 (every substituted value shell-quoted), runs with the
``ATTRACTOR_*`` environment other Attractor implementations use, and its stdout and stderr
go to ``tool_output.txt``; stdout also becomes ``context["tool.output"]``. Exit status 0 is
SUCCESS, anything else FAIL. A tool may decide its own outcome by writing
``$ATTRACTOR_STAGE_DIR/status.json``; its ``notes`` are then shown under the stage. On
timeout or cancellation the whole process group is killed, so no grandchild outlives the
node. It runs in ``$ATTRACTOR_WORKSPACE``: the session's worktree in a git workspace (the
tracked files it changed are then committed once, the message naming the node and
command), else the working directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestra.engine.context import Context
from orchestra.events import StageActivity
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.outcome import Outcome, StageStatus
from orchestra.process import end_group, group_identity, run_in_group
from orchestra.secrets import filter_environment, passthrough_names, redact, secret_values
from orchestra.templates import TemplateError, render_shell

__all__ = ["ToolHandler", "read_status_file"]

_OUTPUT_IN_CONTEXT = 64 * 1024
#: the kind a stage's running process group is recorded under, to end it after a crash
_GROUP = "process"


def read_status_file(path: Path) -> Outcome | None:
    """The outcome a tool wrote to ``status.json``, None if it wrote none; a malformed
    file is a FAIL that names the file and what is wrong with it."""
    if not path.is_file():
        return None
    try:
        return Outcome.from_json(json.loads(redact(path.read_text(encoding="utf-8"))))
    except (ValueError, UnicodeDecodeError) as err:
        return Outcome.fail(f"{path}: not a valid status file: {err}")


class ToolHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        template = str(node.attrs.get("tool_command", "")).strip()
        if not template:
            raise TerminalError(f"node '{node.id}' has no tool_command to run")
        try:
            command = render_shell(
                template,
                stage.template_variables(node.id),
                context.as_mapping(),
                f"node '{node.id}' tool_command",
            )
        except TemplateError as err:
            raise TerminalError(str(err)) from None
        stage.stage_dir.mkdir(parents=True, exist_ok=True)
        status_file = stage.stage_dir / "status.json"
        status_file.unlink(missing_ok=True)
        cwd = stage.workspace.root if stage.workspace is not None else Path.cwd()
        passthrough = passthrough_names(
            node.attrs.get("tool_env_passthrough"), graph.get("tool_env_passthrough", "")
        )
        env = {
            **filter_environment(os.environ, passthrough),
            "ATTRACTOR_WORKSPACE": str(cwd),
            "ATTRACTOR_STAGE_DIR": str(stage.stage_dir.resolve()),
            "ATTRACTOR_NODE_ID": node.id,
            "ATTRACTOR_LOGS_ROOT": str(stage.logs_root.resolve()),
            "ATTRACTOR_RUN_ID": stage.session_id,
        }
        output_path = stage.stage_dir / "tool_output.txt"
        stdout = bytearray()
        stderr = bytearray()
        # A command left running by a runner that was killed must not overlap this one.
        left = stage.recorded.get(_GROUP, {}).get("group")
        if isinstance(left, dict):
            end_group(left)

        async def started(pid: int) -> None:
            if stage.record is not None:
                await stage.record(_GROUP, {"group": group_identity(pid)})

        try:
            finished = await run_in_group(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=env,
                stdout=stdout.extend,
                stderr=stderr.extend,
                on_start=started,
            )
        except BaseException:
            _write_output(output_path, command, _redacted(stdout), _redacted(stderr), None)
            raise
        code = finished.returncode
        stdout, stderr = _redacted(stdout), _redacted(stderr)
        _write_output(output_path, command, stdout, stderr, code)
        if stage.workspace is not None:  # one commit of the tracked files it changed
            shown = " ".join(command.split())
            summary = f"chore({node.id}): {shown[:60] + '…' if len(shown) > 61 else shown}"
            await stage.workspace.commit(None, turn="end", summary=summary)
        out_text = stdout.decode("utf-8", errors="replace")
        written = read_status_file(status_file)
        if written is not None:
            if written.notes.strip():  # the tool's own words on what it did, shown under it
                await stage.emit(
                    StageActivity(
                        session_id=stage.session_id,
                        node_id=node.id,
                        text=" ".join(written.notes.split()),
                        branch=stage.branch,
                    )
                )
            return written
        updates = {"tool.output": out_text[-_OUTPUT_IN_CONTEXT:], "tool.exit_code": code}
        if code == 0:
            return Outcome.success(f"tool completed: {command}", context_updates=updates)
        return Outcome(
            StageStatus.FAIL,
            failure_reason=_failure_reason(code, stderr),
            context_updates=updates,
        )


def _redacted(output: bytes | bytearray) -> bytearray:
    """What a tool printed, without any secret's value (as text: a value is text)."""
    secrets = secret_values()
    if not secrets:
        return bytearray(output)
    return bytearray(redact(output.decode("utf-8", errors="replace"), secrets).encode())


def _failure_reason(code: int | None, stderr: bytes | bytearray) -> str:
    tail = stderr.decode("utf-8", errors="replace").strip().splitlines()[-3:]
    detail = f": {' / '.join(tail)}" if tail else ""
    if code == 127:
        return f"command not found (exit 127){detail}"
    if code is not None and code < 0:
        return f"killed by signal {-code}{detail}"
    return f"exit status {code}{detail}"


def _write_output(
    path: Path, command: str, stdout: bytes | bytearray, stderr: bytes | bytearray, code: int | None
) -> None:
    status = "killed (timeout or interrupt)" if code is None else f"exit status {code}"
    path.write_text(
        f"$ {command}\n--- stdout ---\n{stdout.decode('utf-8', errors='replace')}"
        f"--- stderr ---\n{stderr.decode('utf-8', errors='replace')}--- {status} ---\n",
        encoding="utf-8",
    )
