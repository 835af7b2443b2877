"""Provider keys never reach a tool's environment, and what a process prints never carries
a secret's value into a file, the context or the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.agent.tools import Workspace, shell
from orchestra.engine.session import load_session
from orchestra.pipeline import Pipeline
from orchestra.secrets import REDACTED, filter_environment, redact
from orchestra.store.embedded import EmbeddedStore

KEY = "sk-ant-test-0123456789abcdef"

PRINT_ENV = """
digraph g {{
    start [shape=Mdiamond]; exit [shape=Msquare]
    show  [shape=parallelogram, tool_command="env; echo key=${{ANTHROPIC_API_KEY:-none}}" {extra}]
    start -> show -> exit
}}
"""


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-9876543210")
    return KEY


async def run(source: str, store: EmbeddedStore, tmp_path: Path) -> str:
    """The tool's output, from its file, the context and the store, as one text."""
    result = await Pipeline.load(
        source, store=store, backend="simulation", logs_root=tmp_path / "run"
    ).run()
    assert result.succeeded, result.failure_reason
    state = await load_session(store, result.session_id)
    written = (tmp_path / "run" / "show" / "tool_output.txt").read_text()
    return "\n".join([written, str(result.context["tool.output"]), str(state.context)])


async def test_a_tool_node_does_not_get_the_keys(
    key: str, store: EmbeddedStore, tmp_path: Path
) -> None:
    seen = await run(PRINT_ENV.format(extra=""), store, tmp_path)
    assert "key=none" in seen
    assert "ANTHROPIC_API_KEY=" not in seen
    assert "DEPLOY_TOKEN=" not in seen
    assert key not in seen
    assert "PATH=" in seen  # the rest of the environment is there


async def test_a_key_passed_through_on_purpose_is_still_redacted_from_its_output(
    key: str, store: EmbeddedStore, tmp_path: Path
) -> None:
    """tool_env_passthrough gives the tool the key; printing it writes only [redacted]."""
    source = PRINT_ENV.format(extra=', tool_env_passthrough="ANTHROPIC_API_KEY"')
    seen = await run(source, store, tmp_path)
    assert f"key={REDACTED}" in seen
    assert key not in seen


async def test_a_status_file_carrying_a_key_is_redacted(
    key: str, store: EmbeddedStore, tmp_path: Path
) -> None:
    emit = tmp_path / "emit.py"
    emit.write_text(
        "import json, os, pathlib\n"
        "status = {'outcome': 'success', 'notes': os.environ['ANTHROPIC_API_KEY']}\n"
        "path = pathlib.Path(os.environ['ATTRACTOR_STAGE_DIR'], 'status.json')\n"
        "path.write_text(json.dumps(status))\n"
    )
    source = """
    digraph g {
        start [shape=Mdiamond]; exit [shape=Msquare]
        show  [shape=parallelogram, tool_env_passthrough="ANTHROPIC_API_KEY",
               tool_command="python3 {{ emit }}"]
        start -> show -> exit
    }
    """
    result = await Pipeline.load(
        source,
        variables={"emit": str(emit)},
        store=store,
        backend="simulation",
        logs_root=tmp_path / "run",
    ).run()
    assert result.succeeded, result.failure_reason
    assert result.node_outcomes["show"]["notes"] == REDACTED


async def test_the_agent_shell_redacts_a_key_it_reads_from_a_file(key: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={key}\n")
    output = await shell(
        {"command": "cat .env; echo ${ANTHROPIC_API_KEY:-unset}"}, Workspace(tmp_path)
    )
    assert key not in output.text
    assert f"ANTHROPIC_API_KEY={REDACTED}" in output.text
    assert "unset" in output.text


def test_filter_and_redact() -> None:
    environ = {"OPENAI_API_KEY": "x" * 10, "GH_TOKEN": "y" * 10, "HOME": "/root", "token": "z"}
    assert filter_environment(environ) == {"HOME": "/root"}
    assert filter_environment(environ, {"GH_TOKEN"}) == {"HOME": "/root", "GH_TOKEN": "y" * 10}
    assert redact("a xxxxxxxxxx b", ["x" * 10]) == f"a {REDACTED} b"
