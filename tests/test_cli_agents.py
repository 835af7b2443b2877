"""`orchestra run` with agent nodes against a fake Anthropic and a fake OpenAI server on
127.0.0.1, found by base URL as a user would point the SDKs at a proxy: the scripted model's
tool calls write files in the workspace, every turn is recorded, a SIGKILL mid-node is
resumed without running a tool call twice, and tokens and cost are printed per node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestra.engine.session import RECORDED, decode, session_history
from orchestra.llm.fake_server import FakeLLMServer
from orchestra.store.embedded import EmbeddedStore

ORCHESTRA = Path(sys.executable).parent / "orchestra"

PIPELINE = """
digraph greet {
    graph [goal="greet the team"]
    start [shape=Mdiamond]
    write [prompt="Write hello.txt for $goal", llm_model="worker"]
    check [shape=parallelogram, tool_command="test -f hello.txt"]
    exit  [shape=Msquare]
    start -> write -> check -> exit
}
"""

STATUS = '```status\n{"outcome": "success", "notes": "wrote hello.txt"}\n```'

SCRIPT: dict[str, Any] = {
    "conversations": [
        {
            "steps": [
                {
                    "tool_calls": [
                        {
                            "name": "write_file",
                            "arguments": {"file_path": "hello.txt", "content": "hello, team\n"},
                        },
                        {"name": "shell", "arguments": {"command": "echo ran >> calls.log"}},
                    ],
                    "usage": {"input_tokens": 1200, "output_tokens": 80},
                },
                {
                    "hold": True,
                    "text": f"hello.txt is written.\n{STATUS}",
                    "usage": {"input_tokens": 1500, "output_tokens": 40},
                },
            ]
        }
    ]
}

PROVIDERS = {
    "anthropic": ("claude-sonnet-4-5", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "openai": ("gpt-5-mini", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
}


def project(tmp_path: Path, provider: str) -> Path:
    model = PROVIDERS[provider][0]
    (tmp_path / "pipeline.dot").write_text(PIPELINE)
    (tmp_path / "orchestra.yaml").write_text(
        f"backend: agent\nproviders:\n  default: {provider}\n"
        f"  {provider}:\n    models: {{worker: {model}}}\n"
    )
    return tmp_path


def environment(server: FakeLLMServer, provider: str) -> dict[str, str]:
    _, key, base = PROVIDERS[provider]
    url = server.base_url if provider == "anthropic" else server.openai_base_url
    return {**os.environ, key: "sk-fake-key-0123456789", base: url}


def orchestra(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ORCHESTRA), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


async def recorded_kinds(cwd: Path, session: str) -> list[str]:
    store = await EmbeddedStore.open(cwd / ".orchestra" / "state.db")
    try:
        turns = await session_history(store, session)
    finally:
        await store.close()
    return [str(decode(t)["kind"]) for t in turns if t.type_id == RECORDED]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_an_agent_run_survives_sigkill_mid_node_without_repeating_a_tool_call(
    tmp_path: Path, provider: str
) -> None:
    cwd = project(tmp_path, provider)
    with FakeLLMServer(SCRIPT, release_file=tmp_path / "release") as server:
        env = environment(server, provider)
        process = subprocess.Popen(
            [str(ORCHESTRA), "run", "pipeline.dot", "--json"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            started = json.loads(process.stdout.readline())
            assert started["event"] == "PipelineStarted", started
            session = str(started["session_id"])
            # The second model call is held: the tools of the first have run and are
            # recorded. Kill the run there, as a crash would.
            server.wait_for_requests(2, timeout=30)
        finally:
            process.kill()
            process.wait()
        assert (cwd / "hello.txt").read_text() == "hello, team\n"
        assert (cwd / "calls.log").read_text() == "ran\n"
        kinds = anyio.run(recorded_kinds, cwd, session)
        assert kinds.count("agent.tools") == 2  # both tool calls, each recorded as it ended

        server.release()
        resumed = orchestra("resume", session, cwd=cwd, env=env)

        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert (cwd / "calls.log").read_text() == "ran\n"  # the shell call did not run again
        steps = [request["step"] for request in server.requests]
        assert steps == [0, 1, 1]  # the first answer was never asked for again
        retold = server.requests[-1]["body"]
        assert "hello.txt" in json.dumps(retold)  # the tool results went to the model
    output = resumed.stdout
    assert "usage:" in output
    model = PROVIDERS[provider][0]
    assert "write  2,700 in / 120 out tok, $" in output
    assert f"{provider}/{model}" in output
    status = orchestra("status", session, "--detail", "--json", cwd=cwd, env=env)
    detail = json.loads(status.stdout)
    assert detail["status"] == "success"
    assert detail["usage"]["write"]["input_tokens"] == 2700
    assert detail["usage"]["write"]["model_calls"] == 2
    assert detail["usage_total"]["cost_usd"] > 0
    kinds = anyio.run(recorded_kinds, cwd, session)
    assert kinds.count("agent.tools") == 2
    assert kinds.count("agent.usage") == 2


def test_an_uninterrupted_agent_run_prints_tokens_and_cost_per_node(tmp_path: Path) -> None:
    cwd = project(tmp_path, "anthropic")
    (cwd / "release").touch()
    with FakeLLMServer(SCRIPT, release_file=cwd / "release") as server:
        result = orchestra("run", "pipeline.dot", cwd=cwd, env=environment(server, "anthropic"))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    write_line = next(line for line in lines if "write" in line and "✓" in line)
    assert "2,700 in / 120 out tok" in write_line
    # 2,700 input at $3/M and 120 output at $15/M
    assert "$0.0099" in result.stdout
    assert (cwd / "hello.txt").exists()


def test_an_agent_backend_without_a_key_says_what_to_set(tmp_path: Path) -> None:
    cwd = project(tmp_path, "anthropic")
    result = orchestra("run", "pipeline.dot", cwd=cwd, env=dict(os.environ))

    assert result.returncode == 2
    assert "no provider key is set" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_from_a_turn_inside_a_finished_node_does_not_rerun_its_tools(
    tmp_path: Path,
) -> None:
    """`status --detail` lists the agent's turns; `resume --turn` on the turn of the last
    tool result forks the session there and asks the model again from that point, without
    running the recorded tool calls."""
    cwd = project(tmp_path, "anthropic")
    (cwd / "release").touch()
    with FakeLLMServer(SCRIPT, release_file=cwd / "release") as server:
        env = environment(server, "anthropic")
        ran = orchestra("run", "pipeline.dot", "--json", cwd=cwd, env=env)
        assert ran.returncode == 0, ran.stderr
        session = str(json.loads(ran.stdout.splitlines()[0])["session_id"])

        shown = orchestra("status", session, "--detail", cwd=cwd, env=env)
        assert "model asks write_file, shell" in shown.stdout
        assert "tool shell" in shown.stdout
        records = json.loads(orchestra("status", session, "--json", cwd=cwd, env=env).stdout)
        tool_turn = max(r["turn_id"] for r in records["records"] if r["kind"] == "agent.tools")

        again = orchestra("resume", session, "--turn", str(tool_turn), "--json", cwd=cwd, env=env)

        assert again.returncode == 0, again.stdout + again.stderr
        fork = str(json.loads(again.stdout.splitlines()[0])["session_id"])
        assert fork != session
        assert (cwd / "calls.log").read_text() == "ran\n"
        assert [request["step"] for request in server.requests] == [0, 1, 1]
        original = json.loads(orchestra("status", session, "--json", cwd=cwd, env=env).stdout)
        assert original["status"] == "success"
        refused = orchestra("resume", session, "--turn", "1", cwd=cwd, env=env)
        assert refused.returncode == 2
        assert "is not a turn recorded inside a node" in refused.stderr


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "agents"

NEW_GREET = """import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description="Greet someone.")
    parser.add_argument("name", help="who to greet")
    parser.add_argument("--shout", action="store_true", help="greet in capitals")
    args = parser.parse_args()
    greeting = f"Hello, {args.name}!"
    print(greeting.upper() if args.shout else greeting)


