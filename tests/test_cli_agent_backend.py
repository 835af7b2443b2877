"""The `cli_agent` backend, against fake `claude` and `codex` executables on PATH."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from pipelines import dot, load

from orchestra.backends.agent import STATUS_CONTRACT
from orchestra.backends.base import StageReply
from orchestra.backends.cli_agent import CliAgentBackend
from orchestra.backends.simulation import SimulationBackend
from orchestra.config import AgentConfig, Config, ProviderConfig, Providers
from orchestra.engine.context import Context
from orchestra.events import Event
from orchestra.graph import Node
from orchestra.handlers.base import BranchResult, StageRun, TerminalError
from orchestra.interviewer.base import QueueInterviewer
from orchestra.llm.pricing import load_prices
from orchestra.llm.types import Usage
from orchestra.outcome import Outcome, StageStatus
from orchestra.store.embedded import EmbeddedStore

#: A CLI that logs how it was started, then answers with the reply its test gave it.
FAKE_CLI = """\
#!PYTHON
import json, os, sys
here, name = os.path.split(os.path.abspath(__file__))
call = {"argv": sys.argv[1:], "cwd": os.getcwd(), "stdin": sys.stdin.read()}
with open(os.path.join(here, name + ".calls.jsonl"), "a") as log:
    log.write(json.dumps(call) + "\\n")
with open(os.path.join(here, name + ".reply.json")) as file:
    reply = json.load(file)
sys.stdout.write(reply["stdout"])
sys.stderr.write(reply["stderr"])
sys.exit(reply["code"])
"""

#: A CLI that prints one event, starts a grandchild that would sleep for ten minutes,
#: says the grandchild's pid, and sleeps itself.
HANGING_CLI = """\
#!PYTHON
import os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
print('{"type": "thread.started", "thread_id": "t-1"}', flush=True)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.path.join(here, "grandchild.tmp"), "w") as file:
    file.write(str(child.pid))
os.replace(os.path.join(here, "grandchild.tmp"), os.path.join(here, "grandchild.pid"))
time.sleep(600)
"""

STATUS = (
    '```status\n{"outcome": "success", "preferred_label": "Again", '
    '"context_updates": {"notes_file": "notes.txt"}, "notes": "wrote the notes"}\n```'
)

PIPELINE = dot(
    """
    digraph build {
        graph [goal="write the notes"]
        start [shape=Mdiamond]
        work  [prompt="Write notes.txt about $goal", llm_model="worker"]
        after [shape=parallelogram, tool_command="true"]
        redo  [shape=parallelogram, tool_command="true"]
        exit  [shape=Msquare]
        start -> work
        work -> after [label="Done"]
        work -> redo  [label="Again"]
        after -> exit
        redo -> exit
    }
    """
)

ANTHROPIC = Config(
    backend="cli_agent",
    providers=Providers(
        default="anthropic",
        by_name={"anthropic": ProviderConfig(models={"worker": "claude-sonnet-4-5"})},
    ),
)
OPENAI = Config(
    backend="cli_agent",
    providers=Providers(
        default="openai", by_name={"openai": ProviderConfig(models={"worker": "gpt-5"})}
    ),
)


def claude_result(text: str, **fields: Any) -> str:
    """Claude Code's ``--output-format json`` answer."""
    report = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": text,
        "session_id": "s-1",
        "num_turns": 3,
        "total_cost_usd": 0.0123,
        "usage": {
            "input_tokens": 1000,
            "output_tokens": 200,
            "cache_read_input_tokens": 50,
            "cache_creation_input_tokens": 0,
        },
        **fields,
    }
    return json.dumps(report) + "\n"


def jsonl(*events: Mapping[str, Any] | str) -> str:
    """Codex's ``--json`` output; a string is a line as it is."""
    return "".join(
        (event if isinstance(event, str) else json.dumps(event)) + "\n" for event in events
    )


def agent_message(text: str) -> dict[str, Any]:
    return {"type": "item.completed", "item": {"id": "i9", "type": "agent_message", "text": text}}


TURN_COMPLETED = {
    "type": "turn.completed",
    "usage": {"input_tokens": 2000, "cached_input_tokens": 500, "output_tokens": 300},
}


