"""Git workspaces through the command line: SIGKILL and resume, and `orchestra cleanup`.

A project repository is configured in orchestra.yaml; tool nodes change its tracked files in
the session's worktrees. A blocking tool announces through a FIFO (read with a time limit,
so a run that dies early fails the test instead of hanging it) that it is running, and the
test kills the run with SIGKILL. `orchestra resume` must then end with the same branch
history as an uninterrupted run, leave no worktree behind, and `git fsck` must pass.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich.objects import Commit
from dulwich.repo import Repo

from tests.processes import read_fifo
from tests.workspaces import (
    FAN_OUT,
    branch_commits,
    branch_files,
    branches,
    git_cli,
    make_repo,
)

ORCHESTRA = Path(sys.executable).with_name("orchestra")
EXAMPLE = Path(__file__).parent.parent / "examples" / "workspace-demo"

STEP = 'shape=parallelogram, tool_command="echo {id} >> {file}; echo {id} >> $TRACE"'
BLOCKING = (
    'shape=parallelogram, tool_command="echo {id} >> {file}; echo {id} >> $TRACE; '
    'if [ \\"$GO\\" != 1 ]; then echo $$ > $READY; sleep 60; fi"'
)

PIPELINE = f"""
digraph ws {{
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    one   [{STEP.format(id="one", file="one.txt")}]
    fan   [shape=component, max_parallel=1]
    a     [{STEP.format(id="a", file="a.txt")}]
    b     [{STEP.format(id="b", file="b.txt")}]
    c     [{{c}}]
    join  [shape=tripleoctagon]
    two   [{{two}}]
    start -> one -> fan
    fan -> a -> join
    fan -> b -> join
    fan -> c -> join
    join -> two -> exit
}}
"""

STORE_ENV: dict[str, str] = {}


def pipeline(block_at: str) -> str:
    nodes = {"c": ("c", "c.txt"), "two": ("two", "one.txt")}
    filled = {
        key: (BLOCKING if key == block_at else STEP).format(id=node, file=file)
        for key, (node, file) in nodes.items()
    }
    return PIPELINE.replace("{c}", filled["c"]).replace("{two}", filled["two"])


def project(tmp_path: Path, name: str, source: str) -> Path:
    """A directory with orchestra.yaml, pipeline.dot and the repository ``proj``."""
    directory = tmp_path / name
    files = {f"{n}.txt": f"{n}\n" for n in ("one", "a", "b", "c")}
    make_repo(directory / "proj", files)
    (directory / "orchestra.yaml").write_text("workspace:\n  repos:\n    proj:\n      path: proj\n")
    (directory / "pipeline.dot").write_text(source)
    return directory


def environment(cwd: Path, go: bool) -> dict[str, str]:
    return {
        **os.environ,
        **STORE_ENV,
        "GO": "1" if go else "0",
        "TRACE": str(cwd / "trace.txt"),
        "READY": str(cwd / "ready.fifo"),
    }


def orchestra(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ORCHESTRA), *args],
        cwd=cwd,
        env=environment(cwd, go=True),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_blocked(cwd: Path) -> tuple[subprocess.Popen[str], str, int]:
    """`orchestra run --json` stopped at its blocking tool: the process, the session id
    and the tool's pid (its process group's)."""
    os.mkfifo(cwd / "ready.fifo")
    process = subprocess.Popen(
        [str(ORCHESTRA), "run", "pipeline.dot", "--json"],
        cwd=cwd,
        env=environment(cwd, go=False),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = json.loads(process.stdout.readline())
    assert first["event"] == "PipelineStarted"
    return process, str(first["session_id"]), int(read_fifo(cwd / "ready.fifo", process))


def kill(process: subprocess.Popen[str], tool_pid: int) -> None:
    """SIGKILL the run and its tool, as a crash would."""
    process.kill()
    process.wait()
    os.killpg(tool_pid, signal.SIGKILL)


def kill_mid_run(cwd: Path) -> str:
    process, session, tool_pid = start_blocked(cwd)
    kill(process, tool_pid)
    return session


def run_clean(cwd: Path) -> str:
    """Run pipeline.dot uninterrupted; its session branch."""
    done = orchestra("run", "pipeline.dot", "--json", cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return f"orchestra/ws/{json.loads(done.stdout.splitlines()[0])['session_id']}"


def history(repo: Path, branch: str) -> list[tuple[str, str, int]]:
    """Each commit's author, subject and number of parents, sorted: what must match between
    a resumed run and an uninterrupted one (SHAs, and the order of commits made within the
    same second, differ by their times), the session's own branch name left out."""
    return sorted(
        (
            c.author.decode(),
            c.message.decode().splitlines()[0].replace(branch, "SESSION"),
            len(c.parents),
        )
        for c in branch_commits(repo, branch)
    )


def worktrees(repo: Path) -> list[str]:
    """The worktrees `git worktree list` knows, by path."""
    listed = git_cli(repo, "worktree", "list", "--porcelain").splitlines()
    return [line.removeprefix("worktree ") for line in listed if line.startswith("worktree ")]