if __name__ == "__main__":
    main()
"""


def test_the_agents_example_runs_its_agents_with_a_provider(tmp_path: Path) -> None:
    """examples/agents with a key: the planner's one call, the implementer's tool loop in
    app/ (relative to the pipeline), the reviewer's label routing; each agent's prompt is
    composed from its four layers."""
    shutil.copytree(EXAMPLE, tmp_path / "agents")
    cwd = tmp_path / "agents"
    approve = '```status\n{"outcome": "success", "preferred_label": "Approve"}\n```'
    script = {
        "conversations": [
            {"match": "Plan the change.", "steps": [{"text": "1. add --shout"}]},
            {
                "match": "Implement the plan.",
                "steps": [
                    {
                        "tool_calls": [
                            {
                                "name": "write_file",
                                "arguments": {"file_path": "greet.py", "content": NEW_GREET},
                            },
                            {
                                "name": "shell",
                                "arguments": {"command": "python3 greet.py --shout team"},
                            },
                        ]
                    },
                    {"text": "Done: --shout works."},
                ],
            },
            {"match": "Review the change.", "steps": [{"text": f"Sound.\n{approve}"}]},
        ]
    }
    with FakeLLMServer(script) as server:
        result = orchestra("run", "change.dot", cwd=cwd, env=environment(server, "anthropic"))
        requests = server.requests

    assert result.returncode == 0, result.stdout + result.stderr
    assert "path: start → plan → implement → review → exit" in result.stdout
    assert (cwd / "app" / "greet.py").read_text() == NEW_GREET
    plan = requests[0]["body"]
    system = json.dumps(plan["system"])
    assert "You are a software engineer" in system  # role
    assert "standard library" in system  # persona
    assert "short bullet points" in system  # personality
    assert "plan of at most five steps" in system  # task
    assert "tools" not in plan  # the planner runs on the direct backend
    assert plan["model"] == "claude-opus-4-5"  # the smart tier
    implement = next(r for r in requests if "Implement the plan." in json.dumps(r["body"]))
    assert implement["body"]["model"] == "claude-sonnet-4-6"
    told = json.dumps(requests[-2]["body"])  # the implementer's second call
    assert "HELLO, TEAM!" in told  # the shell tool ran the changed program