class FakeCli:
    """An executable named ``name`` in ``bin_dir``, answering with the last ``reply``."""

    def __init__(self, bin_dir: Path, name: str, script: str = FAKE_CLI) -> None:
        self.path = bin_dir / name
        self.path.write_text(script.replace("PYTHON", sys.executable), encoding="utf-8")
        self.path.chmod(0o755)
        self.reply("")

    def reply(self, stdout: str, *, stderr: str = "", code: int = 0) -> None:
        answer = {"stdout": stdout, "stderr": stderr, "code": code}
        Path(f"{self.path}.reply.json").write_text(json.dumps(answer), encoding="utf-8")

    @property
    def calls(self) -> list[dict[str, Any]]:
        """How the CLI was started, once per run: ``argv`` (without the program), ``cwd``
        and what it read on ``stdin``."""
        log = Path(f"{self.path}.calls.jsonl")
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory first on PATH, for the fake CLIs."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ.get('PATH', '')}")
    return path


@pytest.fixture
def claude(bin_dir: Path) -> FakeCli:
    return FakeCli(bin_dir, "claude")


@pytest.fixture
def codex(bin_dir: Path) -> FakeCli:
    return FakeCli(bin_dir, "codex")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


async def _ignore(event: Event) -> None:
    return None


async def _no_branches(node_id: str, context: Context, branch: str) -> BranchResult:
    raise AssertionError("a codergen node runs no branches")


Record = Callable[[str, Mapping[str, Any]], Any]


def stage_run(
    tmp_path: Path,
    *,
    execution: int = 1,
    recorded: Mapping[str, Mapping[str, Any]] | None = None,
    record: Record | None = None,
) -> StageRun:
    """This execution of the node ``work``, as the engine hands it to a handler."""
    return StageRun(
        session_id="s",
        logs_root=tmp_path / "run",
        stage_dir=tmp_path / "run" / "work",
        attempt=1,
        execution=execution,
        variables={"goal": "write the notes"},
        emit=_ignore,
        interviewer=QueueInterviewer([]),
        backend=SimulationBackend(),
        run_branch=_no_branches,
        recorded=recorded or {},
        record=record,
    )


def work(**attributes: Any) -> Node:
    return Node("work", {"prompt": "Write notes.txt", **attributes})


async def run_node(backend: CliAgentBackend, node: Node, tmp_path: Path, **stage: Any) -> Outcome:
    outcome = await backend.run(node, "Write notes.txt", Context(), stage_run(tmp_path, **stage))
    if isinstance(outcome, StageReply):
        return outcome.outcome
    assert isinstance(outcome, Outcome)
    return outcome


class TestClaude:
    async def test_node_routes_by_status_and_records_usage(
        self, tmp_path: Path, store: EmbeddedStore, claude: FakeCli, workspace: Path
    ) -> None:
        """Claude Code's result ends with a status block preferring 'Again': the run takes
        that edge, the block's context updates and the run's tokens and cost are in the
        context, and the CLI's output is kept in the stage directory."""
        stdout = claude_result(f"Notes written.\n{STATUS}")
        claude.reply(stdout)
        backend = CliAgentBackend(ANTHROPIC, workspace=workspace)

        result = await load(PIPELINE, tmp_path, store, backend=backend).run()

        assert result.succeeded
        assert "redo" in result.completed_nodes
        assert "after" not in result.completed_nodes
        assert result.context["notes_file"] == "notes.txt"
        assert result.context["last_response"] == "Notes written."
        assert result.context["usage.work.model"] == "anthropic/claude-sonnet-4-5"
        assert result.context["usage.work.input_tokens"] == 1000
        assert result.context["usage.work.output_tokens"] == 200
        assert result.context["usage.work.cache_read_tokens"] == 50
        assert result.context["usage.work.cost_usd"] == 0.0123
        assert result.context["cli_agent.work.session_id"] == "s-1"
        assert (tmp_path / "run" / "work" / "cli_agent.json").read_text() == stdout
        [call] = claude.calls
        assert "write the notes" in call["stdin"]
        assert call["stdin"].endswith(STATUS_CONTRACT)

    async def test_argv_and_working_directory(
        self, tmp_path: Path, claude: FakeCli, workspace: Path
    ) -> None:
        """Claude Code runs in print mode with JSON output, accepting edits, on the node's
        model, with the agent's system prompt appended, in the node's workspace (which
        wins over the backend's), and reads the prompt on stdin."""
        role = tmp_path / "role.yaml"
        role.write_text("role:\n  system: You write notes about {{ goal }}.\n")
        config = attrs.evolve(ANTHROPIC, agents={"writer": AgentConfig(role=role)})
        claude.reply(claude_result("Done."))
        node = work(agent="writer", llm_model="claude-opus-4-5", workspace=str(workspace))

        await run_node(CliAgentBackend(config, workspace=tmp_path), node, tmp_path)

        [call] = claude.calls
        assert call["argv"] == [
            "-p",
            "--output-format",
            "json",
            "--permission-mode",
            "acceptEdits",
            "--model",
            "claude-opus-4-5",
            "--append-system-prompt",
            "You write notes about write the notes.",
        ]
        assert Path(call["cwd"]).resolve() == workspace.resolve()
        assert call["stdin"] == f"Write notes.txt\n\n{STATUS_CONTRACT}"


