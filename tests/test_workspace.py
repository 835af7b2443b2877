"""Git workspaces through `Pipeline.load(...).run()`: real repositories made with dulwich,
the real store, simulated and scripted agents, tool nodes running real commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from dulwich.repo import Repo

from orchestra.backends.agent import AgentBackend
from orchestra.config import Config, ProviderConfig, Providers, RepoConfig
from orchestra.errors import RepositoryError
from orchestra.events import (
    AgentCommitCreated,
    MergeConflict,
    PushFailed,
    SessionBranchCreated,
    WorktreeMerged,
)
from orchestra.llm.client import Client
from orchestra.llm.types import ToolCall, Usage
from orchestra.pipeline import Pipeline
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import EventRecorder, model_calls, model_says
from tests.workspaces import (
    FAN_OUT,
    NodeModel,
    branch_commits,
    branch_files,
    branches,
    checkout_state,
    commit_files,
    config_with,
    git_cli,
    make_repo,
    trailers,
)

LINEAR = """
digraph demo {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    plan  [prompt="Plan the change"]
    edit  [shape=parallelogram, tool_command="echo 'print(2)' >> app.py"]
    look  [shape=parallelogram, tool_command="cat app.py; echo $ATTRACTOR_WORKSPACE > seen.txt"]
    start -> plan -> edit -> look -> exit
}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own working directory: run directories default to
    .orchestra/runs/SESSION there, and tests running at once all have a session 1."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "app", {"app.py": "print(1)\n", "README.md": "app\n"})


async def run(
    source: str, config: Config, store: EmbeddedStore, **kwargs: object
) -> tuple[object, EventRecorder]:
    events = EventRecorder()
    pipeline = Pipeline.load(source, config=config, store=store, **kwargs)  # type: ignore[arg-type]
    result = await pipeline.run(on_event=events)
    return result, events


