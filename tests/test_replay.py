"""Replay: fork a session at a checkpoint and run the fork, on every store."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestra.engine.session import load_session
from orchestra.pipeline import Pipeline, ResumeRefused, replay
from orchestra.store.base import Store
from orchestra.store.cxdb.fake import FakeCxdb
from orchestra_cli.main import cli

SOURCE = """
digraph replayed {
    graph [goal="count"]
    start [shape=Mdiamond]
    one   [shape=parallelogram, tool_command="echo one >> TRACE"]
    two   [shape=parallelogram, tool_command="echo two >> TRACE"]
    three [shape=parallelogram, tool_command="echo three >> TRACE"]
    exit  [shape=Msquare]
    start -> one -> two -> three -> exit
}
"""


def pipeline_source(tmp_path: Path) -> tuple[str, Path]:
    trace = tmp_path / "trace.txt"
    return SOURCE.replace("TRACE", str(trace)), trace


async def checkpoint_of(store: Store, session: str, node: str) -> int:
    state = await load_session(store, session)
    return next(turn for turn, node_id, _ in state.checkpoints if node_id == node)


class TestReplay:
    async def test_fork_runs_only_what_follows_the_checkpoint(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """Replaying from `one`'s checkpoint runs two, three and exit as a new session with
        its own run directory; the original session's turns are untouched."""
        source, trace = pipeline_source(tmp_path)
        first = await Pipeline.load(source, store=any_store, logs_root=tmp_path / "run").run()
        before = await any_store.get_head(int(first.session_id))
        turn = await checkpoint_of(any_store, first.session_id, "one")

        result = await replay(
            first.session_id, turn, store=any_store, logs_root=tmp_path / "replayed"
        )

        assert result.succeeded
        assert result.session_id != first.session_id
        assert trace.read_text().split() == ["one", "two", "three", "two", "three"]
        assert result.completed_nodes == ("start", "one", "two", "three", "exit")
        assert (tmp_path / "replayed" / "two" / "status.json").is_file()
        assert await any_store.get_head(int(first.session_id)) == before
        state = await load_session(any_store, result.session_id)
        assert (state.ended, state.replay_of) == ("success", first.session_id)
        assert state.logs_root == str((tmp_path / "replayed").resolve())

    async def test_turn_that_is_not_a_checkpoint_lists_the_checkpoints(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """Asking for a turn that is not one of the session's checkpoints is refused with
        the list of those it has."""
        source, _ = pipeline_source(tmp_path)
        first = await Pipeline.load(source, store=any_store, logs_root=tmp_path / "run").run()
        with pytest.raises(ResumeRefused, match=r"not a checkpoint.*\(one\)"):
            await replay(first.session_id, 999_999, store=any_store)

    async def test_last_checkpoint_has_nothing_to_replay(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """The exit node's checkpoint ends the session: replaying from it is refused."""
        source, _ = pipeline_source(tmp_path)
        first = await Pipeline.load(source, store=any_store, logs_root=tmp_path / "run").run()
        turn = await checkpoint_of(any_store, first.session_id, "exit")
        with pytest.raises(ResumeRefused, match="nothing after it"):
            await replay(first.session_id, turn, store=any_store)


class TestReplayCommand:
    def test_replay_on_cxdb_from_the_command_line(
        self, cxdb_server: FakeCxdb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`orchestra run`, `status --detail` and `replay --checkpoint` against a CXDB URL:
        the detail lists checkpoint turns and the replay runs from the chosen one."""
        monkeypatch.chdir(tmp_path)
        source, trace = pipeline_source(tmp_path)
        (tmp_path / "p.dot").write_text(source)
        runner = CliRunner()
        url = cxdb_server.url

        ran = runner.invoke(cli, ["run", "p.dot", "--store", url, "--quiet"])
        assert ran.exit_code == 0, ran.output
        detail = runner.invoke(cli, ["status", "1", "--detail", "--store", url])
        assert detail.exit_code == 0, detail.output
        rows = [line.split() for line in detail.output.splitlines()]
        turn = next(
            row[0] for row in rows if row[:1] != [] and row[0].isdigit() and row[1] == "two"
        )

        replayed = runner.invoke(
            cli, ["replay", "1", "--checkpoint", turn, "--store", url, "--quiet"]
        )

        assert replayed.exit_code == 0, replayed.output
        assert trace.read_text().split() == ["one", "two", "three", "three"]
        listing = runner.invoke(cli, ["status", "--store", url])
        assert listing.output.count("replayed") == 2