class TestCodex:
    async def test_events_give_the_answer_usage_and_cost(
        self, tmp_path: Path, codex: FakeCli, workspace: Path
    ) -> None:
        """Codex's JSONL events: the last agent message decides, the turn's tokens are
        priced for the model, and unknown events and stray lines are skipped."""
        codex.reply(
            jsonl(
                {"type": "thread.started", "thread_id": "t-1"},
                {"type": "turn.started"},
                agent_message("Looking around."),
                {"type": "item.completed", "item": {"type": "command_execution", "exit_code": 0}},
                {"type": "item.completed", "item": {"type": "file_change", "changes": []}},
                {"type": "an.event.from.the.future", "data": [1, 2]},
                "warning: not JSON at all",
                agent_message(f"Notes written.\n{STATUS}"),
                TURN_COMPLETED,
            )
        )
        backend = CliAgentBackend(OPENAI, workspace=workspace)

        outcome = await run_node(backend, work(), tmp_path)

        assert outcome.status is StageStatus.SUCCESS
        assert outcome.preferred_label == "Again"
        updates = outcome.context_updates
        assert updates["last_response"] == "Notes written."
        assert updates["notes_file"] == "notes.txt"
        assert updates["usage.work.model"] == "openai/gpt-5"
        assert (updates["usage.work.input_tokens"], updates["usage.work.output_tokens"]) == (
            2000,
            300,
        )
        assert updates["usage.work.cache_read_tokens"] == 500
        cost = load_prices().cost("gpt-5", Usage(2000, 300, cache_read_tokens=500))
        assert cost is not None
        assert updates["usage.work.cost_usd"] == round(cost, 6)
        assert updates["usage.work.tool_calls"] == 2
        assert updates["cli_agent.work.session_id"] == "t-1"
        output = (tmp_path / "run" / "work" / "cli_agent.jsonl").read_text()
        assert output.count("\n") == 9

    async def test_argv_puts_the_system_prompt_before_the_prompt(
        self, tmp_path: Path, codex: FakeCli, workspace: Path
    ) -> None:
        """Codex runs `exec` with JSON events, full-auto, on the node's model and reasoning
        effort, reading the prompt on stdin, with the agent's system prompt first."""
        role = tmp_path / "role.yaml"
        role.write_text("role:\n  system: You write notes.\n")
        config = attrs.evolve(OPENAI, agents={"writer": AgentConfig(role=role)})
        codex.reply(jsonl(agent_message("Done."), TURN_COMPLETED))
        node = work(agent="writer", reasoning_effort="high")

        await run_node(CliAgentBackend(config, workspace=workspace), node, tmp_path)

        [call] = codex.calls
        assert call["argv"] == [
            "exec",
            "--json",
            "--full-auto",
            "--skip-git-repo-check",
            "--model",
            "gpt-5",
            "-c",
            'model_reasoning_effort="high"',
            "-",
        ]
        assert Path(call["cwd"]).resolve() == workspace.resolve()
        assert call["stdin"] == f"You write notes.\n\nWrite notes.txt\n\n{STATUS_CONTRACT}"

    async def test_without_a_known_model_cost_is_left_out(
        self, tmp_path: Path, codex: FakeCli, workspace: Path
    ) -> None:
        """Run on the CLI's default model, Codex's tokens are reported but not priced."""
        codex.reply(jsonl(agent_message("Done."), TURN_COMPLETED))
        backend = CliAgentBackend(Config(), workspace=workspace)

        outcome = await run_node(backend, work(cli_agent="codex"), tmp_path)

        assert outcome.status is StageStatus.SUCCESS
        assert outcome.context_updates["usage.work.input_tokens"] == 2000
        assert "usage.work.cost_usd" not in outcome.context_updates
        assert "usage.work.model" not in outcome.context_updates


