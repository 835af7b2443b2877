"""Tool call hooks (Attractor §9.7) around real tool calls, run as real subprocesses."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_agent_tools import is_running, read_fifo, wait_for_exit

from orchestra.agent.hooks import TOOL_HOOKS_LOG, ToolCallHooks, hook_commands
from orchestra.agent.tools import ToolOutput, Toolset, Workspace
from orchestra.config.model import ToolHooks
from orchestra.llm.types import ToolCall

FAKE_KEY = "sk-ant-fake-0123456789"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The workspace directory."""
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def stage_dir(tmp_path: Path) -> Path:
    """The stage's log directory, outside the workspace; created by the first log line."""
    return tmp_path / "logs" / "build"


@pytest.fixture
def seen(tmp_path: Path) -> Path:
    """Where hooks in these tests write what they were given."""
    path = tmp_path / "seen"
    path.mkdir()
    return path


def toolset(
    root: Path,
    stage_dir: Path,
    *,
    pre: str | None = None,
    post: str | None = None,
    timeout: float = 30.0,
) -> Toolset:
    hooks = ToolCallHooks(
        ToolHooks(pre, post),
        node_id="build",
        stage_dir=stage_dir,
        log_path=stage_dir / TOOL_HOOKS_LOG,
        timeout=timeout,
    )
    return Toolset(Workspace(root), hooks=hooks)


def capture(seen: Path, name: str) -> str:
    """A hook command saving its stdin and its call variables under ``seen``."""
    json_path = shlex.quote(str(seen / f"{name}.json"))
    env_path = shlex.quote(str(seen / f"{name}.env"))
    return f"cat > {json_path}; env | grep -E '^(ORCHESTRA|ATTRACTOR)_' | sort > {env_path}"


