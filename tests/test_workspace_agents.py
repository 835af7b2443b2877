"""Agents in git workspaces: commit messages from the cheap tier, repository tools, several
repositories under one root, and time travel (resume at a turn, replay at a checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.backends.agent import AgentBackend
from orchestra.backends.configured import ConfiguredBackend, Settings
from orchestra.config import Config, ProviderConfig, Providers
from orchestra.engine.session import load_session
from orchestra.events import AgentCommitCreated
from orchestra.llm.client import Client
from orchestra.llm.errors import ServerError
from orchestra.llm.types import Response, ToolCall, Usage
from orchestra.pipeline import Pipeline, replay, resume
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import EventRecorder, model_calls, model_says
from tests.workspaces import (
    NodeModel,
    branch_commits,
    branch_files,
    config_with,
    make_repo,
    trailers,
)

MODEL = "claude-sonnet-4-5"
PROVIDERS = Providers(
    default="anthropic",
    by_name={"anthropic": ProviderConfig(models={"worker": MODEL, "cheap": "claude-haiku-4-5"})},
)
ONE_AGENT = """
digraph d {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    a     [prompt="[a] do the work"]
    start -> a -> exit
}
"""
TWO_AGENTS = """
digraph d {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    a     [prompt="[a] first part"]
    b     [prompt="[b] second part"]
    start -> a -> b -> exit
}
"""


def call(*calls: ToolCall) -> Response:
    return model_calls(*calls, usage=Usage(10, 5), model=MODEL, provider="anthropic")


def say(text: str) -> Response:
    return model_says(text, usage=Usage(10, 5), model=MODEL, provider="anthropic")


def write(path: str, text: str, call_id: str = "w") -> ToolCall:
    return ToolCall(call_id, "write_file", {"file_path": path, "content": text})


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own working directory: run directories default to
    .orchestra/runs/SESSION there, and tests running at once all have a session 1."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "app", {"app.py": "print(1)\n"})


def configured(config: Config, model: NodeModel) -> ConfiguredBackend:
    """The backend a run builds from orchestra.yaml, with the scripted model as provider."""
    settings = Settings(config, {"ANTHROPIC_API_KEY": "sk-test"})
    return ConfiguredBackend(settings, client=Client({"anthropic": model}))  # type: ignore[dict-item]


class TestCommitMessages:
    async def test_the_cheap_tier_writes_the_message_from_the_diff(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """The commit of a turn gets the cheap model's message, asked with the diff; the
        trailers follow it."""
        config = config_with({"app": app}, backend="agent", providers=PROVIDERS)
        model = NodeModel(
            {
                "[a]": [call(write("notes.md", "# Notes\n")), say("done")],
                "changed these files": [say("docs: add notes\n\nStart the notes file.")],
            }
        )
        backend = configured(config, model)
        await Pipeline.load(ONE_AGENT, config=config, store=store, backend=backend).run()
        commit = branch_commits(app, "orchestra/d/1")[0]
        assert commit.message.decode().startswith("docs: add notes\n\nStart the notes file.\n\n")
        assert trailers(commit)["Orchestra-Model"] == f"anthropic/{MODEL}"
        asked = next(r for r in model.requests if r.model == "claude-haiku-4-5")
        assert "+# Notes" in asked.messages[-1].text

    async def test_a_failing_model_falls_back_to_a_plain_message(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """When the cheap model fails, the commit names its files and the run goes on."""
        config = config_with({"app": app}, backend="agent", providers=PROVIDERS)
        model = NodeModel(
            {
                "[a]": [call(write("notes.md", "x\n")), say("done")],
                "changed these files": [ServerError("down", provider="anthropic")],
            }
        )
        backend = configured(config, model)
        result = await Pipeline.load(ONE_AGENT, config=config, store=store, backend=backend).run()
        assert result.status == "success"
        subject = branch_commits(app, "orchestra/d/1")[0].message.decode().splitlines()[0]
        assert subject == "chore(a): update notes.md"


class TestRepositoryTools:
    async def test_a_repo_tool_runs_in_the_worktree(self, app: Path, store: EmbeddedStore) -> None:
        """workspace.tools.app.run-tests is offered as app__run-tests and runs its command in
        the session's worktree, whose files it sees."""
        config = config_with(
            {"app": app},
            backend="agent",
            providers=PROVIDERS,
            tools={"app": {"run-tests": "cat app.py; pwd"}},
        )
        model = NodeModel({"[a]": [call(ToolCall("t", "app__run-tests", {})), say("tests pass")]})
        events = EventRecorder()
        await Pipeline.load(
            ONE_AGENT,
            config=config,
            store=store,
            backend=AgentBackend(config, Client({"anthropic": model})),  # type: ignore[dict-item]
        ).run(on_event=events)
        assert "app__run-tests" in [t.name for t in model.requests[0].tools]
        result = model.requests[1].messages[-1].content[0].tool_result
        assert result is not None
        assert "print(1)" in result.content
        assert "/worktrees/1/session/app" in result.content
        assert events.of(AgentCommitCreated) == []


