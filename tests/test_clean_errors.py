"""Bad input to the CLI gets a message and exit 2, never a traceback, and leaves no session
behind (issue 15, fault 4)."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra.store.embedded import EmbeddedStore

ORCHESTRA = str(Path(sys.executable).with_name("orchestra"))
PIPELINE = """digraph g { start [shape=Mdiamond]; exit [shape=Msquare]
  say [shape=parallelogram, tool_command="echo hi"]; start -> say -> exit }
"""
HUGE = "99999999999999999999999"


def orchestra(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORCHESTRA, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "p.dot").write_text(PIPELINE)
    assert orchestra("run", "p.dot", "-q", cwd=tmp_path).returncode == 0
    return tmp_path


def clean(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("resume", HUGE),
        ("status", HUGE),
        ("attach", HUGE),
        ("export", HUGE, "--to", "other.db"),
        ("answer", HUGE, "--text", "x"),
    ],
)
def test_a_session_id_too_large_for_any_store(project: Path, command: tuple[str, ...]) -> None:
    result = orchestra(*command, cwd=project)
    clean(result, f"session {HUGE} does not exist")
    assert "continue with" not in result.stderr


@pytest.mark.parametrize(
    "command", [("status",), ("run", "p.dot"), ("resume", "1"), ("export", "1", "--to", "x.db")]
)
def test_a_damaged_state_database(project: Path, command: tuple[str, ...]) -> None:
    state = project / ".orchestra" / "state.db"
    data = bytearray(state.read_bytes())
    data[data.find(b"CREATE TABLE") + 2] = 0xFF
    state.write_bytes(bytes(data))
    clean(orchestra(*command, cwd=project), "is not an Orchestra state database, or is damaged")
    doctor = orchestra("doctor", cwd=project)
    assert "Traceback" not in doctor.stderr
    assert "is not an SQLite database" in doctor.stdout


def test_a_run_directory_that_is_not_a_directory(project: Path) -> None:
    clean(orchestra("run", "p.dot", "--logs-root", "/dev/null", cwd=project), "not a directory")
    sessions = orchestra("status", "--json", cwd=project).stdout
    assert '"session_id": "2"' not in sessions  # no session was recorded


def test_a_run_directory_holding_an_earlier_run(project: Path) -> None:
    assert orchestra("run", "p.dot", "-q", "--logs-root", "out", cwd=project).returncode == 0
    clean(
        orchestra("run", "p.dot", "--logs-root", "out", cwd=project),
        "already holds files",
        "--force",
    )
    assert (
        orchestra("run", "p.dot", "-q", "--logs-root", "out", "--force", cwd=project).returncode
        == 0
    )


def test_status_of_a_session_in_a_missing_store(project: Path) -> None:
    clean(
        orchestra("status", "1", "--store", "missing.db", "--json", cwd=project),
        "session 1 does not exist",
    )


def test_export_into_its_own_store(project: Path) -> None:
    clean(
        orchestra("export", "1", "--to", ".orchestra/state.db", cwd=project),
        "would only make a duplicate",
    )


def test_sessions_of_two_stores_get_run_directories_of_their_own(project: Path) -> None:
    """Session 1 of the default store and session 1 of another store: two directories,
    and the hints to resume the other name its store."""
    other = orchestra("run", "p.dot", "-q", "--store", "other.db", cwd=project)
    assert other.returncode == 0, other.stderr
    runs = sorted(path.name for path in (project / ".orchestra" / "runs").iterdir())
    assert runs[0] == "1"
    assert len(runs) == 2
    assert runs[1].startswith("other-")
    assert runs[1].endswith("-1")
    gone = orchestra("resume", "7", "--store", "other.db", cwd=project)
    assert gone.returncode == 2
    assert "continue with" not in gone.stderr


def test_a_resume_hint_names_the_store_it_needs(tmp_path: Path) -> None:
    (tmp_path / "gate.dot").write_text(
        "digraph g { start [shape=Mdiamond]; exit [shape=Msquare]\n"
        '  ask [shape=hexagon, label="Go?"]; start -> ask; ask -> exit [label="[Y] Yes"] }\n'
    )
    result = orchestra("run", "gate.dot", "--store", "team.db", cwd=tmp_path)
    clean(result, "continue with:  orchestra resume 1 --store team.db")


class FullDisk:
    """A stage whose first try finds the disk full (as writing its files would)."""

    def __init__(self) -> None:
        self.calls = 0

    async def execute(self, node: object, context: object, graph: object, stage: object) -> object:
        from orchestra.outcome import Outcome

        self.calls += 1
        if self.calls == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return Outcome.success("written")


async def test_a_full_disk_stops_the_run_and_resume_runs_the_stage_again(
    tmp_path: Path, store: EmbeddedStore
) -> None:
    """Issue 15, fault 2: no room is the machine's fault, not the stage's: nothing is
    recorded as its outcome, the run stops (resumable), and resume runs it again."""
    from orchestra.engine.session import load_session
    from orchestra.errors import RunDirectoryError
    from orchestra.pipeline import Pipeline, resume

    source = (
        "digraph g { start [shape=Mdiamond]; exit [shape=Msquare]\n"
        '  write [type="full_disk"]; start -> write -> exit }\n'
    )
    stage = FullDisk()
    pipeline = Pipeline.load(
        source, store=store, handlers={"full_disk": stage}, logs_root=tmp_path / "run"
    )
    with pytest.raises(RunDirectoryError, match="make room, then resume"):
        await pipeline.run()
    assert pipeline.session_id is not None
    state = await load_session(store, pipeline.session_id)
    assert "write" not in state.node_outcomes
    assert state.ended == "interrupted"

    resumed = await resume(pipeline.session_id, store=store, handlers={"full_disk": stage})
    assert resumed.succeeded
    assert stage.calls == 2


async def test_events_end_when_a_run_fails_before_it_begins(
    tmp_path: Path, store: EmbeddedStore
) -> None:
    """Issue 15, fault 8: the iterator of ``events()`` ends when ``run`` fails early (here
    its run directory cannot be made), instead of waiting forever."""
    import anyio

    from orchestra.errors import RunDirectoryError
    from orchestra.pipeline import Pipeline

    blocker = tmp_path / "file"
    blocker.write_text("")
    pipeline = Pipeline.load(PIPELINE, store=store, logs_root=blocker / "run")
    seen: list[object] = []
    events = pipeline.events()  # subscribed here, before the run starts

    async def read() -> None:
        async for event in events:
            seen.append(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(read)
            with pytest.raises(RunDirectoryError):
                await pipeline.run()
    assert seen == []
