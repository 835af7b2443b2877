"""`orchestra export` and ``orchestra.export.export_session``: a session copied turn for
turn between the embedded store and CXDB, then listed, detailed and resumed there."""

from __future__ import annotations

import json
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from click.testing import CliRunner

from orchestra.engine.session import CHECKPOINT, SessionState, load_session, session_history
from orchestra.errors import ContextNotFound, StoreError
from orchestra.events import Event, StageStarted
from orchestra.export import export_session
from orchestra.interviewer.base import Answer, AutoApproveInterviewer, CallbackInterviewer, Question
from orchestra.pipeline import Pipeline, resume
from orchestra.store.base import Store, content_hash
from orchestra.store.cxdb.fake import FakeCxdb
from orchestra.store.cxdb.store import CxdbStore
from orchestra.store.embedded import EmbeddedStore
from orchestra_cli.main import cli

SHARED = """
digraph shared {
    graph [goal="share a run"]
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    plan  [prompt="plan it"]
    build [shape=parallelogram, tool_command="echo built >> ran.txt"]
    start -> plan -> build -> exit
}
"""
GATED = SHARED.replace("plan -> build", "plan -> gate -> build").replace(
    "exit  [shape=Msquare]", 'exit  [shape=Msquare]\n    gate  [shape=hexagon, label="Go on?"]'
)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (tool commands write there) without CXDB_URL."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CXDB_URL", raising=False)
    return tmp_path


@pytest.fixture
async def local(here: Path) -> AsyncIterator[EmbeddedStore]:
    store = await EmbeddedStore.open(here / "local.db")
    yield store
    await store.close()


@pytest.fixture
async def cxdb(cxdb_server: FakeCxdb) -> AsyncIterator[CxdbStore]:
    store = await CxdbStore.open(cxdb_server.url)
    yield store
    await store.close()


async def run_shared(store: Store, here: Path) -> str:
    """Run SHARED to success on ``store``; its session id."""
    result = await Pipeline.load(SHARED, store=store, logs_root=here / "run").run()
    assert result.succeeded
    return result.session_id


async def stop_at_the_gate(store: Store, here: Path) -> str:
    """Run GATED on ``store`` and stop it while the human gate waits, as Ctrl-C would."""

    async def never(question: Question) -> Answer:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    pipeline = Pipeline.load(
        GATED, store=store, logs_root=here / "run", interviewer=CallbackInterviewer(never)
    )
    with anyio.CancelScope() as scope:

        def at_the_gate(event: Event) -> None:
            if isinstance(event, StageStarted) and event.node_id == "gate":
                scope.cancel()

        await pipeline.run(on_event=at_the_gate)
    assert pipeline.session_id is not None
    return pipeline.session_id


def portable(state: SessionState) -> dict[str, Any]:
    """A session's state without what depends on the store holding it: its id, turn ids
    and the times the store (not the payload) keeps."""
    fields = attrs.asdict(state, recurse=False)
    for name in ("session_id", "head_turn_id", "updated_ms", "checkpoints"):
        del fields[name]
    fields["checkpoints"] = [(node, ms) for _, node, ms in state.checkpoints]
    return fields