class TestSeveralRepositories:
    async def test_agents_see_every_repository_under_one_root(
        self, app: Path, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """With two repositories the agent's root holds app/ and lib/; a file written under
        lib/ is committed in lib only."""
        lib = make_repo(tmp_path / "lib", {"lib.py": "x = 1\n"})
        config = config_with({"app": app, "lib": lib}, backend="agent", providers=PROVIDERS)
        model = NodeModel({"[a]": [call(write("lib/new.py", "y = 2\n")), say("done")]})
        backend = AgentBackend(config, Client({"anthropic": model}))  # type: ignore[dict-item]
        await Pipeline.load(ONE_AGENT, config=config, store=store, backend=backend).run()
        assert branch_files(lib, "orchestra/d/1")["new.py"] == "y = 2\n"
        assert "new.py" not in branch_files(app, "orchestra/d/1")
        assert len(branch_commits(app, "orchestra/d/1")) == 1


class TestTimeTravel:
    async def test_resume_at_a_turn_branches_from_that_turns_commit(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """`resume --turn T` at the turn that wrote x.txt forks a new session whose branch
        starts at that turn's commit (no y.txt); the original branch keeps both files."""
        config = config_with({"app": app}, backend="agent", providers=PROVIDERS)
        first = NodeModel(
            {"[a]": [call(write("x.txt", "x\n")), call(write("y.txt", "y\n", "w2")), say("ok")]}
        )
        backend = AgentBackend(config, Client({"anthropic": first}))  # type: ignore[dict-item]
        await Pipeline.load(ONE_AGENT, config=config, store=store, backend=backend).run()
        state = await load_session(store, "1")
        turn = next(
            t
            for t, _, kind, entries in state.records
            if kind == "agent.tools"
            and any(e.get("name") == "write_file" for e in entries.values())
        )
        again = NodeModel({"[a]": [say("done from the fork")]})
        fork = await resume(
            "1",
            turn=turn,
            store=store,
            config=config,
            backend=AgentBackend(config, Client({"anthropic": again})),  # type: ignore[dict-item]
        )
        assert fork.status == "success"
        forked = branch_files(app, f"orchestra/d/{fork.session_id}")
        assert "x.txt" in forked
        assert "y.txt" not in forked
        assert {"x.txt", "y.txt"} <= set(branch_files(app, "orchestra/d/1"))

    async def test_replay_from_a_checkpoint_leaves_the_original_branch(
        self, app: Path, store: EmbeddedStore
    ) -> None:
        """Replaying from a's checkpoint makes a new branch at a's commit; b runs again on
        it, and the original branch is unchanged."""
        config = config_with({"app": app}, backend="agent", providers=PROVIDERS)
        model = NodeModel(
            {
                "[a]": [call(write("a.txt", "a\n")), say("ok")],
                "[b]": [
                    call(write("b.txt", "first\n")),
                    say("ok"),
                    call(write("b.txt", "second\n")),
                    say("ok"),
                ],
            }
        )
        backend = AgentBackend(config, Client({"anthropic": model}))  # type: ignore[dict-item]
        await Pipeline.load(TWO_AGENTS, config=config, store=store, backend=backend).run()
        original = [c.id for c in branch_commits(app, "orchestra/d/1")]
        state = await load_session(store, "1")
        checkpoint = next(turn for turn, node, _ in state.checkpoints if node == "a")
        fork = await replay("1", checkpoint, store=store, config=config, backend=backend)
        assert [c.id for c in branch_commits(app, "orchestra/d/1")] == original
        files = branch_files(app, f"orchestra/d/{fork.session_id}")
        assert (files["a.txt"], files["b.txt"]) == ("a\n", "second\n")
        assert branch_commits(app, f"orchestra/d/{fork.session_id}")[1].id == original[1]