@pytest.fixture(params=["embedded", "cxdb"])
def _store(request: pytest.FixtureRequest) -> Iterator[None]:
    """The store every `orchestra` of a crash test uses: embedded, or a CXDB server (the
    fake, as a process of its own): the worktree heads must survive both."""
    if request.param == "cxdb":
        STORE_ENV["CXDB_URL"] = request.getfixturevalue("cxdb_process")
    try:
        yield
    finally:
        STORE_ENV.clear()


@pytest.mark.usefixtures("_store")
class TestKilledRunResumes:
    @pytest.mark.parametrize("block_at", ["c", "two"])
    def test_resume_ends_with_the_uninterrupted_history(
        self, tmp_path: Path, block_at: str
    ) -> None:
        """SIGKILL inside a fan-out branch (c) or after the merge (two), then resume: the
        session branch has the same commits and files as an uninterrupted run, no worktree
        is left, and git fsck passes."""
        clean = project(tmp_path, "clean", pipeline(block_at))
        expected = run_clean(clean)

        crashed = project(tmp_path, "crashed", pipeline(block_at))
        session = kill_mid_run(crashed)
        resumed = orchestra("resume", session, "--quiet", cwd=crashed)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr

        branch = f"orchestra/ws/{session}"
        assert branch_files(crashed / "proj", branch) == branch_files(clean / "proj", expected)
        assert history(crashed / "proj", branch) == history(clean / "proj", expected)
        assert worktrees(crashed / "proj") == [str(crashed / "proj")]  # the user's own only
        assert not (crashed / ".orchestra" / "worktrees" / session).exists()
        assert branches(crashed / "proj") == ["main", branch]
        git_cli(crashed / "proj", "fsck", "--strict")

    def test_a_kill_in_the_middle_of_a_commit_leaves_nothing_behind(self, tmp_path: Path) -> None:
        """What a kill during a commit or a merge leaves (lock files, a half-written file,
        the branch moved to a commit no turn recorded) is undone by resume: the history is
        the uninterrupted one."""
        clean = project(tmp_path, "clean", pipeline("two"))
        expected = run_clean(clean)

        crashed = project(tmp_path, "crashed", pipeline("two"))
        session = kill_mid_run(crashed)
        repo_path = crashed / "proj"
        worktree = crashed / ".orchestra" / "worktrees" / session / "session" / "proj"
        ref = f"refs/heads/orchestra/ws/{session}"
        with Repo(str(repo_path)) as repo:
            head = repo.refs[ref.encode()]
            parent = repo[head]
            assert isinstance(parent, Commit)
            stray = Commit()
            stray.tree, stray.parents = parent.tree, [head]
            stray.author = stray.committer = b"x <x@x>"
            stray.commit_time = stray.author_time = 0
            stray.commit_timezone = stray.author_timezone = 0
            stray.message = b"a commit no turn recorded\n"
            repo.object_store.add_object(stray)
            repo.refs[ref.encode()] = stray.id
        control = Path((worktree / ".git").read_text().removeprefix("gitdir:").strip())
        (control / "index.lock").write_bytes(b"half an index")
        (repo_path / ".git" / (ref + ".lock")).write_text("half a ref")
        (worktree / "one.txt").write_text("half-writ")

        resumed = orchestra("resume", session, "--quiet", cwd=crashed)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        branch = f"orchestra/ws/{session}"
        assert history(repo_path, branch) == history(clean / "proj", expected)
        assert branch_files(repo_path, branch) == branch_files(clean / "proj", expected)
        git_cli(repo_path, "fsck", "--strict")


class TestCleanup:
    def test_keeps_what_runs_and_what_can_resume(self, tmp_path: Path) -> None:
        """While a session runs, cleanup keeps its worktree and branch; once it has crashed
        its worktree goes but its branch stays (resumable), and resume still works; once it
        has finished, an --older-than 0s cleanup removes its branch. --dry-run removes
        nothing."""
        directory = project(tmp_path, "work", pipeline("two"))
        process, session, tool_pid = start_blocked(directory)
        assert session == "1"
        running = orchestra("cleanup", "--older-than", "0s", "--json", cwd=directory)
        report = json.loads(running.stdout)
        assert report["removed_worktrees"] == report["removed_branches"] == []
        assert any("session 1 is running" in kept for kept in report["kept"])

        kill(process, tool_pid)
        dry = orchestra("cleanup", "--older-than", "0s", "--dry-run", cwd=directory)
        assert "would remove worktree" in dry.stdout
        assert (directory / ".orchestra" / "worktrees" / "1").is_dir()
        crashed = json.loads(
            orchestra("cleanup", "--older-than", "0s", "--json", cwd=directory).stdout
        )
        assert len(crashed["removed_worktrees"]) == 1
        assert crashed["removed_branches"] == []
        assert "orchestra/ws/1" in branches(directory / "proj")
        asked = orchestra(
            "cleanup", "--older-than", "0s", "--include-crashed", "--dry-run", cwd=directory
        )
        assert "would remove branch proj: orchestra/ws/1" in asked.stdout

        assert orchestra("resume", "1", "--quiet", cwd=directory).returncode == 0
        finished = json.loads(
            orchestra("cleanup", "--older-than", "0s", "--json", cwd=directory).stdout
        )
        assert finished["removed_branches"] == ["proj: orchestra/ws/1"]
        assert branches(directory / "proj") == ["main"]

    def test_young_branches_stay(self, tmp_path: Path) -> None:
        """The default limit (7 days) keeps a branch made a moment ago, and says why."""
        directory = project(tmp_path, "work", pipeline("none"))
        assert orchestra("run", "pipeline.dot", "--quiet", cwd=directory).returncode == 0
        result = orchestra("cleanup", cwd=directory)
        assert result.returncode == 0
        assert "kept proj: orchestra/ws/1: newer than the limit" in result.stdout
        assert branches(directory / "proj") == ["main", "orchestra/ws/1"]