class TestExportSession:
    async def test_copy_on_cxdb_has_the_same_state(
        self, local: EmbeddedStore, cxdb: CxdbStore, here: Path
    ) -> None:
        """The copy folds into the same completed nodes, outcomes and context."""
        session = await run_shared(local, here)
        copied = await export_session(local, session, cxdb)
        original, copy = await load_session(local, session), await load_session(cxdb, copied)
        assert copy.completed_nodes == ["start", "plan", "build", "exit"]
        assert copy.context
        assert copy.node_outcomes
        assert portable(copy) == portable(original)
        assert copy.status == "success"

    async def test_turns_are_copied_byte_for_byte_with_chained_parents(
        self, local: EmbeddedStore, cxdb: CxdbStore, here: Path
    ) -> None:
        """Each turn keeps its type id, version and payload bytes, in order, and each is the
        parent of the next."""
        session = await run_shared(local, here)
        copied = await export_session(local, session, cxdb)
        source, target = await session_history(local, session), await session_history(cxdb, copied)
        assert [(t.type_id, t.type_version, t.payload) for t in target] == [
            (t.type_id, t.type_version, t.payload) for t in source
        ]
        assert [t.parent_turn_id for t in target] == [0, *(t.turn_id for t in target[:-1])]
        assert [t.depth for t in target] == list(range(len(source)))

    async def test_the_dot_source_comes_along(
        self, local: EmbeddedStore, cxdb: CxdbStore, here: Path
    ) -> None:
        """The blob SessionStarted names (the DOT source) is readable on the target."""
        session = await run_shared(local, here)
        copied = await export_session(local, session, cxdb)
        state = await load_session(cxdb, copied)
        assert await cxdb.get_blob(state.dot_blob) == SHARED.encode()
        assert state.dot_hash == content_hash(SHARED.encode()).hex()

    async def test_exporting_back_gives_the_same_state_again(
        self, local: EmbeddedStore, cxdb: CxdbStore, here: Path
    ) -> None:
        """Embedded → CXDB → a fresh embedded store keeps the state, turn for turn."""
        session = await run_shared(local, here)
        on_server = await export_session(local, session, cxdb)
        back_store = await EmbeddedStore.open(here / "back.db")
        try:
            back = await export_session(cxdb, on_server, back_store)
            assert portable(await load_session(back_store, back)) == portable(
                await load_session(local, session)
            )
            assert [t.payload for t in await session_history(back_store, back)] == [
                t.payload for t in await session_history(local, session)
            ]
        finally:
            await back_store.close()

    async def test_copy_resumes_on_the_target(
        self, local: EmbeddedStore, cxdb: CxdbStore, here: Path
    ) -> None:
        """A session stopped at a human gate, exported, resumes on the server without
        running its finished stages again; the original is left as it was."""
        session = await stop_at_the_gate(local, here)
        copied = await export_session(local, session, cxdb)
        assert not (here / "ran.txt").exists()
        result = await resume(copied, store=cxdb, interviewer=AutoApproveInterviewer())
        assert result.succeeded
        assert list(result.completed_nodes) == ["start", "plan", "gate", "build", "exit"]
        assert (here / "ran.txt").read_text() == "built\n"
        assert (await load_session(local, session)).ended == "interrupted"  # as it was

    async def test_fork_arrives_as_one_history(
        self, local: EmbeddedStore, cxdb: CxdbStore, here: Path
    ) -> None:
        """A session forked at a checkpoint is copied with its ancestors' turns."""
        session = await run_shared(local, here)
        turns = await session_history(local, session)
        plan_checkpoint = [t for t in turns if t.type_id == CHECKPOINT][1]
        fork = await local.fork_context(plan_checkpoint.turn_id)
        copied = await export_session(local, str(fork.context_id), cxdb)
        state = await load_session(cxdb, copied)
        assert state.completed_nodes == ["start", "plan"]
        assert len(await session_history(cxdb, copied)) == plan_checkpoint.depth + 1

    async def test_unknown_session_leaves_the_target_untouched(
        self, local: EmbeddedStore, cxdb: CxdbStore
    ) -> None:
        """An unknown session raises ContextNotFound before anything is written."""
        with pytest.raises(ContextNotFound, match="session 99 does not exist"):
            await export_session(local, "99", cxdb)
        assert await cxdb.list_contexts() == []

    async def test_session_id_must_be_a_number(self, local: EmbeddedStore, cxdb: CxdbStore) -> None:
        """A session id that is not a number is a StoreError saying so."""
        with pytest.raises(StoreError, match="'latest' is not a session id"):
            await export_session(local, "latest", cxdb)

    async def test_session_without_turns_is_refused(
        self, local: EmbeddedStore, cxdb: CxdbStore
    ) -> None:
        """A session with no turns yet (created, never started) has nothing to export."""
        empty = await local.create_context()
        with pytest.raises(StoreError, match="has no turns yet"):
            await export_session(local, str(empty.context_id), cxdb)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


