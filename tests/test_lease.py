"""One runner per session: a second `resume` of a session that is running, or two at once
of a crashed one, never runs it twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra.errors import HeadMoved
from orchestra.store.embedded import EmbeddedStore

ORCHESTRA = str(Path(sys.executable).with_name("orchestra"))

SLOW = """
digraph slow {
    start [shape=Mdiamond]; exit [shape=Msquare]
    s1 [shape=parallelogram, tool_command="echo s1 >> trace.txt; sleep 0.4"]
    s2 [shape=parallelogram, tool_command="echo s2 >> trace.txt; sleep 0.4"]
    s3 [shape=parallelogram, tool_command="echo s3 >> trace.txt; sleep 0.4"]
    s4 [shape=parallelogram, tool_command="echo s4 >> trace.txt; sleep 0.4"]
    start -> s1 -> s2 -> s3 -> s4 -> exit
}
"""


def orchestra(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ORCHESTRA, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def started(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """`orchestra run` of SLOW, once its first stage has begun."""
    (tmp_path / "slow.dot").write_text(SLOW)
    run = orchestra("run", "slow.dot", "--json", cwd=tmp_path)
    assert run.stdout is not None
    session = ""
    for line in run.stdout:
        event = json.loads(line)
        session = str(event["session_id"])
        if event["event"] == "StageStarted" and event["node_id"] == "s1":
            break
    return run, session


async def test_a_guarded_append_refuses_a_moved_head(store: EmbeddedStore) -> None:
    head = await store.create_context()
    first = await store.append_turn(head.context_id, "t", 1, b"a")
    await store.append_turn(head.context_id, "t", 1, b"b")
    with pytest.raises(HeadMoved) as moved:
        await store.append_turn(head.context_id, "t", 1, b"c", expect_head=first.turn_id)
    assert moved.value.head_turn_id == first.turn_id + 1


def test_resume_of_a_session_still_running_is_refused(tmp_path: Path) -> None:
    run, session = started(tmp_path)
    try:
        second = orchestra("resume", session, cwd=tmp_path)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2, out + err
        assert f"session {session} is being run by pid {run.pid} on " in err
        assert run.wait(timeout=60) == 0
    finally:
        run.kill()
    assert (tmp_path / "trace.txt").read_text().split() == ["s1", "s2", "s3", "s4"]


def test_two_resumes_of_a_crashed_session_run_it_once(tmp_path: Path) -> None:
    run, session = started(tmp_path)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    first = orchestra("resume", session, cwd=tmp_path)
    second = orchestra("resume", session, cwd=tmp_path)
    outputs = [process.communicate(timeout=60) for process in (first, second)]
    codes = sorted(process.returncode for process in (first, second))
    assert codes == [0, 2], outputs
    refused = next(
        err for (out, err), p in zip(outputs, (first, second), strict=True) if p.returncode == 2
    )
    assert f"session {session}" in refused
    assert "pid" in refused
    trace = (tmp_path / "trace.txt").read_text().split()
    assert trace[-3:] == ["s2", "s3", "s4"]  # s1 ran before the kill (and maybe again)
    assert trace.count("s2") == trace.count("s3") == trace.count("s4") == 1
