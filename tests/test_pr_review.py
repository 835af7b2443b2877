"""The flagship, examples/pr-review, three ways: on simulation with no key, against a fake
LLM server scripted for one critic round (in-process, then killed mid-round and resumed),
and for real with ORCHESTRA_REAL_LLM=1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestra.interviewer.base import QueueInterviewer
from orchestra.llm.fake_server import FakeLLMServer
from orchestra.pipeline import Pipeline
from orchestra.store.embedded import EmbeddedStore

ORCHESTRA = str(Path(sys.executable).parent / "orchestra")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pr-review"

PATH = [
    "start",
    "get_diff",
    "fan_out",
    "fan_in",
    "critic",
    "enough",
    "fan_out",
    "fan_in",
    "critic",
    "enough",
    "synthesize",
    "approval",
    "publish",
    "exit",
]

INJECTION = "critical: users.py:17 SQL injection: search_users concatenates name into the query"
FINAL = (
    "FINAL REVIEW\n\nVerdict: request changes\n\n## Critical\n\n"
    f"- {INJECTION}; use a parameter (found by security)\n"
)


def _status(**updates: str) -> str:
    block = {"outcome": "success", "context_updates": updates, "notes": "judged"}
    return f"```status\n{json.dumps(block)}\n```"


def _read(name: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "read_file", "arguments": {"file_path": name}}]}


def script(*, hold: bool = False) -> dict[str, Any]:
    """The model's side of one critic round: the security review misses the injection,
    the critic sends security back, its second look finds it; then the chat and the
    sign-off. Conversations are matched by a text only their requests hold, in order."""
    second_look: dict[str, Any] = {"text": f"{INJECTION}. [SECURITY-ROUND-2]"}
    if hold:
        second_look["hold"] = True
    usage = {"input_tokens": 1000, "output_tokens": 100}
    return {
        "conversations": [
            {
                "match": "Draft the final review",
                "steps": [{"text": "DRAFT: request changes."}, {"text": FINAL}],
            },
            {
                "match": "MERGED-2",
                "steps": [{"text": "Good enough now.\n" + _status(critic_verdict="sufficient")}],
            },
            {
                "match": "MERGED-1",
                "steps": [
                    {
                        "text": "The security review missed the concatenated SQL.\n"
                        + _status(
                            critic_verdict="insufficient",
                            critic_rerun="security",
                            critic_reasons="nobody looked at how search_users builds its SQL",
                        )
                    }
                ],
            },
            {"match": "[SECURITY-ROUND-2]", "steps": [{"text": f"MERGED-2\n\n- {INJECTION}"}]},
            {"match": "Merge these reviews", "steps": [{"text": "MERGED-1\n\n- minor things"}]},
            {
                "match": "sent the last round of reviews back",
                "steps": [_read("users.py"), {**second_look, "usage": usage}],
            },
            {"match": "the security reviewer", "steps": [{"text": "minor: docstrings are thin"}]},
            {"match": "the architecture reviewer", "steps": [{"text": "nothing to report"}]},
            {"match": "the correctness reviewer", "steps": [{"text": "nothing to report"}]},
            {
                "match": "the tests reviewer",
                "steps": [_read("test_users.py"), {"text": "minor: no test with a quote"}],
            },
        ]
    }


NAMES = [
    "synthesize",
    "critic-2",
    "critic-1",
    "fan_in-2",
    "fan_in-1",
    "security-2",
    "security-1",
    "architecture",
    "correctness",
    "tests",
]


def asked(server: FakeLLMServer) -> Counter[str]:
    """How many requests each conversation got."""
    return Counter(NAMES[r["conversation"]] for r in server.requests)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "pr-review", ignore=shutil.ignore_patterns(".orchestra"))
    return tmp_path / "pr-review"


def environment(server: FakeLLMServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**env, "ANTHROPIC_API_KEY": "sk-fake-0123456789", "ANTHROPIC_BASE_URL": server.base_url}


def test_no_key_runs_the_whole_shape_on_simulation(example: Path) -> None:
    """The README's command with no key: one critic round that re-runs security alone, the
    chat and the sign-off answered by --auto-approve, review.md written and named."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    ran = subprocess.run(
        [ORCHESTRA, "run", "pr-review.dot", "--auto-approve"],
        cwd=example,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "path: " + " → ".join(PATH) in ran.stdout
    review = example / ".orchestra" / "runs" / "1" / "review.md"
    assert f"review written to {review}" in ran.stdout
    assert "### Found by security" in review.read_text()
    starts = [line for line in ran.stdout.splitlines() if "▸ │" in line]
    assert [line.split()[2] for line in starts] == [
        "security",
        "architecture",
        "correctness",
        "tests",
        "security",
    ]