class TestExportCommand:
    @pytest.fixture
    def ran(self, here: Path) -> str:
        """SHARED run through the CLI into the default store (.orchestra/state.db)."""
        (here / "shared.dot").write_text(SHARED)
        code, _, _ = invoke("run", "shared.dot", "--quiet")
        assert code == 0
        return "1"

    def test_prints_the_new_id_and_how_to_look_at_it(self, ran: str, cxdb_server: FakeCxdb) -> None:
        """Exit 0; the new session id and the status command for it, URL quoted."""
        code, out, _ = invoke("export", ran, "--to", cxdb_server.url)
        assert code == 0
        first, second = out.splitlines()
        assert first == (
            f"exported session 1 from .orchestra/state.db to {cxdb_server.url} as session 1"
        )
        assert second == (
            f"look at it with:  orchestra status 1 --store {shlex.quote(cxdb_server.url)} --detail"
        )

    def test_status_lists_and_details_the_copy_on_the_server(
        self, ran: str, cxdb_server: FakeCxdb
    ) -> None:
        """`orchestra status` lists the copy on the server and shows its path and turns."""
        invoke("export", ran, "--to", cxdb_server.url)
        code, out, _ = invoke("status", "--store", cxdb_server.url)
        assert code == 0
        [row] = out.splitlines()[1:]
        assert row.split()[:4] == ["1", "shared", "success", "exit"]
        code, out, _ = invoke("status", "1", "--store", cxdb_server.url, "--detail")
        assert code == 0
        assert "path: start → plan → build → exit" in out
        assert [line.split()[1:3] for line in out.splitlines()[-4:]] == [
            ["start", "success"],
            ["plan", "success"],
            ["build", "success"],
            ["exit", "success"],
        ]

    def test_export_back_into_a_file(self, ran: str, cxdb_server: FakeCxdb, here: Path) -> None:
        """A session on the server exports into a new embedded store file, where its status
        reads as the original's."""
        invoke("export", ran, "--to", cxdb_server.url)
        code, out, _ = invoke("export", "1", "--store", cxdb_server.url, "--to", "back.db")
        assert code == 0
        assert "orchestra status 1 --store back.db --detail" in out
        _, original, _ = invoke("status", "1", "--json")
        _, back, _ = invoke("status", "1", "--store", "back.db", "--json")
        # the duration runs to the last turn's time as the store recorded it: the export's
        assert {**json.loads(back), "duration": None} == {**json.loads(original), "duration": None}

    def test_unknown_session_exits_2_and_creates_nothing(self, ran: str, here: Path) -> None:
        """An unknown session is one error line, exit 2, and no target file appears."""
        code, out, err = invoke("export", "7", "--to", "shared.db")
        assert code == 2
        assert out == ""
        assert err == "error: session 7 does not exist in .orchestra/state.db\n"
        assert not (here / "shared.db").exists()

    def test_unreachable_target_exits_2(self, ran: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """A CXDB server that does not answer is one error line naming it, exit 2."""
        monkeypatch.setattr("orchestra.store.cxdb.client.ATTEMPTS", 1)
        code, _, err = invoke("export", ran, "--to", "cxdb://127.0.0.1:1?http=127.0.0.1:1")
        assert code == 2
        [line] = err.splitlines()
        assert line.startswith("error: cxdb://127.0.0.1:1: cannot reach the CXDB server")

    def test_missing_source_store_exits_2_and_is_not_created(self, here: Path) -> None:
        """Exporting from a store file that does not exist says so and creates nothing."""
        code, _, err = invoke("export", "1", "--to", "x.db")
        assert code == 2
        assert err == (
            "error: .orchestra/state.db does not exist: there are no sessions to export\n"
        )
        assert not (here / ".orchestra").exists()
        assert not (here / "x.db").exists()

    def test_session_must_be_a_number(self, here: Path) -> None:
        """A session argument that is not a number is a usage error (exit 2)."""
        code, _, err = invoke("export", "latest", "--to", "x.db")
        assert code == 2
        assert "'latest' is not a valid integer" in err
        assert not (here / "x.db").exists()

    def test_to_is_required(self, here: Path) -> None:
        """Without --to the command says what is missing (exit 2)."""
        code, _, err = invoke("export", "1")
        assert code == 2
        assert "--to" in err