class TestChoosingTheCli:
    @pytest.mark.parametrize(
        ("config", "attributes", "expected", "model"),
        [
            pytest.param(Config(), {}, "claude", None, id="no-providers"),
            pytest.param(ANTHROPIC, {}, "claude", "claude-sonnet-4-5", id="anthropic"),
            pytest.param(OPENAI, {}, "codex", "gpt-5", id="openai"),
            pytest.param(
                ANTHROPIC, {"cli_agent": "codex"}, "codex", None, id="named-other-provider"
            ),
            pytest.param(Config(), {"llm_provider": "openai"}, "codex", None, id="provider"),
        ],
    )
    async def test_node_attribute_then_provider(
        self,
        tmp_path: Path,
        claude: FakeCli,
        codex: FakeCli,
        workspace: Path,
        config: Config,
        attributes: dict[str, str],
        expected: str,
        model: str | None,
    ) -> None:
        """cli_agent= names the CLI, else the node's provider does (claude when none is
        configured); --model is passed only for a model of that CLI's provider."""
        claude.reply(claude_result("Done."))
        codex.reply(jsonl(agent_message("Done."), TURN_COMPLETED))

        outcome = await run_node(
            CliAgentBackend(config, workspace=workspace), work(**attributes), tmp_path
        )

        assert outcome.status is StageStatus.SUCCESS
        chosen, other = (claude, codex) if expected == "claude" else (codex, claude)
        [call] = chosen.calls
        assert other.calls == []
        argv = call["argv"]
        assert (argv[argv.index("--model") + 1] if "--model" in argv else None) == model

    async def test_missing_executable_says_how_to_install_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workspace: Path
    ) -> None:
        """Without the CLI on PATH the node fails at once, naming the executable and how to
        install it."""
        empty = tmp_path / "empty"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        backend = CliAgentBackend(Config(), workspace=workspace)

        with pytest.raises(TerminalError) as raised:
            await run_node(backend, work(cli_agent="codex"), tmp_path)

        message = str(raised.value)
        assert "runs `codex`, which is not on PATH" in message
        assert "npm install -g @openai/codex" in message

    async def test_unknown_cli_is_a_terminal_error(self, tmp_path: Path, workspace: Path) -> None:
        """cli_agent= naming a CLI the backend does not run lists the ones it does."""
        backend = CliAgentBackend(Config(), workspace=workspace)
        with pytest.raises(TerminalError, match=r"cli_agent='gemini' .*claude, codex"):
            await run_node(backend, work(cli_agent="gemini"), tmp_path)


class TestFailures:
    @pytest.mark.parametrize(
        ("cli", "stdout", "status", "reason"),
        [
            pytest.param(
                "claude",
                claude_result("", subtype="error_max_turns", is_error=True),
                StageStatus.FAIL,
                "claude: error_max_turns",
                id="claude-error-subtype",
            ),
            pytest.param(
                "claude",
                claude_result("API Error: 529 Overloaded", is_error=True),
                StageStatus.RETRY,
                "claude: API Error: 529 Overloaded",
                id="claude-overloaded",
            ),
            pytest.param(
                "codex",
                jsonl(
                    {"type": "turn.started"},
                    {"type": "turn.failed", "error": {"message": "model refused"}},
                ),
                StageStatus.FAIL,
                "codex: model refused",
                id="codex-turn-failed",
            ),
            pytest.param(
                "codex",
                jsonl({"type": "error", "message": "stream error: rate limit reached"}),
                StageStatus.RETRY,
                "codex: stream error: rate limit reached",
                id="codex-rate-limited",
            ),
        ],
    )
    async def test_error_results(
        self,
        tmp_path: Path,
        claude: FakeCli,
        codex: FakeCli,
        workspace: Path,
        cli: str,
        stdout: str,
        status: StageStatus,
        reason: str,
    ) -> None:
        """An error the CLI reports fails the node with its message; a rate limit or an
        overload asks for a retry instead."""
        (claude if cli == "claude" else codex).reply(stdout, code=1)
        backend = CliAgentBackend(Config(), workspace=workspace)

        outcome = await run_node(backend, work(cli_agent=cli), tmp_path)

        assert outcome.status is status
        assert outcome.failure_reason == reason

    async def test_exit_without_result_names_the_status_and_stderr(
        self, tmp_path: Path, claude: FakeCli, workspace: Path
    ) -> None:
        """A CLI that exits non-zero without a result fails the node with its exit status
        and its last line of stderr, which is kept whole in the stage directory."""
        stderr = "starting up\nError: not logged in; run claude login\n"
        claude.reply("", stderr=stderr, code=3)
        backend = CliAgentBackend(Config(), workspace=workspace)

        outcome = await run_node(backend, work(), tmp_path)

        assert outcome.status is StageStatus.FAIL
        assert outcome.failure_reason == (
            "claude exited with status 3 without a result: Error: not logged in; run claude login"
        )
        assert (tmp_path / "run" / "work" / "cli_agent.stderr.txt").read_text() == stderr


