"""A tool's command left running by a runner killed with SIGKILL is ended when the session
resumes, before the stage runs again: the two never overlap (issue 15, fault 5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.processes import read_fifo

ORCHESTRA = str(Path(sys.executable).with_name("orchestra"))
PIPELINE = """
digraph g {
    start [shape=Mdiamond]; exit [shape=Msquare]
    slow [shape=parallelogram,
          tool_command="echo begin $$ >> trace.txt; [ -p ready.fifo ] && echo $$ > ready.fifo;
                        sleep 2; echo end $$ >> trace.txt"]
    start -> slow -> exit
}
"""


def recorded(directory: Path, session: str) -> None:
    """Wait until the session's store holds the tool's process group."""
    import anyio

    from orchestra.engine.session import load_session
    from orchestra.store.embedded import EmbeddedStore

    async def holds() -> bool:
        store = await EmbeddedStore.open(directory / ".orchestra" / "state.db")
        try:
            state = await load_session(store, session)
        finally:
            await store.close()
        return "process" in state.recorded.get("slow", {})

    async def wait() -> None:
        with anyio.fail_after(30):
            while not await holds():
                await anyio.sleep(0.01)

    anyio.run(wait)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_killed_runners_command_is_ended_before_the_stage_runs_again(tmp_path: Path) -> None:
    (tmp_path / "p.dot").write_text(PIPELINE)
    os.mkfifo(tmp_path / "ready.fifo")
    run = subprocess.Popen(
        [ORCHESTRA, "run", "p.dot", "--json"], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert run.stdout is not None
    session = str(json.loads(run.stdout.readline())["session_id"])
    trace = tmp_path / "trace.txt"
    first = int(read_fifo(tmp_path / "ready.fifo", run))  # the command has begun
    (tmp_path / "ready.fifo").unlink()  # the resumed run's command does not wait on it
    recorded(tmp_path, session)  # its process group is in the store (within milliseconds)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert alive(first)  # orphaned: the runner is gone, its command is not

    resumed = subprocess.run(
        [ORCHESTRA, "resume", session, "-q"], cwd=tmp_path, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    lines = trace.read_text().split("\n")
    assert f"end {first}" not in lines
    assert not alive(first)
    assert lines[-2].startswith("end ")  # the stage's run after the resume finished