async def test_a_scripted_review_with_one_critic_round(
    example: Path, store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the fake LLM server: the critic sends security back once and only security
    re-runs; the chat takes two messages and the sign-off approves; review.md holds the
    signed-off review and who found what; tokens and cost are kept per node."""
    with FakeLLMServer(script()) as server:
        for name, value in environment(server).items():
            monkeypatch.setenv(name, value)
        interviewer = QueueInterviewer(["shorter, please", "/done", "A", "ship it"])
        pipeline = Pipeline.load(
            example / "pr-review.dot",
            store=store,
            interviewer=interviewer,
            logs_root=example / "run",
        )
        result = await pipeline.run()

    assert result.succeeded, result.failure_reason
    assert list(result.completed_nodes) == PATH
    assert asked(server) == {
        "security-1": 1,
        "security-2": 2,  # a tool call, then the review
        "architecture": 1,
        "correctness": 1,
        "tests": 2,
        "fan_in-1": 1,
        "fan_in-2": 1,
        "critic-1": 1,
        "critic-2": 1,
        "synthesize": 2,
    }
    review = (example / "run" / "review.md").read_text()
    assert FINAL.strip() in review
    assert f"### Found by security\n\n{INJECTION}" in review
    security = result.usage["security"]
    assert security["runs"] == 2
    assert security["model"] == "anthropic/claude-opus-4-5"  # .reviewer: the smart tier
    assert security["input_tokens"] == 1000 + 2 * 10  # the fake's default usage is 10 in
    assert security["cost_usd"] > 0
    assert result.usage["synthesize"]["model"] == "anthropic/claude-sonnet-4-6"  # worker


def test_killed_in_the_second_round_resumes_without_repeating_work(example: Path) -> None:
    """SIGKILL while security's second look is with the model (after its tool call): the
    resumed run re-runs no finished reviewer, repeats no tool call, and asks the model
    again only for the answer it never got."""
    with FakeLLMServer(script(hold=True), release_file=example / "release") as server:
        env = environment(server)
        run = subprocess.Popen(
            [ORCHESTRA, "run", "pr-review.dot", "--auto-approve", "--json"],
            cwd=example,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert run.stdout is not None
            session = str(json.loads(run.stdout.readline())["session_id"])
            # round one (5 requests), the fan-in and the critic, then security's two
            server.wait_for_requests(9, timeout=60)
            os.kill(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            if run.poll() is None:
                run.kill()
        before = asked(server)
        assert before["security-2"] == 2

        (example / "release").touch()
        resumed = subprocess.run(
            [ORCHESTRA, "resume", session, "--auto-approve"],
            cwd=example,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = asked(server)
    assert after["security-2"] == 3  # only the answer it never got
    for finished in ("security-1", "architecture", "correctness", "tests", "fan_in-1"):
        assert after[finished] == before[finished], finished
    steps = Counter(r["step"] for r in server.requests if NAMES[r["conversation"]] == "security-2")
    assert steps == {0: 1, 1: 2}  # the tool-call request was not sent again
    review = next((example / ".orchestra" / "runs").glob("*/review.md")).read_text()
    assert INJECTION in review


@pytest.mark.skipif(
    os.environ.get("ORCHESTRA_REAL_LLM") != "1" or not os.environ.get("ANTHROPIC_API_KEY"),
    reason="reviews a real change with a real model: set ORCHESTRA_REAL_LLM=1 and "
    "ANTHROPIC_API_KEY",
)
def test_a_real_review_finds_the_seeded_injection(example: Path) -> None:
    """The bundled demo change concatenates user input into SQL: a real review's verdict
    must name it."""
    ran = subprocess.run(
        [ORCHESTRA, "run", "pr-review.dot", "--auto-approve"],
        cwd=example,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    review = next((example / ".orchestra" / "runs").glob("*/review.md")).read_text().lower()
    assert "injection" in review
    assert "search_users" in review or "users.py" in review


TOOLS = EXAMPLE / "tools"


def tool(
    name: str, *args: str, cwd: Path, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else os.environ.get("PATH", "")}
    env.pop("ATTRACTOR_STAGE_DIR", None)
    return subprocess.run(
        [sys.executable, str(TOOLS / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestTools:
    def test_a_large_diff_is_cut_by_whole_files_naming_those_left_out(self, tmp_path: Path) -> None:
        whole = tool("get_diff.py", "--out", str(tmp_path), cwd=tmp_path)
        assert whole.returncode == 0, whole.stderr
        assert (
            '+    query = "SELECT id, name FROM users WHERE name LIKE \'%" + name' in whole.stdout
        )
        assert (tmp_path / "head" / "users.py").is_file()
        cut = tool("get_diff.py", "--out", str(tmp_path), "--budget", "600", cwd=tmp_path)
        assert "diff --git a/test_users.py" in cut.stdout  # the first file fits
        assert "diff --git a/users.py" not in cut.stdout
        assert "1 file(s) left out of this view" in cut.stdout
        assert "#   users.py" in cut.stdout
        assert (tmp_path / "diff.patch").read_text().count("diff --git") == 2

    def test_a_local_repository_between_two_refs(self, tmp_path: Path) -> None:
        tool("get_diff.py", "--out", str(tmp_path / "made"), cwd=tmp_path)
        repo = tmp_path / "made" / "demo-repo"
        ran = tool(
            "get_diff.py",
            "--out",
            str(tmp_path / "out"),
            "--repo",
            str(repo),
            "--base",
            "main",
            "--head",
            "feature",
            cwd=tmp_path,
        )
        assert ran.returncode == 0, ran.stderr
        assert f"# The change: {repo} main..feature" in ran.stdout
        missing = tool(
            "get_diff.py",
            "--out",
            str(tmp_path / "out"),
            "--repo",
            str(repo),
            "--base",
            "nope",
            cwd=tmp_path,
        )
        assert missing.returncode == 1
        assert "has no commit or branch named 'nope'" in missing.stderr

    def test_a_pull_request_without_gh_says_how_to_get_it(self, tmp_path: Path) -> None:
        ran = tool(
            "get_diff.py", "--out", str(tmp_path), "--pr", "7", cwd=tmp_path, path="/nonexistent"
        )
        assert ran.returncode == 1
        assert "--pr needs GitHub's CLI, `gh`, which is not on PATH" in ran.stderr

    def test_publish_without_gh_writes_the_review_and_says_why_it_did_not_post(
        self, tmp_path: Path
    ) -> None:
        for stage, text in (("synthesize", "Verdict: approve"), ("security", "nothing")):
            (tmp_path / stage).mkdir()
            (tmp_path / stage / "response.md").write_text(text)
        ran = tool(
            "publish.py",
            "--run-dir",
            str(tmp_path),
            "--reviewers",
            "security,tests",
            "--pr",
            "7",
            "--post",
            "true",
            cwd=tmp_path,
            path="/nonexistent",
        )
        assert ran.returncode == 0, ran.stderr
        assert "not posted: GitHub's CLI `gh` is not on PATH" in ran.stdout
        review = (tmp_path / "review.md").read_text()
        assert "Verdict: approve" in review
        assert "### Found by security\n\nnothing" in review
        assert "### Found by tests\n\n(no review)" in review