def variables(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def log_lines(stage_dir: Path) -> list[dict[str, Any]]:
    path = stage_dir / TOOL_HOOKS_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def call(toolset: Toolset, name: str, **arguments: Any) -> ToolOutput:
    return await toolset.run(ToolCall("call-1", name, arguments))


class TestPreHook:
    async def test_exit_zero_lets_the_call_run(
        self, root: Path, stage_dir: Path, seen: Path
    ) -> None:
        """The call runs after a pre hook exiting 0, which got the call on stdin and in its
        environment."""
        tools = toolset(root, stage_dir, pre=capture(seen, "pre"))
        output = await call(tools, "write_file", file_path="a.txt", content="hello")
        assert output == ToolOutput("Wrote 5 bytes to a.txt", files_written=("a.txt",))
        assert (root / "a.txt").read_text() == "hello"
        assert json.loads((seen / "pre.json").read_text()) == {
            "hook": "pre",
            "tool": "write_file",
            "call_id": "call-1",
            "arguments": {"file_path": "a.txt", "content": "hello"},
            "node_id": "build",
        }
        assert variables(seen / "pre.env") == {
            "ATTRACTOR_NODE_ID": "build",
            "ATTRACTOR_STAGE_DIR": str(stage_dir),
            "ATTRACTOR_TOOL_NAME": "write_file",
            "ORCHESTRA_HOOK": "pre",
            "ORCHESTRA_NODE_ID": "build",
            "ORCHESTRA_STAGE_DIR": str(stage_dir),
            "ORCHESTRA_TOOL_CALL_ID": "call-1",
            "ORCHESTRA_TOOL_NAME": "write_file",
        }

    async def test_runs_bash_in_the_workspace(
        self, root: Path, stage_dir: Path, seen: Path
    ) -> None:
        """The hook runs under bash with the workspace root as its working directory."""
        out = shlex.quote(str(seen / "where"))
        tools = toolset(root, stage_dir, pre=f'{{ pwd; echo "${{BASH_VERSION:+bash}}"; }} > {out}')
        await call(tools, "glob", pattern="*")
        assert (seen / "where").read_text().split("\n")[:2] == [str(root.resolve()), "bash"]

    async def test_non_zero_exit_skips_the_call(self, root: Path, stage_dir: Path) -> None:
        """A failing pre hook skips the call; the model is told why, in the hook's words."""
        tools = toolset(root, stage_dir, pre="echo 'no writes today' >&2; exit 3")
        output = await call(tools, "write_file", file_path="a.txt", content="hello")
        assert output == ToolOutput(
            "Tool call refused by the pre-hook (exit code 3): no writes today. "
            "The write_file call was not run.",
            is_error=True,
        )
        assert not (root / "a.txt").exists()
        (line,) = log_lines(stage_dir)
        assert line["outcome"] == "skipped the call"
        assert line["exit_code"] == 3

    async def test_stdout_speaks_when_stderr_is_silent(self, root: Path, stage_dir: Path) -> None:
        """Without stderr, the first line of stdout is the reason given."""
        tools = toolset(root, stage_dir, pre="printf '\\npolicy: read only\\nmore\\n'; exit 1")
        output = await call(tools, "shell", command="touch x")
        assert output.text == (
            "Tool call refused by the pre-hook (exit code 1): policy: read only. "
            "The shell call was not run."
        )
        assert not (root / "x").exists()

    async def test_timeout_skips_the_call_and_kills_the_hook(
        self, root: Path, stage_dir: Path
    ) -> None:
        """A pre hook past its timeout is killed, group and all, and counts as refusing."""
        tools = toolset(root, stage_dir, pre="sleep 30 & echo $! > pid; wait", timeout=0.3)
        output = await call(tools, "write_file", file_path="a.txt", content="hello")
        assert output.is_error
        assert output.text.startswith("Tool call refused by the pre-hook (timed out after ")
        assert not (root / "a.txt").exists()
        pid = int((root / "pid").read_text())
        await wait_for_exit(pid)
        assert not is_running(pid)
        (line,) = log_lines(stage_dir)
        assert line["status"].startswith("timed out after ")

    async def test_hook_that_cannot_start_skips_the_call(
        self, tmp_path: Path, stage_dir: Path
    ) -> None:
        """A hook that cannot even start (here: no workspace to run in) refuses the call."""
        tools = toolset(tmp_path / "deleted", stage_dir, pre="true")
        output = await call(tools, "shell", command="true")
        assert output.is_error
        assert output.text.startswith(
            "Tool call refused by the pre-hook (could not start: FileNotFoundError: "
        )
        (line,) = log_lines(stage_dir)
        assert line["exit_code"] is None

    async def test_cancellation_kills_the_hook_group(self, root: Path, stage_dir: Path) -> None:
        """Cancelling the call during its pre hook kills the hook's whole process group,
        and the call never runs."""
        os.mkfifo(root / "pid")
        tools = toolset(root, stage_dir, pre="sleep 30 & echo $! > pid; wait")
        async with anyio.create_task_group() as group:
            write = ToolCall("call-1", "write_file", {"file_path": "a.txt", "content": "x"})
            group.start_soon(tools.run, write)
            pid = int(await read_fifo(root / "pid"))
            group.cancel_scope.cancel()
        await wait_for_exit(pid)
        assert not is_running(pid)
        assert not (root / "a.txt").exists()
        (line,) = log_lines(stage_dir)
        assert line["outcome"] == "cancelled"

    async def test_hook_need_not_read_its_input(self, root: Path, stage_dir: Path) -> None:
        """A hook that exits without reading a large input (more than a pipe holds) still
        decides, at once."""
        tools = toolset(root, stage_dir, pre="exit 0", post="exit 0")
        with anyio.fail_after(5):
            output = await call(tools, "write_file", file_path="big.txt", content="x" * 1_000_000)
        assert not output.is_error
        assert [line["outcome"] for line in log_lines(stage_dir)] == ["proceeded", "ok"]

    async def test_calls_that_never_reach_a_tool_run_no_hooks(
        self, root: Path, stage_dir: Path, seen: Path
    ) -> None:
        """An unknown tool or arguments that do not fit run no hooks."""
        tools = toolset(root, stage_dir, pre=capture(seen, "pre"), post=capture(seen, "post"))
        assert (await call(tools, "teleport", to="mars")).is_error
        assert (await call(tools, "write_file", file_path="a.txt")).is_error
        assert list(seen.iterdir()) == []
        assert log_lines(stage_dir) == []


class TestPostHook:
    async def test_sees_the_result(self, root: Path, stage_dir: Path, seen: Path) -> None:
        """The post hook gets the call and the text the model sees, with is_error."""
        tools = toolset(root, stage_dir, post=capture(seen, "post"))
        output = await call(tools, "read_file", file_path="missing.txt")
        assert output == ToolOutput("File not found: missing.txt", is_error=True)
        assert json.loads((seen / "post.json").read_text()) == {
            "hook": "post",
            "tool": "read_file",
            "call_id": "call-1",
            "arguments": {"file_path": "missing.txt"},
            "node_id": "build",
            "output": "File not found: missing.txt",
            "is_error": True,
        }
        env = variables(seen / "post.env")
        assert env["ORCHESTRA_HOOK"] == "post"
        assert env["ORCHESTRA_TOOL_IS_ERROR"] == "true"

    async def test_gets_the_truncated_output(self, root: Path, stage_dir: Path, seen: Path) -> None:
        """``output`` is the truncated text for the model, not the full output."""
        tools = toolset(root, stage_dir, post=capture(seen, "post"))
        output = await call(tools, "shell", command="seq 1 1000")
        assert output.text != output.full_text
        payload = json.loads((seen / "post.json").read_text())
        assert payload["output"] == output.text
        assert payload["is_error"] is False

    async def test_failure_changes_nothing_but_is_logged(self, root: Path, stage_dir: Path) -> None:
        """A failing post hook leaves the result as it was; the failure is in the log."""
        tools = toolset(root, stage_dir, post="echo 'audit is down' >&2; exit 5")
        output = await call(tools, "write_file", file_path="a.txt", content="hello")
        assert output == ToolOutput("Wrote 5 bytes to a.txt", files_written=("a.txt",))
        (line,) = log_lines(stage_dir)
        assert line["hook"] == "post"
        assert line["outcome"] == "failed"
        assert line["exit_code"] == 5
        assert line["stderr"] == "audit is down"

    async def test_does_not_run_after_a_skipped_call(
        self, root: Path, stage_dir: Path, seen: Path
    ) -> None:
        """A call the pre hook skipped ran nothing, so there is nothing for a post hook."""
        tools = toolset(root, stage_dir, pre="exit 1", post=capture(seen, "post"))
        assert (await call(tools, "glob", pattern="*")).is_error
        assert not (seen / "post.json").exists()
        assert [line["hook"] for line in log_lines(stage_dir)] == ["pre"]


class TestLogAndEnvironment:
    async def test_each_run_is_logged(self, root: Path, stage_dir: Path) -> None:
        """One JSON line per run: command, exit code, duration, the first lines of output."""
        pre = "seq 1 10; echo warn >&2"
        tools = toolset(root, stage_dir, pre=pre, post="true")
        await call(tools, "glob", pattern="*")
        pre_line, post_line = log_lines(stage_dir)
        assert pre_line | {"time": "", "duration_ms": 0} == {
            "time": "",
            "hook": "pre",
            "node_id": "build",
            "tool": "glob",
            "call_id": "call-1",
            "command": pre,
            "outcome": "proceeded",
            "status": "exit code 0",
            "exit_code": 0,
            "duration_ms": 0,
            "stdout": "1\n2\n3\n4\n5",
            "stderr": "warn",
        }
        assert pre_line["duration_ms"] >= 0
        assert (post_line["hook"], post_line["outcome"]) == ("post", "ok")

    async def test_secrets_stay_out_of_hooks_and_the_log(
        self, root: Path, stage_dir: Path, seen: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """API keys are filtered from a hook's environment, so neither it nor the log sees
        them; ordinary variables pass."""
        monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
        monkeypatch.setenv("ORCHESTRA_VISIBLE", "yes")
        env_file = shlex.quote(str(seen / "env"))
        command = f'env > {env_file}; echo "key=${{ANTHROPIC_API_KEY:-unset}} $ORCHESTRA_VISIBLE"'
        tools = toolset(root, stage_dir, pre=command, post=command)
        await call(tools, "glob", pattern="*")
        hook_env = variables(seen / "env")
        assert "ANTHROPIC_API_KEY" not in hook_env
        assert hook_env["ORCHESTRA_VISIBLE"] == "yes"
        log = (stage_dir / TOOL_HOOKS_LOG).read_text()
        assert FAKE_KEY not in log
        assert [line["stdout"] for line in log_lines(stage_dir)] == ["key=unset yes"] * 2

    async def test_variables_from_an_enclosing_run_are_not_inherited(
        self, root: Path, seen: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A call variable left in the environment by an outer run does not leak into a
        hook that does not know that value."""
        monkeypatch.setenv("ORCHESTRA_NODE_ID", "outer")
        monkeypatch.setenv("ATTRACTOR_STAGE_DIR", "/outer")
        hooks = ToolCallHooks(ToolHooks(pre=capture(seen, "pre")))
        await Toolset(Workspace(root), hooks=hooks).run(ToolCall("c", "glob", {"pattern": "*"}))
        env = variables(seen / "pre.env")
        assert "ORCHESTRA_NODE_ID" not in env
        assert "ATTRACTOR_STAGE_DIR" not in env
        assert json.loads((seen / "pre.json").read_text())["node_id"] is None

    async def test_no_log_path_logs_nowhere(self, root: Path, tmp_path: Path) -> None:
        """Without a log path the hooks still run and decide; nothing is written."""
        hooks = ToolCallHooks(ToolHooks(pre="exit 1"))
        output = await Toolset(Workspace(root), hooks=hooks).run(
            ToolCall("c", "glob", {"pattern": "*"})
        )
        assert output.is_error
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]

    @pytest.mark.parametrize("seconds", [0, -1])
    def test_timeout_must_be_positive(self, seconds: float) -> None:
        """A hook timeout of zero or less is refused."""
        with pytest.raises(ValueError, match="timeout"):
            ToolCallHooks(ToolHooks(pre="true"), timeout=seconds)


class TestHookCommands:
    CONFIG = ToolHooks(pre="config-pre", post="config-post")

    def test_node_beats_graph_beats_config(self) -> None:
        """The node's attribute wins over the graph's, which wins over orchestra.yaml."""
        node = {"tool_hooks.pre": "node-pre"}
        graph = {"tool_hooks.pre": "graph-pre", "tool_hooks.post": "graph-post"}
        assert hook_commands(node, graph, self.CONFIG) == ToolHooks("node-pre", "graph-post")
        assert hook_commands({}, {}, self.CONFIG) == self.CONFIG

    @pytest.mark.parametrize("empty", ["", "  "])
    def test_empty_string_disables(self, empty: str) -> None:
        """An empty command at a level turns that hook off, whatever lower levels say."""
        node = {"tool_hooks.post": empty}
        graph = {"tool_hooks.pre": empty, "tool_hooks.post": "graph-post"}
        assert hook_commands(node, graph, self.CONFIG) == ToolHooks(None, None)

    def test_nothing_anywhere(self) -> None:
        """No hooks at any level: none to run; an empty configured command is none too."""
        assert hook_commands({}, {}, ToolHooks()) == ToolHooks(None, None)
        assert hook_commands({}, {}, ToolHooks(pre="")) == ToolHooks(None, None)