class TestDurability:
    async def test_recorded_result_is_returned_without_running_again(
        self, tmp_path: Path, claude: FakeCli, workspace: Path
    ) -> None:
        """A finished run is recorded for its execution: resumed, the same execution
        returns it without starting the CLI; a later execution runs the CLI again."""
        records: dict[str, dict[str, Any]] = {}

        async def record(kind: str, entries: Mapping[str, Any]) -> None:
            records.setdefault(kind, {}).update(entries)

        claude.reply(claude_result(f"Notes written.\n{STATUS}"))
        backend = CliAgentBackend(ANTHROPIC, workspace=workspace)
        first = await run_node(backend, work(), tmp_path, record=record)
        stored = json.loads(json.dumps(records))  # as the store keeps it

        resumed = await run_node(backend, work(), tmp_path, recorded=stored)

        assert len(claude.calls) == 1
        assert resumed == first
        assert resumed.preferred_label == "Again"
        await run_node(backend, work(), tmp_path, execution=2, recorded=stored)
        assert len(claude.calls) == 2


class TestCancellation:
    async def test_cancelled_node_kills_the_process_group(
        self, tmp_path: Path, bin_dir: Path, workspace: Path
    ) -> None:
        """Cancelled (as by the node's timeout), the CLI and the process it started are
        killed; what the CLI printed reached the stage directory as it printed it."""
        FakeCli(bin_dir, "codex", HANGING_CLI)
        pid_file = bin_dir / "grandchild.pid"
        output = tmp_path / "run" / "work" / "cli_agent.jsonl"
        started = '{"type": "thread.started", "thread_id": "t-1"}\n'
        backend = CliAgentBackend(Config(), workspace=workspace)

        async with anyio.create_task_group() as group:
            group.start_soon(run_node, backend, work(cli_agent="codex"), tmp_path)
            await wait_until(
                lambda: pid_file.exists() and output.exists() and output.read_text() == started
            )
            group.cancel_scope.cancel()

        grandchild = int(pid_file.read_text())
        await wait_until(lambda: not alive(grandchild))


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fails the test after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if not stat.parent.parent.is_dir():
        return True  # no /proc to tell a zombie by
    try:
        return stat.read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


class TestChat:
    async def test_each_reply_runs_the_cli_with_the_conversation(
        self, tmp_path: Path, store: EmbeddedStore, claude: FakeCli, workspace: Path
    ) -> None:
        """In a chat (agent.mode="interactive") the CLI runs once per reply, the second
        time with the conversation so far in its prompt; each run is recorded apart."""
        from orchestra.pipeline import Pipeline

        claude.reply(claude_result("Idea: a hike"))
        source = PIPELINE.replace(
            'work  [prompt="Write notes.txt about $goal", llm_model="worker"]',
            'work  [prompt="Brainstorm $goal", llm_model="worker", agent.mode="interactive"]',
        )
        backend = CliAgentBackend(ANTHROPIC, workspace=workspace)
        pipeline = Pipeline.load(
            source,
            store=store,
            backend=backend,
            interviewer=QueueInterviewer(["cheaper?", "/done"]),
            logs_root=tmp_path / "run",
        )
        result = await pipeline.run()

        assert result.succeeded, result.failure_reason
        first, second = (json.dumps(call) for call in claude.calls)
        assert "cheaper?" not in first
        assert "The conversation so far" in second
        assert "cheaper?" in second
        history = result.context["interactive.work.history"]
        assert [line["text"] for line in history] == ["Idea: a hike", "cheaper?", "Idea: a hike"]
