"""The examples' chats as a person has them: `orchestra run` in a real pseudo-terminal, a
fake LLM server on 127.0.0.1, messages typed at the prompt, Ctrl-C and `orchestra resume`."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from terminal import Terminal

from orchestra.llm.fake_server import FakeLLMServer

ORCHESTRA = str(Path(sys.executable).parent / "orchestra")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SCRIPT: dict[str, Any] = {
    "conversations": [
        {
            "match": "Open the brainstorm",
            "steps": [
                {"text": "Five ideas:\n\n1. A **lakeside cabin**\n2. A hike\n\nWhich one?"},
                {"text": "Cheaper: a day hike and a potluck. Shall we settle on that?"},
                {"text": "Settled: a day hike, then a potluck at the office."},
            ],
        },
        {"match": "one-page brief", "steps": [{"text": "# Brief\n\nA day hike."}]},
    ]
}

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")


def plain(screen: str) -> str:
    return ANSI.sub("", screen)


@pytest.fixture
def brainstorm(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLES / "brainstorm", tmp_path / "brainstorm")
    return tmp_path / "brainstorm"


def environment(server: FakeLLMServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**env, "ANTHROPIC_API_KEY": "sk-fake-0123456789", "ANTHROPIC_BASE_URL": server.base_url}


def chat_requests(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["conversation"] == 0]


def test_a_chat_typed_in_a_terminal_interrupted_and_resumed(brainstorm: Path) -> None:
    """The agent's reply is on screen (Markdown rendered), a typed message gets the next
    reply; Ctrl-C at the prompt stops the run (exit 130) saying how to resume; `orchestra
    resume` shows the chat again without asking the model again, takes /done, and the
    brief's prompt holds the chat's last reply."""
    with FakeLLMServer(SCRIPT) as server:
        env = environment(server)
        with Terminal([ORCHESTRA, "run", "brainstorm.dot"], cwd=brainstorm, env=env) as term:
            seen = term.wait_for("Which one?")
            seen = term.wait_for("/done ends the chat", after=seen)
            term.type("something cheaper\r")
            seen = term.wait_for("Shall we settle on that?", after=seen)
            seen = term.wait_for("/done ends the chat", after=seen)
            term.type("\x03")
            assert term.wait() == 130
            screen = plain(term.screen)
        assert "you > something cheaper" in screen
        assert "**lakeside cabin**" not in screen  # rendered, not raw Markdown
        assert "lakeside cabin" in screen
        session = re.search(r"orchestra resume (\d+)", screen)
        assert session is not None, screen
        assert len(chat_requests(server)) == 2

        resume = [ORCHESTRA, "resume", session.group(1)]
        with Terminal(resume, cwd=brainstorm, env=env) as term:
            seen = term.wait_for("Shall we settle on that?")
            seen = term.wait_for("/done ends the chat", after=seen)
            term.type("yes, settle it\r")
            seen = term.wait_for("Settled: a day hike", after=seen)
            seen = term.wait_for("/done ends the chat", after=seen)
            term.type("/done\r")
            assert term.wait() == 0, plain(term.screen)
            screen = plain(term.screen)

    assert "(earlier)" in screen
    assert "you > something cheaper" in screen
    assert len(chat_requests(server)) == 3  # the resumed run asked only for the new reply
    (brief,) = [r for r in server.requests if r["conversation"] == 1]
    sent = str(brief["body"]["messages"])
    assert "Settled: a day hike, then a potluck at the office." in sent


def test_a_chat_without_a_terminal_stops_before_any_model_call(brainstorm: Path) -> None:
    """stdin not a terminal and no --auto-approve: exit 2, saying what to do, and the model
    is never asked."""
    import subprocess

    with FakeLLMServer(SCRIPT) as server:
        ran = subprocess.run(
            [ORCHESTRA, "run", "brainstorm.dot"],
            cwd=brainstorm,
            env=environment(server),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "--auto-approve" in ran.stderr
    assert "orchestra answer" in ran.stderr
    assert server.requests == []


def test_the_interview_with_a_revision_in_a_terminal(tmp_path: Path) -> None:
    """The interview example on simulation, typed at in a terminal: the chat ends on /done,
    the gate shows the proposal it asks about, R with a note sends it back to `propose`
    (whose next prompt holds the note), and A then approves it."""
    shutil.copytree(EXAMPLES / "interview", tmp_path / "interview")
    cwd = tmp_path / "interview"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    with Terminal([ORCHESTRA, "run", "interview.dot"], cwd=cwd, env=env) as term:
        seen = term.wait_for("/done ends the chat")
        term.type("/done\r")
        seen = term.wait_for("Approve the architecture?", after=seen)
        term.type("r\r")  # the accelerator key points at [R] Revise, Enter takes it
        seen = term.wait_for("Your answer (free text):", after=seen)
        term.type("use a queue between the fetcher and the mailer\r")
        seen = term.wait_for("Approve the architecture?", after=seen)
        term.type("a\r")
        seen = term.wait_for("Your answer (free text):", after=seen)
        term.type("\r")
        assert term.wait() == 0, plain(term.screen)
        screen = plain(term.screen)

    assert "│ [Simulated] Response for stage: propose" in screen  # what the gate asks about
    runs = cwd / ".orchestra" / "runs"
    (run,) = list(runs.iterdir())
    prompt = (run / "propose" / "prompt.md").read_text()
    assert "The reviewer asked for: use a queue between the fetcher and the mailer" in prompt
    assert (run / "document" / "response.md").exists()


@pytest.mark.parametrize("kind", ["embedded", "cxdb"])
def test_a_chat_answered_from_another_process(
    brainstorm: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """`run --wait-for-answers` in the background: `orchestra status` shows the chat
    waiting with the agent's last reply, and `orchestra answer --text` sends each message
    until /done; on the embedded store and on a CXDB server."""
    import subprocess
    import time

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "CXDB_URL"}
    if kind == "cxdb":
        env["CXDB_URL"] = request.getfixturevalue("cxdb_process")

    def orchestra(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ORCHESTRA, *args], cwd=brainstorm, env=env, capture_output=True, text=True
        )

    def waiting_for(reply: str) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = orchestra("status", "1").stdout
            if "waiting at brainstorm" in status and reply in status:
                return status
            time.sleep(0.1)
        raise AssertionError(f"never waiting after {reply!r}: {status}")

    run = subprocess.Popen(
        [ORCHESTRA, "run", "brainstorm.dot", "--wait-for-answers"],
        cwd=brainstorm,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = waiting_for("Reply 1 for stage: brainstorm")
        assert "--text /done ends the chat" in status
        assert orchestra("answer", "1", "--text", "cheaper").returncode == 0
        waiting_for('to "cheaper"')
        assert orchestra("answer", "1", "--text", "/done").returncode == 0
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out + err
    assert "you > cheaper" in out
    brief = next(brainstorm.glob(".orchestra/runs/*/brief/prompt.md")).read_text()
    assert 'Reply 2 for stage: brainstorm to "cheaper"' in brief