class TestExample:
    def test_the_workspace_demo_runs_without_a_key(self, tmp_path: Path) -> None:
        """examples/workspace-demo, set up and run as its README says with no provider key,
        leaves a session branch whose commits carry trailers, and project/ exactly as it
        was (git status and HEAD)."""
        demo = tmp_path / "workspace-demo"
        shutil.copytree(EXAMPLE, demo, ignore=shutil.ignore_patterns("project", ".orchestra"))
        setup = subprocess.run(
            [sys.executable, str(demo / "setup.py")], capture_output=True, text=True, check=False
        )
        assert setup.returncode == 0, setup.stderr
        project = demo / "project"
        before = (git_cli(project, "status", "--porcelain"), git_cli(project, "rev-parse", "HEAD"))
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        done = subprocess.run(
            [str(ORCHESTRA), "run", str(demo / "add-tests.dot")],
            cwd=tmp_path,
            env={**env, **STORE_ENV},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        session = done.stdout.split("session ")[1].split()[0]
        assert f"branch: orchestra/add_tests/{session} in project" in done.stdout
        log = git_cli(
            project,
            "log",
            "--format=%an|%s|%(trailers:key=Orchestra-Node,valueonly)",
            f"orchestra/add_tests/{session}",
        )
        assert "work (simulation)|chore(work): update simulated/work.md|work" in log
        after = (git_cli(project, "status", "--porcelain"), git_cli(project, "rev-parse", "HEAD"))
        assert after == before


def agent_script(file_of: dict[str, str]) -> dict[str, object]:
    """Each agent writes its file, then says it is done; the cheap tier names commits."""
    conversations: list[dict[str, object]] = [
        {
            "match": f"[{node}]",
            "steps": [
                {
                    "tool_calls": [
                        {
                            "name": "write_file",
                            "arguments": {"file_path": path, "content": f"from {node}\n"},
                        }
                    ]
                },
                {"text": f"{node} is done"},
            ],
        }
        for node, path in file_of.items()
    ]
    conversations.append(
        {"match": "changed these files", "steps": [{"text": "feat: write the result"}]}
    )
    return {"conversations": conversations}


class TestAgentsThroughTheCommandLine:
    @pytest.mark.parametrize("same_file", [True, False])
    def test_three_agents_conflict_or_merge(self, tmp_path: Path, same_file: bool) -> None:
        """`orchestra run` with three agents on the fake LLM server: writing one file name
        the fan-in conflicts and the graph routes to resolve; writing their own files all
        three reach the session branch. Each commit's message is the cheap tier's."""
        from orchestra.llm.fake_server import FakeLLMServer

        directory = project(tmp_path, "work", FAN_OUT)
        (directory / "orchestra.yaml").write_text(
            "backend: agent\nproviders:\n  anthropic:\n"
            "    models: {worker: claude-sonnet-4-5, cheap: claude-haiku-4-5}\n"
            "workspace:\n  repos:\n    proj:\n      path: proj\n"
        )
        files = {n: "result.txt" if same_file else f"{n}.txt" for n in "abc"}
        with FakeLLMServer(agent_script(files)) as server:
            env = {
                **environment(directory, go=True),
                "ANTHROPIC_API_KEY": "sk-fake-key-0123456789",
                "ANTHROPIC_BASE_URL": server.base_url,
            }
            done = subprocess.run(
                [str(ORCHESTRA), "run", "pipeline.dot"],
                cwd=directory,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        assert done.returncode == 0, done.stdout + done.stderr
        session = done.stdout.split("session ")[1].split()[0]
        branch = f"orchestra/review/{session}"
        on_branch = branch_files(directory / "proj", branch)
        if same_file:
            assert "path: start → fan → join → resolve → exit" in done.stdout
            assert "⚠ merge conflict" in done.stdout
            assert on_branch["result.txt"] == "from a\n"
        else:
            assert "path: start → fan → join → exit" in done.stdout
            assert [on_branch[f"{n}.txt"] for n in "abc"] == ["from a\n", "from b\n", "from c\n"]
        subjects = {
            c.message.decode().splitlines()[0] for c in branch_commits(directory / "proj", branch)
        }
        assert "feat: write the result" in subjects
