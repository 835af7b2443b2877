"""Crash and resume for real: SIGKILL `orchestra run`, then `orchestra resume`.

Each test runs the installed console script in a scratch directory, once with the embedded
store and once with a CXDB server (the fake, as a process of its own, named by CXDB_URL). A
tool node announces through a FIFO that it is running (the test waits on it, with a time limit: no
sleeps), the test kills the run with SIGKILL, and resumes it with GO=1 so that node can
finish. Every tool appends its node id to trace.txt, so the trace shows which nodes ran how
often.
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
from typing import Any

import pytest

from tests.processes import read_fifo

ORCHESTRA = Path(sys.executable).with_name("orchestra")

# A tool that records itself; with BLOCK set it waits for GO unless GO=1 is in the env.
STEP = 'tool_command="echo {id} >> trace.txt; echo {id}-done"'
BLOCKING = (
    'tool_command="if [ \\"$GO\\" != 1 ]; then echo $$ > ready.fifo; sleep 60; fi; '
    'echo {id} >> trace.txt; echo {id}-done"'
)

LINEAR = f"""
digraph linear {{
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    one   [shape=parallelogram, {STEP.format(id="one")}]
    two   [shape=parallelogram, {STEP.format(id="two")}]
    three [shape=parallelogram, {BLOCKING.format(id="three")}]
    four  [shape=parallelogram, {STEP.format(id="four")}]
    start -> one -> two -> three -> four -> exit
}}
"""

FAN_OUT = f"""
digraph fan {{
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    before [shape=parallelogram, {STEP.format(id="before")}]
    fan   [shape=component, max_parallel=1]
    a     [shape=parallelogram, {STEP.format(id="a")}]
    b     [shape=parallelogram, {STEP.format(id="b")}]
    c     [shape=parallelogram, {BLOCKING.format(id="c")}]
    join  [shape=tripleoctagon]
    after [shape=parallelogram, {STEP.format(id="after")}]
    start -> before -> fan
    fan -> a -> join
    fan -> b -> join
    fan -> c -> join
    join -> after -> exit
}}
"""


#: extra environment for every `orchestra` the test starts (CXDB_URL for the CXDB store)
STORE_ENV: dict[str, str] = {}


def orchestra(*args: str, cwd: Path, go: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **STORE_ENV, "GO": "1" if go else "0"}
    return subprocess.run(
        [str(ORCHESTRA), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def status(cwd: Path, session: str) -> dict[str, Any]:
    result = orchestra("status", session, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def trace(cwd: Path) -> list[str]:
    return (cwd / "trace.txt").read_text().split()


def kill_mid_run(cwd: Path) -> str:
    """Start a run, wait for the blocking node to announce itself, SIGKILL everything."""
    os.mkfifo(cwd / "ready.fifo")
    process = subprocess.Popen(
        [str(ORCHESTRA), "run", "pipeline.dot", "--json"],
        cwd=cwd,
        env={**os.environ, **STORE_ENV, "GO": "0"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = json.loads(process.stdout.readline())
    assert first["event"] == "PipelineStarted"
    tool_pid = int(read_fifo(cwd / "ready.fifo", process).strip())  # the node is running
    process.kill()
    process.wait()
    os.killpg(tool_pid, signal.SIGKILL)  # the tool runs in its own process group
    return str(first["session_id"])


def scratch(tmp_path: Path, name: str, source: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "pipeline.dot").write_text(source)
    return directory


def run_clean(cwd: Path) -> str:
    """Run pipeline.dot uninterrupted; its session id."""
    result = orchestra("run", "pipeline.dot", "--json", cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return str(json.loads(result.stdout.splitlines()[0])["session_id"])


@pytest.fixture(autouse=True)
def _console_script() -> None:
    assert ORCHESTRA.exists(), f"the console script {ORCHESTRA} is not installed"
    assert shutil.which("sh"), "tool nodes need /bin/sh"


@pytest.fixture(autouse=True, params=["embedded", "cxdb"])
def _store(request: pytest.FixtureRequest) -> Iterator[None]:
    """The store every `orchestra` of the test uses: the default embedded one, or a fake
    CXDB server started as its own process."""
    if request.param == "cxdb":
        STORE_ENV["CXDB_URL"] = request.getfixturevalue("cxdb_process")
    try:
        yield
    finally:
        STORE_ENV.clear()


class TestKilledRunResumes:
    def test_sigkill_mid_pipeline_then_resume_runs_each_finished_node_once(
        self, tmp_path: Path
    ) -> None:
        """After SIGKILL during `three`, resume runs `three` and `four` only, and ends like
        a run that was never interrupted."""
        crashed = scratch(tmp_path, "crashed", LINEAR)
        session = kill_mid_run(crashed)
        assert status(crashed, session)["status"] == "crashed"
        assert trace(crashed) == ["one", "two"]

        resumed = orchestra("resume", session, "--quiet", cwd=crashed)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert trace(crashed) == ["one", "two", "three", "four"]

        clean = scratch(tmp_path, "clean", LINEAR)
        after_crash, uninterrupted = status(crashed, session), status(clean, run_clean(clean))
        assert after_crash["status"] == uninterrupted["status"] == "success"
        assert after_crash["completed_nodes"] == uninterrupted["completed_nodes"]
        assert after_crash["node_outcomes"] == uninterrupted["node_outcomes"]

    def test_sigkill_mid_fan_out_then_resume_runs_only_unfinished_branches(
        self, tmp_path: Path
    ) -> None:
        """Branches a and b finished before the kill: resume runs only c, then the rest."""
        crashed = scratch(tmp_path, "crashed", FAN_OUT)
        session = kill_mid_run(crashed)
        assert trace(crashed) == ["before", "a", "b"]

        resumed = orchestra("resume", session, "--quiet", cwd=crashed)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert trace(crashed) == ["before", "a", "b", "c", "after"]

        clean = scratch(tmp_path, "clean", FAN_OUT)
        after_crash, uninterrupted = status(crashed, session), status(clean, run_clean(clean))
        assert after_crash["completed_nodes"] == uninterrupted["completed_nodes"]
        assert after_crash["node_outcomes"] == uninterrupted["node_outcomes"]
        run_dir = Path(after_crash["logs_root"])  # on CXDB, named after the server too
        checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
        results = {r["id"]: r["outcome"] for r in checkpoint["context"]["parallel.results"]}
        assert results == {"a": "success", "b": "success", "c": "success"}