class TestSessionBranch:
    async def test_the_users_checkout_is_untouched(self, app: Path, store: EmbeddedStore) -> None:
        """HEAD, the branch, the index and every file of the user's checkout, uncommitted
        and untracked ones included, are byte-identical after a run that committed."""
        (app / "app.py").write_text("print('uncommitted')\n")
        (app / "notes.txt").write_text("untracked\n")
        before = checkout_state(app)
        result, events = await run(LINEAR, config_with({"app": app}), store)
        assert result.status == "success"  # type: ignore[attr-defined]
        assert checkout_state(app) == before
        (created,) = events.of(SessionBranchCreated)
        assert created.note == (
            "from branch main; its uncommitted changes are not in the session's worktree"
        )
        assert "orchestra/demo/1" in branches(app)

    async def test_stages_commit_on_the_session_branch_with_trailers(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """The simulated stage and the tool that changed a tracked file each make one commit,
        authored by their node, with the Orchestra-* trailers; the read-only tool none."""
        await run(LINEAR, config_with({"app": app}), store)
        commits = branch_commits(app, "orchestra/demo/1")
        assert [c.author.decode().split(" ")[0] for c in commits[:-1]] == ["edit", "plan"]
        edit, plan = commits[0], commits[1]
        assert trailers(plan) == {
            "Orchestra-Session": "1",
            "Orchestra-Node": "plan",
            "Orchestra-Turn": "end",
            "Orchestra-Model": "simulation",
            "Orchestra-Pipeline": "demo",
        }
        assert edit.message.decode().startswith("chore(edit): echo 'print(2)' >> app.py\n")
        assert branch_files(app, "orchestra/demo/1")["app.py"] == "print(1)\nprint(2)\n"
        assert "simulated/plan.md" in branch_files(app, "orchestra/demo/1")

    async def test_tools_run_in_the_worktree(
        self, app: Path, store: EmbeddedStore, tmp_path: Path
    ) -> None:
        """A tool node runs in the session's worktree, named by ATTRACTOR_WORKSPACE, and
        sees the branch's files, not the user's; the worktree is removed when the run ends."""
        (app / "app.py").write_text("print('mine')\n")
        result, _ = await run(LINEAR, config_with({"app": app}), store)
        assert result.context["tool.output"] == "print(1)\nprint(2)\n"  # type: ignore[attr-defined]
        worktree = tmp_path / "worktrees" / "1" / "session" / "app"  # beside state.db
        assert not worktree.exists()
        assert not (app / "seen.txt").exists()

    async def test_the_user_and_the_session_do_not_see_each_others_commits(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """The user commits on their branch while the session runs: the session's later
        stage does not see it, and the user's branch does not get the session's commits."""

        class UserCommits:
            async def execute(self, node, context, graph, stage):  # type: ignore[no-untyped-def]
                commit_files(app, {"user.txt": "the user's work\n"}, "user work")
                from orchestra.outcome import Outcome

                return Outcome.success("the user committed")

        source = """
        digraph demo {
            start [shape=Mdiamond]
            exit  [shape=Msquare]
            meanwhile [type="user_commits"]
            edit  [shape=parallelogram, tool_command="echo more >> README.md"]
            look  [shape=parallelogram, tool_command="ls"]
            start -> edit -> meanwhile -> look -> exit
        }
        """
        result, _ = await run(
            source, config_with({"app": app}), store, handlers={"user_commits": UserCommits()}
        )
        assert "user.txt" not in result.context["tool.output"]  # type: ignore[attr-defined]
        assert "user.txt" not in branch_files(app, "orchestra/demo/1")
        assert "more" not in (app / "README.md").read_text()
        with Repo(str(app)) as repo:
            user_head = repo.refs[b"refs/heads/main"]
        assert all(c.id != user_head for c in branch_commits(app, "orchestra/demo/1"))

    async def test_git_reads_what_dulwich_wrote(self, app: Path, store: EmbeddedStore) -> None:
        """`git fsck` finds the repository sound and `git log` shows the session's commits."""
        await run(LINEAR, config_with({"app": app}), store)
        git_cli(app, "fsck", "--strict")
        log = git_cli(app, "log", "--format=%an|%s", "orchestra/demo/1")
        assert "edit|chore(edit): echo 'print(2)' >> app.py" in log
        assert git_cli(app, "status", "--porcelain") == ""


class TestBadRepositories:
    async def test_not_a_repository(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """A path that is not a git repository fails before any session is recorded."""
        plain = tmp_path / "plain"
        plain.mkdir()
        with pytest.raises(RepositoryError, match="is not a git repository; run `git init`"):
            await run(LINEAR, config_with({"app": plain}), store)
        assert await store.list_contexts() == []

    async def test_an_empty_repository(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """A repository with no commit says there is nothing to start from, and how to fix
        it."""
        empty = tmp_path / "empty"
        empty.mkdir()
        Repo.init(str(empty))
        with pytest.raises(RepositoryError, match=r"has no commits yet .* commit --allow-empty"):
            await run(LINEAR, config_with({"app": empty}), store)

    async def test_a_detached_head(self, app: Path, store: EmbeddedStore) -> None:
        """A detached HEAD is a fine start: the branch starts at its commit."""
        first = branch_commits(app, "main")[0].id
        commit_files(app, {"later.txt": "later\n"}, "later")
        (app / ".git" / "HEAD").write_text(first.decode() + "\n")
        result, _ = await run(LINEAR, config_with({"app": app}), store)
        assert result.status == "success"  # type: ignore[attr-defined]
        assert branch_commits(app, "orchestra/demo/1")[-1].id == first
        assert (app / ".git" / "HEAD").read_text() == first.decode() + "\n"

    async def test_a_bare_repository(self, app: Path, tmp_path: Path, store: EmbeddedStore) -> None:
        """A bare repository works: worktrees need no checkout of the user's."""
        bare = tmp_path / "bare.git"
        Repo.init_bare(str(bare), mkdir=True)
        git_cli(app, "push", str(bare), "main")
        (bare / "HEAD").write_text("ref: refs/heads/main\n")
        result, _ = await run(LINEAR, config_with({"app": bare}), store)
        assert result.status == "success"  # type: ignore[attr-defined]
        assert branch_files(bare, "orchestra/demo/1")["app.py"] == "print(1)\nprint(2)\n"

    async def test_an_existing_branch_is_never_clobbered(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """A new session whose branch name is taken (its state was deleted) refuses, and the
        branch keeps its commits."""
        with Repo(str(app)) as repo:
            repo.refs[b"refs/heads/orchestra/demo/1"] = repo.refs[b"HEAD"]
        commit_before = branch_commits(app, "orchestra/demo/1")[0].id
        with pytest.raises(RepositoryError, match="branch orchestra/demo/1 already exists"):
            await run(LINEAR, config_with({"app": app}), store)
        assert branch_commits(app, "orchestra/demo/1")[0].id == commit_before

    async def test_a_path_with_spaces_and_unicode(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A repository under a path with spaces and non-ASCII letters works."""
        odd = make_repo(tmp_path / "my projects" / "café app", {"app.py": "print(1)\n"})
        result, _ = await run(LINEAR, config_with({"app": odd}), store)
        assert result.status == "success"  # type: ignore[attr-defined]
        assert branch_files(odd, "orchestra/demo/1")["app.py"] == "print(1)\nprint(2)\n"

    async def test_a_missing_path_is_cloned_from_the_remote(
        self, app: Path, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """With a remote, a missing path is cloned first (shallow with clone_depth)."""
        commit_files(app, {"second.txt": "2\n"}, "second")
        target = tmp_path / "clone"
        repo = RepoConfig(path=target, remote=str(app), clone_depth=1)
        result, _ = await run(LINEAR, config_with({"app": repo}), store)
        assert result.status == "success"  # type: ignore[attr-defined]
        assert (target / "second.txt").is_file()
        assert (target / ".git" / "shallow").is_file()


SCRIPTED = Config(
    backend="agent",
    providers=Providers(
        default="anthropic",
        by_name={"anthropic": ProviderConfig(models={"worker": "claude-sonnet-4-5"})},
    ),
)


def writes(node: str, path: str, text: str) -> list[object]:
    call = ToolCall(f"{node}-1", "write_file", {"file_path": path, "content": text})
    usage = Usage(10, 5)
    return [
        model_calls(call, usage=usage, model="claude-sonnet-4-5", provider="anthropic"),
        model_says(f"{node} done", usage=usage, model="claude-sonnet-4-5", provider="anthropic"),
    ]


def agents(config: Config, scripts: dict[str, list[object]]) -> AgentBackend:
    return AgentBackend(config, Client({"anthropic": NodeModel(scripts)}))  # type: ignore[arg-type]


class TestParallelAgents:
    async def test_same_file_in_three_branches_is_a_routed_conflict(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """Three agents writing result.txt: the first merges, the other two conflict; the
        fan-in is PARTIAL_SUCCESS with the conflict text in parallel.merge_conflicts, and
        the graph routes to the resolver. Nothing is silently overwritten."""
        config = config_with({"app": app}, **vars_of(SCRIPTED))
        scripts = {f"[{n}]": writes(n, "result.txt", f"branch {n}\n") for n in "abc"}
        result, events = await run(FAN_OUT, config, store, backend=agents(config, scripts))
        assert result.completed_nodes == ("start", "fan", "join", "resolve", "exit")  # type: ignore[attr-defined]
        conflicts = result.context["parallel.merge_conflicts"]["app"]  # type: ignore[attr-defined]
        assert set(conflicts) == {"result.txt"}
        assert "<<<<<<< ours\nbranch a\n=======\nbranch " in conflicts["result.txt"]
        assert branch_files(app, "orchestra/review/1")["result.txt"] == "branch a\n"
        assert sorted(e.branch for e in events.of(MergeConflict)) == [
            "orchestra/review/1-b",
            "orchestra/review/1-c",
        ]
        assert "orchestra/review/1-b" in branches(app)

    async def test_different_files_all_merge(self, app: Path, store: EmbeddedStore) -> None:
        """Three agents writing their own files: all three reach the session branch, each
        commit authored by its agent and model; the branch worktrees and refs are gone."""
        config = config_with({"app": app}, **vars_of(SCRIPTED))
        scripts = {f"[{n}]": writes(n, f"{n}.txt", f"from {n}\n") for n in "abc"}
        result, events = await run(FAN_OUT, config, store, backend=agents(config, scripts))
        assert result.completed_nodes == ("start", "fan", "join", "exit")  # type: ignore[attr-defined]
        files = branch_files(app, "orchestra/review/1")
        assert {files[f"{n}.txt"] for n in "abc"} == {"from a\n", "from b\n", "from c\n"}
        authors = {c.author.decode() for c in branch_commits(app, "orchestra/review/1")}
        assert "a (anthropic/claude-sonnet-4-5) <orchestra@localhost>" in authors
        assert [e.branch for e in events.of(WorktreeMerged)] == [
            f"orchestra/review/1-{n}" for n in "abc"
        ]
        assert branches(app) == ["main", "orchestra/review/1"]
        commit = next(e for e in events.of(AgentCommitCreated) if e.node_id == "a")
        assert (commit.files, commit.summary) == (("a.txt",), "chore(a): update a.txt")
        git_cli(app, "fsck", "--strict")

    async def test_a_read_only_turn_makes_no_commit(self, app: Path, store: EmbeddedStore) -> None:
        """An agent that only reads makes no commit."""
        source = (
            "digraph d { start [shape=Mdiamond]; exit [shape=Msquare]\n"
            'a [prompt="[a] read"]; start -> a -> exit }'
        )
        read = ToolCall("r1", "read_file", {"file_path": "app.py"})
        usage = Usage(1, 1)
        script = {
            "[a]": [
                model_calls(read, usage=usage, model="claude-sonnet-4-5", provider="anthropic"),
                model_says("read it", usage=usage, model="claude-sonnet-4-5", provider="anthropic"),
            ]
        }
        config = config_with({"app": app}, **vars_of(SCRIPTED))
        _, events = await run(source, config, store, backend=agents(config, script))
        assert events.of(AgentCommitCreated) == []
        assert len(branch_commits(app, "orchestra/d/1")) == 1

    async def test_two_fan_outs_in_sequence_and_a_nested_one(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """Tool branches editing tracked files: a first fan-out, then a second whose branch
        has its own fan-out inside; every change reaches the session branch."""
        files = {f"{n}.txt": "0\n" for n in ("a", "b", "c", "d", "e")}
        commit_files(app, files, "files to edit")
        source = """
        digraph seq {
            start [shape=Mdiamond]; exit [shape=Msquare]
            f1 [shape=component]; j1 [shape=tripleoctagon]
            a [shape=parallelogram, tool_command="echo a >> a.txt"]
            b [shape=parallelogram, tool_command="echo b >> b.txt"]
            f2 [shape=component]; j2 [shape=tripleoctagon]
            c [shape=parallelogram, tool_command="echo c >> c.txt"]
            inner [shape=component]; ij [shape=tripleoctagon]
            d [shape=parallelogram, tool_command="echo d >> d.txt"]
            e [shape=parallelogram, tool_command="echo e >> e.txt"]
            after [shape=parallelogram, tool_command="echo after >> a.txt"]
            start -> f1
            f1 -> a -> j1
            f1 -> b -> j1
            j1 -> f2
            f2 -> c -> j2
            f2 -> inner
            inner -> d -> ij
            inner -> e -> ij
            ij -> after -> j2
            j2 -> exit
        }
        """
        result, _ = await run(source, config_with({"app": app}), store)
        assert result.status == "success"  # type: ignore[attr-defined]
        got = branch_files(app, "orchestra/seq/1")
        assert got["a.txt"] == "0\na\nafter\n"
        assert [got[f"{n}.txt"] for n in "bcde"] == [f"0\n{n}\n" for n in "bcde"]
        assert branches(app) == ["main", "orchestra/seq/1"]


class TestPush:
    async def test_on_completion_pushes_the_branch(
        self, app: Path, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """push: on_completion sends the session branch to the remote once it succeeds."""
        remote = tmp_path / "remote.git"
        Repo.init_bare(str(remote), mkdir=True)
        repo = RepoConfig(path=app, push="on_completion", remote=str(remote))
        await run(LINEAR, config_with({"app": repo}), store)
        assert branch_files(remote, "orchestra/demo/1") == branch_files(app, "orchestra/demo/1")

    async def test_an_unreachable_remote_is_a_warning(
        self, app: Path, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """push: on_checkpoint to a remote that is not there warns (PushFailed) after each
        checkpoint that moved the branch, and the run still succeeds."""
        repo = RepoConfig(path=app, push="on_checkpoint", remote=str(tmp_path / "gone.git"))
        result, events = await run(LINEAR, config_with({"app": repo}), store)
        assert result.status == "success"  # type: ignore[attr-defined]
        failed = events.of(PushFailed)
        assert len(failed) >= 2
        assert "gone.git" in failed[0].remote

    async def test_never_pushes_nothing(
        self, app: Path, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """push: never (the default) leaves the remote alone."""
        remote = tmp_path / "remote.git"
        Repo.init_bare(str(remote), mkdir=True)
        await run(LINEAR, config_with({"app": RepoConfig(path=app, remote=str(remote))}), store)
        assert branches(remote) == []


def vars_of(config: Config) -> dict[str, object]:
    """A Config's settings as keywords, to combine with repositories."""
    return {"backend": config.backend, "providers": config.providers}


class TestWithoutRepositories:
    SHARED = """
    digraph shared {
        start [shape=Mdiamond]; exit [shape=Msquare]
        fan [shape=component]; join [shape=tripleoctagon]
        a [prompt="[a] write"]; b [prompt="[b] write"]
        start -> fan; fan -> a -> join; fan -> b -> join; join -> exit
    }
    """

    def test_parallel_agents_get_a_lint_warning(self) -> None:
        """A fan-out of agents that may write files is warned about at compile time; agents
        that cannot write (direct) or have their own workspace= are not."""
        from orchestra import prepare_pipeline
        from orchestra.validation.rules import SHARED_WORKSPACE_RULE

        _, found = prepare_pipeline(self.SHARED)
        warning = next(d for d in found if d.rule == SHARED_WORKSPACE_RULE)
        assert warning.node_id == "fan"
        assert "(a, b) would share the working directory" in warning.message
        assert "workspace.repos" in (warning.fix or "")
        own = self.SHARED.replace('"[b] write"', '"[b] write", backend="direct"')
        assert all(d.rule != SHARED_WORKSPACE_RULE for d in prepare_pipeline(own)[1])

    def test_with_repositories_the_warning_is_dropped(self, app: Path) -> None:
        """With workspace.repos, each branch has a worktree: the pipeline carries no
        warning about sharing."""
        pipeline = Pipeline.load(self.SHARED, config=config_with({"app": app}))
        assert [d.rule for d in pipeline.diagnostics] == []

    async def test_each_branch_agent_works_in_its_own_directory(
        self, tmp_path: Path, store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without repositories, the two agents writing result.txt each write their own,
        under the run directory, and the working directory gets neither."""
        monkeypatch.chdir(tmp_path)
        scripts = {f"[{n}]": writes(n, "result.txt", f"branch {n}\n") for n in "ab"}
        config = Config(**vars_of(SCRIPTED))  # type: ignore[arg-type]
        result, _ = await run(
            self.SHARED, config, store, backend=agents(config, scripts), logs_root=tmp_path / "run"
        )
        assert result.status == "success"  # type: ignore[attr-defined]
        for n in "ab":
            own = tmp_path / "run" / "branches" / n / "workspace" / "result.txt"
            assert own.read_text() == f"branch {n}\n"
        assert not (tmp_path / "result.txt").exists()

    def test_compile_reads_orchestra_yaml_for_it(self, app: Path, tmp_path: Path) -> None:
        """`orchestra compile` warns about sharing, unless the orchestra.yaml beside the
        pipeline gives each branch a worktree."""
        from click.testing import CliRunner

        from orchestra_cli.main import cli

        dot = tmp_path / "shared.dot"
        dot.write_text(self.SHARED)
        warned = CliRunner().invoke(cli, ["compile", str(dot)])
        assert "warning parallel_shared_workspace" in warned.stdout
        (tmp_path / "orchestra.yaml").write_text(
            f"workspace:\n  repos:\n    app:\n      path: {app}\n"
        )
        quiet = CliRunner().invoke(cli, ["compile", str(dot)])
        assert quiet.exit_code == 0
        assert "valid, 0 errors, 0 warnings" in quiet.stdout


class TestLocks:
    async def test_a_stale_object_lock_is_cleared(self, app: Path, store: EmbeddedStore) -> None:
        """A lock file a killed process left on an object the run must write is removed
        (it is older than a minute) and the commit goes through."""
        import os

        from dulwich.objects import Blob

        blob = Blob.from_string(b"print(1)\nprint(2)\n").id.decode()
        lock = app / ".git" / "objects" / blob[:2] / f"{blob[2:]}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_bytes(b"half an object")
        os.utime(lock, (0, 0))
        result, _ = await run(LINEAR, config_with({"app": app}), store)
        assert result.status == "success"  # type: ignore[attr-defined]
        assert branch_files(app, "orchestra/demo/1")["app.py"] == "print(1)\nprint(2)\n"
        assert not lock.exists()

    async def test_parallel_agents_writing_the_same_content(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """Three agents writing the same file with the same content at once: the commits do
        not trip over each other's object locks, and the merges agree."""
        config = config_with({"app": app}, **vars_of(SCRIPTED))
        scripts = {f"[{n}]": writes(n, "same.txt", "identical\n") for n in "abc"}
        result, _ = await run(FAN_OUT, config, store, backend=agents(config, scripts))
        assert result.completed_nodes == ("start", "fan", "join", "exit")  # type: ignore[attr-defined]
        assert branch_files(app, "orchestra/review/1")["same.txt"] == "identical\n"


class TestGitLayer:
    def test_a_path_named_git_is_never_committed(self, app: Path, tmp_path: Path) -> None:
        """An agent that writes over the worktree's .git file (or under a .git directory)
        gets nothing of it committed: git forbids .git in a tree."""
        from orchestra.workspace import git

        with Repo(str(app)) as repo:
            head = repo.refs[b"HEAD"]
            git.ensure_branch(repo, b"refs/heads/w", head)
            worktree = git.add_worktree(repo, tmp_path / "wt", b"refs/heads/w", "w")
        (tmp_path / "wt" / "sub").mkdir()
        (tmp_path / "wt" / "sub" / ".git").write_text("not a repo\n")
        (tmp_path / "wt" / "ok.txt").write_text("fine\n")
        sha = git.commit_paths(
            worktree, ["sub/.git", ".git", "ok.txt"], message="m", author="a <a@b>"
        )
        assert sha is not None
        assert set(branch_files(app, "w")) == {"app.py", "README.md", "ok.txt"}
        git_cli(app, "fsck", "--strict")


class TestResume:
    async def test_a_missing_repository_leaves_the_session_resumable(
        self, app: Path, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Resuming while the repository is away fails with what is wrong and records
        nothing; once it is back, the resume runs the session to its end."""
        import anyio

        from orchestra.engine.session import load_session
        from orchestra.outcome import Outcome
        from orchestra.pipeline import resume

        running = anyio.Event()

        class Blocks:
            async def execute(self, node, context, graph, stage):  # type: ignore[no-untyped-def]
                if stage.resumed:
                    return Outcome.success("went on")
                running.set()
                await anyio.sleep_forever()

        source = """
        digraph demo {
            start [shape=Mdiamond]; exit [shape=Msquare]
            edit [shape=parallelogram, tool_command="echo more >> README.md"]
            wait [type="blocks"]
            start -> edit -> wait -> exit
        }
        """
        config = config_with({"app": app})
        handlers = {"blocks": Blocks()}
        pipeline = Pipeline.load(source, config=config, store=store, handlers=handlers)
        async with anyio.create_task_group() as group:
            group.start_soon(pipeline.run)
            await running.wait()
            group.cancel_scope.cancel()
        away = tmp_path / "away"
        app.rename(away)
        with pytest.raises(RepositoryError, match="does not exist"):
            await resume("1", store=store, config=config, handlers=handlers)
        assert (await load_session(store, "1")).ended == ""  # not finished: resumable
        away.rename(app)
        result = await resume("1", store=store, config=config, handlers=handlers)
        assert result.status == "success"
        assert branch_files(app, "orchestra/demo/1")["README.md"] == "app\nmore\n"

    def test_a_forged_git_file_cannot_point_removal_elsewhere(self, tmp_path: Path) -> None:
        """Removing a worktree whose .git file was rewritten (an agent can write there) to
        name another directory called worktrees/… leaves that directory alone."""
        from orchestra.workspace import git

        victim = tmp_path / "elsewhere" / "worktrees" / "precious"
        victim.mkdir(parents=True)
        (victim / "keep.txt").write_text("keep\n")
        forged = tmp_path / "wt"
        forged.mkdir()
        (forged / ".git").write_text(f"gitdir: {victim}\n")
        git.remove_worktree_dir(forged)
        assert not forged.exists()
        assert (victim / "keep.txt").read_text() == "keep\n"


class TestCleanupKeepsWhatItCannotVouchFor:
    async def test_another_stores_worktree_and_its_branch_stay(
        self, app: Path, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A worktree of a session this store does not have (another store's, maybe running)
        is kept, and so is the branch checked out in it, each with the reason."""
        from orchestra.workspace import git
        from orchestra.workspace.cleanup import cleanup

        with Repo(str(app)) as repo:
            git.ensure_branch(repo, b"refs/heads/orchestra/demo/7", repo.refs[b"HEAD"])
            worktree = tmp_path / "worktrees" / "7" / "session" / "app"
            git.add_worktree(repo, worktree, b"refs/heads/orchestra/demo/7", "orchestra-7-app")
        report = await cleanup(store, config_with({"app": app}), older_than=0)
        assert report.removed_worktrees == report.removed_branches == ()
        reasons = {kept.what: kept.reason for kept in report.kept}
        assert reasons[str(tmp_path / "worktrees" / "7")].startswith("session 7 is not in")
        assert reasons["app: orchestra/demo/7"] == f"checked out in {worktree}"
        assert (worktree / "app.py").is_file()
