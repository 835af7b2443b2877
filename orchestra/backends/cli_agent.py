"""The ``cli_agent`` backend: a codergen node run by an external coding agent's CLI.

Claude Code (``claude``) or the Codex CLI (``codex``) runs headless as a subprocess in the
node's workspace (``workspace=`` on the node, else the backend's ``workspace``, else the
working directory), with the prompt on its stdin:

- ``claude -p --output-format json --permission-mode acceptEdits [--model M]
  [--append-system-prompt SYSTEM]`` prints one result object;
- ``codex exec --json --full-auto --skip-git-repo-check [--model M]
  [-c model_reasoning_effort="E"] -`` prints one JSON event per line. Codex has no flag
  for a system prompt, so the agent's goes before the prompt.

``acceptEdits`` and ``--full-auto`` let the agent change files in the workspace with
nobody there to approve; neither is a sandbox for its shell commands. The workspace need
not be a git repository (``--skip-git-repo-check``).

The CLI is ``cli_agent="claude"|"codex"`` on the node, else the one of the node's resolved
provider (``openai``: codex; ``anthropic``, any other provider or none configured: claude).
``--model`` is passed only when the resolved model belongs to that CLI's provider; without
it the CLI uses its own default. The agent named by ``agent=`` adds its composed system
prompt. The child gets the backend's environment whole: the CLI needs its own API key or
login.

The CLI runs in a process group of its own; when the node is cancelled (its ``timeout``,
an interrupt) the group gets SIGTERM, then SIGKILL after a grace period, and whatever the
CLI leaves running when it exits is killed too. Its stdout goes to ``cli_agent.json``
(claude) or ``cli_agent.jsonl`` (codex) in the stage directory as it arrives, its stderr
to ``cli_agent.stderr.txt``.

The answer decides the outcome as in the ``agent`` backend (``STATUS_CONTRACT``). An error
result fails the node, or asks for a retry when it reports a rate limit or an overload; so
does an exit without a result. Token usage and cost go into the context as
``usage.NODE.*``: Claude Code reports its cost, Codex only tokens, priced from the price
table when the model is known. Once the CLI has finished, its result is recorded for this
execution of the node, so a node resumed after a crash returns it without running the
agent again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Literal, get_args

import attrs

from orchestra.backends.agent import (
    STATUS_CONTRACT,
    answer_outcome,
    outcome_from_answer,
)
from orchestra.backends.base import StageReply
from orchestra.backends.workdir import node_workspace
from orchestra.config import AgentConfig, Config, resolve_model
from orchestra.config.converter import CONVERTER
from orchestra.engine.context import Context
from orchestra.errors import ConfigError
from orchestra.graph import Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.llm.pricing import Prices, load_prices
from orchestra.llm.types import Usage
from orchestra.outcome import Outcome, StageStatus
from orchestra.process import run_in_group
from orchestra.prompts import compose_agent_prompt

__all__ = ["CLI_AGENTS", "CliAgent", "CliAgentBackend"]

CliAgent = Literal["claude", "codex"]
"""The coding agent CLIs the backend runs."""
CLI_AGENTS: tuple[CliAgent, ...] = get_args(CliAgent)

#: whose models each CLI runs
_PROVIDERS: Mapping[CliAgent, str] = {"claude": "anthropic", "codex": "openai"}
_INSTALL: Mapping[CliAgent, str] = {
    "claude": "Claude Code (npm install -g @anthropic-ai/claude-code)",
    "codex": "the Codex CLI (npm install -g @openai/codex)",
}
_OUTPUT_FILES: Mapping[CliAgent, str] = {"claude": "cli_agent.json", "codex": "cli_agent.jsonl"}
_STDERR_FILE = "cli_agent.stderr.txt"
#: the kind the backend records a finished run under, keyed by execution
_RESULT = "cli_agent.result"
_LAST_RESPONSE_CHARS = 200
# What a CLI's error says when trying again later could succeed.
_TRANSIENT = re.compile(r"rate.?limit|overloaded|\b(?:429|529)\b", re.IGNORECASE)
#: the Codex items that are the agent acting (counted as its tool calls)
_CODEX_TOOL_ITEMS = frozenset({"command_execution", "file_change", "mcp_tool_call", "web_search"})


@attrs.frozen
class _CliResult:
    """What a finished CLI run reported: the durable record of one execution.

    ``answered`` says whether the output held a result at all (Claude Code's result
    object; any Codex turn, message or error); ``error`` is the error the CLI reported.
    """

    cli: CliAgent
    exit_code: int
    answered: bool
    text: str = ""
    error: str = ""
    stderr_tail: str = ""
    #: ``provider/model`` when the model was chosen by Orchestra, not the CLI
    model: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    tool_calls: int | None = None
    session_id: str | None = None


@attrs.frozen
class _Invocation:
    cli: CliAgent
    argv: tuple[str, ...]
    stdin: str
    cwd: Path
    env: Mapping[str, str]
    provider: str | None
    model: str | None


class CliAgentBackend:
    name = "cli_agent"

    def __init__(
        self,
        config: Config,
        *,
        workspace: Path | None = None,
        prices: Prices | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.workspace = workspace
        self.prices = prices if prices is not None else load_prices(config.prices)
        self.environ = environ

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome | StageReply:
        if node.attrs.get("agent.tools"):
            raise TerminalError(
                f"node '{node.id}': agent.tools limits the tools of Orchestra's own loop "
                "(backend agent); a CLI agent runs with its own tools"
            )
        recorded = stage.recorded.get(_RESULT, {}).get(stage.key)
        if recorded is not None:
            return _outcome(node.id, CONVERTER.structure(recorded, _CliResult))
        invocation = self._invocation(node, prompt, context, stage)
        stage.stage_dir.mkdir(parents=True, exist_ok=True)
        code, stdout, stderr = await _run_process(
            invocation,
            stdout_path=stage.stage_dir / _OUTPUT_FILES[invocation.cli],
            stderr_path=stage.stage_dir / _STDERR_FILE,
        )
        result = self._result(invocation, code, stdout, stderr)
        if stage.record is not None:
            await stage.record(_RESULT, {stage.key: CONVERTER.unstructure(result)})
        return _outcome(node.id, result)

    def _invocation(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> _Invocation:
        agent = self._agent(node)
        provider, model = self._model(node, agent)
        cli = _cli(node, provider)
        if provider != _PROVIDERS[cli]:
            model = None  # another provider's model id would mean nothing to this CLI
        env = dict(self.environ if self.environ is not None else os.environ)
        executable = shutil.which(cli, path=env.get("PATH"))
        if executable is None:
            raise TerminalError(
                f"node '{node.id}': the cli_agent backend runs `{cli}`, which is not on PATH; "
                f"install {_INSTALL[cli]} or add the directory that holds `{cli}` to PATH"
            )
        cwd = node_workspace(node, stage, self.workspace, context)
        if not cwd.is_dir():
            raise TerminalError(f"node '{node.id}': workspace {cwd} is not a directory")
        system, user = "", prompt
        if agent is not None:
            try:
                composed = compose_agent_prompt(
                    agent,
                    variables=stage.variables,
                    context=context.as_mapping(),
                    node_prompt=prompt,
                )
            except ConfigError as err:
                raise TerminalError(f"node '{node.id}': {err}") from None
            system, user = composed.system, composed.user
        user = f"{user}\n\n{STATUS_CONTRACT}"
        argv = [executable]
        if cli == "claude":
            argv += ["-p", "--output-format", "json", "--permission-mode", "acceptEdits"]
            if model is not None:
                argv += ["--model", model]
            if system:
                argv += ["--append-system-prompt", system]
        else:
            argv += ["exec", "--json", "--full-auto", "--skip-git-repo-check"]
            if model is not None:
                argv += ["--model", model]
            effort = node.attrs.get("reasoning_effort") or (
                agent.reasoning_effort if agent is not None else None
            )
            if effort:
                argv += ["-c", f'model_reasoning_effort="{effort}"']
            argv.append("-")  # the prompt is on stdin
            if system:
                user = f"{system}\n\n{user}"
        return _Invocation(cli, tuple(argv), user, cwd, env, provider, model)

    def _agent(self, node: Node) -> AgentConfig | None:
        name = str(node.attrs.get("agent") or "")
        if not name:
            return None
        agent = self.config.agents.get(name)
        if agent is None:
            names = ", ".join(sorted(self.config.agents)) or "none"
            raise TerminalError(
                f"node '{node.id}': agent '{name}' is not in orchestra.yaml (agents: {names})"
            )
        return agent

    def _model(self, node: Node, agent: AgentConfig | None) -> tuple[str | None, str | None]:
        """The provider and model the node resolves to; without the providers configured,
        the provider named on the node or agent and no model (the CLI's own default)."""
        try:
            resolved = resolve_model(
                node.llm_model or None, node.llm_provider or None, agent, self.config
            )
        except ConfigError as err:
            if not (err.key or "").startswith("providers"):
                raise TerminalError(f"node '{node.id}': {err}") from None
            named = node.llm_provider.strip() or (agent.provider if agent is not None else None)
            return named or self.config.providers.default_provider, None
        return resolved.provider, resolved.model

    def _result(
        self, invocation: _Invocation, code: int, stdout: bytes, stderr: bytes
    ) -> _CliResult:
        text = stdout.decode("utf-8", errors="replace")
        lines = stderr.decode("utf-8", errors="replace").strip().splitlines()
        result = _parse_claude(text) if invocation.cli == "claude" else _parse_codex(text)
        model = invocation.model
        cost = result.cost_usd
        if cost is None and model is not None and result.usage is not None:
            cost = self.prices.cost(model, result.usage, provider=invocation.provider)
        return attrs.evolve(
            result,
            exit_code=code,
            stderr_tail=lines[-1].strip() if lines else "",
            model=f"{invocation.provider}/{model}" if model is not None else None,
            cost_usd=cost,
        )


def _cli(node: Node, provider: str | None) -> CliAgent:
    named = str(node.attrs.get("cli_agent") or "").strip().lower()
    if not named:
        return "codex" if provider == _PROVIDERS["codex"] else "claude"
    for cli in CLI_AGENTS:
        if named == cli:
            return cli
    raise TerminalError(
        f"node '{node.id}': cli_agent={named!r} is not a CLI agent Orchestra runs "
        f"(cli agents: {', '.join(CLI_AGENTS)})"
    )


# --- the process --------------------------------------------------------------------------


async def _run_process(
    invocation: _Invocation, *, stdout_path: Path, stderr_path: Path
) -> tuple[int, bytes, bytes]:
    """Run the CLI to its end: its exit code, stdout and stderr (also written to the two
    files as they arrive). Cancelled, the process group is killed before this returns."""
    stdout = bytearray()
    stderr = bytearray()
    with stdout_path.open("wb") as out_file, stderr_path.open("wb") as err_file:
        try:
            finished = await run_in_group(
                invocation.argv,
                cwd=invocation.cwd,
                env=invocation.env,
                stdin=invocation.stdin.encode("utf-8"),
                stdout=_tee(stdout, out_file),
                stderr=_tee(stderr, err_file),
            )
        except OSError as err:
            raise TerminalError(f"could not start {invocation.argv[0]}: {err}") from None
    code = finished.returncode
    return (code if code is not None else -1), bytes(stdout), bytes(stderr)


def _tee(into: bytearray, file: IO[bytes]) -> Callable[[bytes], None]:
    def keep(chunk: bytes) -> None:
        into.extend(chunk)
        file.write(chunk)
        file.flush()

    return keep


# --- what the CLIs print ------------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _message(value: Any) -> str:
    """An error's text, from ``{"message": ...}``, a string, or anything else as JSON."""
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _parse_claude(stdout: str) -> _CliResult:
    """Claude Code's result object: the whole output, or (with ``stream-json``) its last
    line of type ``result``."""
    report = next(
        (
            data
            for data in map(_json_object, (stdout, *reversed(stdout.splitlines())))
            if data is not None and data.get("type") == "result"
        ),
        None,
    )
    if report is None:
        return _CliResult("claude", exit_code=0, answered=False)
    text = report.get("result")
    text = text if isinstance(text, str) else ""
    subtype = str(report.get("subtype") or "")
    error = ""
    if report.get("is_error") or subtype.startswith("error"):
        parts = [subtype if subtype.startswith("error") else "", text.strip()]
        error = ": ".join(part for part in parts if part) or "an error result with no message"
    tokens = report.get("usage")
    usage = None
    if isinstance(tokens, dict):
        usage = Usage(
            _count(tokens.get("input_tokens")),
            _count(tokens.get("output_tokens")),
            cache_read_tokens=_count(tokens.get("cache_read_input_tokens")),
            cache_write_tokens=_count(tokens.get("cache_creation_input_tokens")),
        )
    cost = report.get("total_cost_usd")
    session = report.get("session_id")
    return _CliResult(
        "claude",
        exit_code=0,
        answered=True,
        text=text,
        error=error,
        usage=usage,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        session_id=session if isinstance(session, str) else None,
    )


def _parse_codex(stdout: str) -> _CliResult:
    """Codex's JSONL events: the last agent message is the answer, the turns' usage adds
    up, ``turn.failed`` and ``error`` are errors; other events and lines are skipped."""
    answered = False
    text = ""
    error = ""
    usage: Usage | None = None
    session: str | None = None
    tool_calls = 0
    for line in stdout.splitlines():
        event = _json_object(line)
        if event is None:
            continue
        kind = event.get("type")
        if kind == "thread.started" and isinstance(event.get("thread_id"), str):
            session = event["thread_id"]
        elif kind == "item.completed":
            item = event.get("item")
            if not isinstance(item, dict):
                continue
            item_type = item.get("type")
            if item_type == "agent_message":
                answered, text = True, str(item.get("text") or "")
            elif item_type in _CODEX_TOOL_ITEMS:
                tool_calls += 1
        elif kind == "turn.completed":
            answered = True
            tokens = event.get("usage")
            if isinstance(tokens, dict):
                turn = Usage(
                    _count(tokens.get("input_tokens")),
                    _count(tokens.get("output_tokens")),
                    cache_read_tokens=_count(tokens.get("cached_input_tokens")),
                )
                usage = turn if usage is None else usage + turn
        elif kind == "turn.failed":
            answered, error = True, _message(event.get("error"))
        elif kind == "error":
            answered, error = True, _message(event)
    return _CliResult(
        "codex",
        exit_code=0,
        answered=answered,
        text=text,
        error=error,
        usage=usage,
        tool_calls=tool_calls,
        session_id=session,
    )


# --- the outcome --------------------------------------------------------------------------


def _outcome(node_id: str, result: _CliResult) -> Outcome | StageReply:
    answer, _ = outcome_from_answer(node_id, result.text)
    updates: dict[str, Any] = {
        "last_stage": node_id,
        "last_response": answer[:_LAST_RESPONSE_CHARS],
    }
    if result.model is not None:
        updates[f"usage.{node_id}.model"] = result.model
    if result.usage is not None:
        updates[f"usage.{node_id}.input_tokens"] = result.usage.input_tokens
        updates[f"usage.{node_id}.output_tokens"] = result.usage.output_tokens
        if result.usage.cache_read_tokens:
            updates[f"usage.{node_id}.cache_read_tokens"] = result.usage.cache_read_tokens
    if result.cost_usd is not None:
        updates[f"usage.{node_id}.cost_usd"] = round(result.cost_usd, 6)
    if result.tool_calls is not None:
        updates[f"usage.{node_id}.tool_calls"] = result.tool_calls
    if result.session_id is not None:
        updates[f"cli_agent.{node_id}.session_id"] = result.session_id
    if result.error:
        transient = _TRANSIENT.search(result.error) is not None
        return Outcome(
            StageStatus.RETRY if transient else StageStatus.FAIL,
            failure_reason=f"{result.cli}: {result.error}",
            notes="the CLI agent hit a rate limit or an overload; the node may be retried"
            if transient
            else "",
            context_updates=updates,
        )
    if not result.answered:
        return Outcome.fail(_exit_reason(result), context_updates=updates)
    return answer_outcome(node_id, result.text, updates)


def _exit_reason(result: _CliResult) -> str:
    code = result.exit_code
    if code < 0:
        how = f"{result.cli} was killed by signal {-code}"
    elif code == 0:
        how = f"{result.cli} exited with status 0 but printed no result"
    else:
        how = f"{result.cli} exited with status {code} without a result"
    return f"{how}: {result.stderr_tail}" if result.stderr_tail else how
