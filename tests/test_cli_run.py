"""`orchestra run`, `resume` and `status` as a user meets them: output, exit codes, faults."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestra_cli.main import cli
from tests.processes import read_fifo

#: every example that runs as it is; one with a setup.py of its own (the workspace demo,
#: which makes a git repository first) has a test of its own that sets it up in a copy
EXAMPLES = sorted(
    path
    for path in (Path(__file__).resolve().parents[1] / "examples").glob("**/*.dot")
    if not (path.parent / "setup.py").exists()
)
ORCHESTRA = Path(sys.executable).with_name("orchestra")

LINEAR = """
digraph linear {
    graph [goal="count to three"]
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    one   [prompt="one"]
    two   [shape=parallelogram, tool_command="echo two {{ who }}"]
    start -> one -> two -> exit
}
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def live_processes_in_group(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies, dead but unreaped, do not count)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            alive.append(int(stat.parent.name))
    return alive


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class TestExamplesRun:
    def test_there_are_examples(self) -> None:
        """The examples folder holds pipelines, including a human gate and a fan-out."""
        text = "\n".join(p.read_text() for p in EXAMPLES)
        assert EXAMPLES
        assert "shape=hexagon" in text
        assert "shape=component" in text

    @pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
    def test_every_example_runs_out_of_the_box(self, example: Path, here: Path) -> None:
        """Each example runs to success with --auto-approve and prints a summary."""
        code, out, err = invoke("run", str(example), "--auto-approve")
        assert code == 0, out + err
        assert "✔ success" in out
        assert "path: start →" in out


class TestRunOutput:
    def test_progress_shows_each_stage_and_a_summary(self, here: Path) -> None:
        """Without --json a person sees each stage end with its duration, then the path."""
        write(here / "p.dot", LINEAR)
        code, out, _ = invoke("run", "p.dot", "who=world")
        assert code == 0
        assert "running linear" in out
        for node in ("start", "one", "two", "exit"):
            assert f"✓ {node}" in out
        assert "path: start → one → two → exit" in out
        assert "logs: .orchestra/runs/1" in out

    def test_json_prints_one_event_per_line_ending_with_completion(self, here: Path) -> None:
        """--json lines are events with event/session_id/timestamp; the last one completes."""
        write(here / "p.dot", LINEAR)
        code, out, _ = invoke("run", "p.dot", "who=world", "--json")
        assert code == 0
        events = [json.loads(line) for line in out.splitlines()]
        assert all({"event", "session_id", "timestamp"} <= set(e) for e in events)
        assert events[0]["event"] == "PipelineStarted"
        assert events[-1]["event"] == "PipelineCompleted"
        assert events[-1]["completed_nodes"] == ["start", "one", "two", "exit"]
        assert {"StageStarted", "StageCompleted", "CheckpointSaved"} <= {e["event"] for e in events}

    def test_quiet_prints_only_the_summary(self, here: Path) -> None:
        """--quiet leaves out the stage lines."""
        write(here / "p.dot", LINEAR)
        code, out, _ = invoke("run", "p.dot", "who=x", "--quiet")
        assert code == 0
        assert "✓ one" not in out
        assert "✔ success" in out

    def test_logs_root_is_the_run_directory(self, here: Path) -> None:
        """--logs-root DIR gets manifest.json, checkpoint.json and per-node files."""
        write(here / "p.dot", LINEAR)
        code, _, _ = invoke("run", "p.dot", "who=x", "--logs-root", "out", "--quiet")
        assert code == 0
        assert json.loads((here / "out" / "manifest.json").read_text())["name"] == "linear"
        assert (here / "out" / "checkpoint.json").is_file()
        assert (here / "out" / "one" / "prompt.md").read_text() == "one"
        assert "two x" in (here / "out" / "two" / "tool_output.txt").read_text()


class TestExitCodes:
    def test_failed_pipeline_exits_1_with_the_reason(self, here: Path) -> None:
        """A node that fails with no route ends the run: exit 1, the reason in the summary."""
        write(here / "p.dot", LINEAR.replace('prompt="one"', 'prompt="one", sim_outcomes=fail'))
        code, out, _ = invoke("run", "p.dot", "who=x")
        assert code == 1
        assert "✘ failed" in out
        assert "simulated fail" in out

    def test_invalid_pipeline_exits_2_naming_the_rule(self, here: Path) -> None:
        """A graph with lint errors is refused before anything runs."""
        write(here / "p.dot", "digraph g { a -> b }")
        code, _, err = invoke("run", "p.dot")
        assert code == 2
        assert "start_node" in err
        assert not (here / ".orchestra" / "runs").exists()

    def test_missing_file_exits_2(self, here: Path) -> None:
        """A pipeline file that does not exist is named in the error."""
        code, _, err = invoke("run", "nope.dot")
        assert code == 2
        assert "nope.dot: no such file" in err

    def test_bad_variable_exits_2(self, here: Path) -> None:
        """A variable that is not key=value is a usage error."""
        write(here / "p.dot", LINEAR)
        code, _, err = invoke("run", "p.dot", "oops")
        assert code == 2
        assert "expected key=value" in err

    def test_missing_variable_fails_the_node_naming_it(self, here: Path) -> None:
        """A tool command using an unset variable fails, naming the variable and the node."""
        write(here / "p.dot", LINEAR)
        code, out, _ = invoke("run", "p.dot")
        assert code == 1
        assert "'who' is undefined" in out
        assert "node 'two' tool_command" in out

    def test_command_not_found_says_so(self, here: Path) -> None:
        """A tool whose command does not exist fails with 'command not found'."""
        write(here / "p.dot", LINEAR.replace("echo two {{ who }}", "no-such-command-xyz"))
        code, out, _ = invoke("run", "p.dot")
        assert code == 1
        assert "command not found" in out


class TestStatus:
    def test_lists_sessions_and_details_one(self, here: Path) -> None:
        """status lists every session; status N --detail shows its checkpoints' turn ids."""
        write(here / "p.dot", LINEAR)
        invoke("run", "p.dot", "who=a", "--quiet")
        invoke("run", "p.dot", "--quiet")
        code, out, _ = invoke("status")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["SESSION", "PIPELINE", "STATUS"]
        assert lines[1].split()[:3] == ["2", "linear", "fail"]
        assert lines[2].split()[:3] == ["1", "linear", "success"]
        code, out, _ = invoke("status", "1", "--detail")
        assert "path: start → one → two → exit" in out
        assert "TURN" in out
        data = json.loads(invoke("status", "1", "--json")[1])
        assert [c["node_id"] for c in data["checkpoints"]] == ["start", "one", "two", "exit"]
        assert all(isinstance(c["turn_id"], int) for c in data["checkpoints"])

    def test_no_store_yet_says_how_to_start(self, here: Path) -> None:
        """Before any run, status says there are no sessions."""
        code, out, _ = invoke("status")
        assert code == 0
        assert "no sessions yet" in out


class TestStateFaults:
    def test_corrupt_state_database_is_reported_and_left_alone(self, here: Path) -> None:
        """A state.db that is not SQLite gets a clear error; its bytes are not touched."""
        write(here / "p.dot", LINEAR)
        (here / ".orchestra").mkdir()
        garbage = b"this is not a database" * 100
        (here / ".orchestra" / "state.db").write_bytes(garbage)
        code, _, err = invoke("run", "p.dot", "who=x")
        assert code == 2
        assert "is not an Orchestra state database" in err
        assert (here / ".orchestra" / "state.db").read_bytes() == garbage

    def test_foreign_sqlite_database_is_refused(self, here: Path) -> None:
        """An SQLite file of another program is named as such and not modified."""
        write(here / "p.dot", LINEAR)
        (here / ".orchestra").mkdir()
        db = sqlite3.connect(here / ".orchestra" / "state.db")
        db.execute("CREATE TABLE invoices (id INTEGER)")
        db.commit()
        db.close()
        code, _, err = invoke("run", "p.dot", "who=x")
        assert code == 2
        assert "not Orchestra's state" in err
        tables = (
            sqlite3.connect(here / ".orchestra" / "state.db")
            .execute("SELECT name FROM sqlite_master")
            .fetchall()
        )
        assert tables == [("invoices",)]

    def test_resume_refuses_a_finished_session(self, here: Path) -> None:
        """A session that already ended (here: failed) is not resumed; exit 2 says why."""
        write(here / "p.dot", LINEAR.replace('prompt="one"', 'prompt="one", sim_outcomes=fail'))
        assert invoke("run", "p.dot", "who=x", "--quiet")[0] == 1
        code, _, err = invoke("resume", "1")
        assert code == 2
        assert "already finished" in err


BLOCKING = """
digraph blocking {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    first [shape=parallelogram, tool_command="echo first >> trace.txt"]
    wait  [shape=parallelogram,
           tool_command="if [ \\"$GO\\" != 1 ]; then echo $$ > ready.fifo; sleep 60; fi
                         echo wait >> trace.txt"]
    last  [shape=parallelogram, tool_command="echo last >> trace.txt"]
    start -> first -> wait -> last -> exit
}
"""


class TestInterrupt:
    def test_ctrl_c_stops_with_exit_130_and_resume_finishes(self, tmp_path: Path) -> None:
        """SIGINT mid-node: exit 130, the resume command printed, the node's process group
        killed; resume runs the interrupted node and the rest, not the finished ones."""
        write(tmp_path / "p.dot", BLOCKING)
        os.mkfifo(tmp_path / "ready.fifo")
        process = subprocess.Popen(
            [str(ORCHESTRA), "run", "p.dot"],
            cwd=tmp_path,
            env={**os.environ, "GO": "0"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        tool_pid = int(read_fifo(tmp_path / "ready.fifo", process).strip())
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130
        assert "orchestra resume 1" in err
        assert live_processes_in_group(tool_pid) == []  # the tool's process group is gone
        interrupted = subprocess.run(
            [str(ORCHESTRA), "status", "1", "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(interrupted.stdout)["status"] == "interrupted"

        resumed = subprocess.run(
            [str(ORCHESTRA), "resume", "1", "--quiet"],
            cwd=tmp_path,
            env={**os.environ, "GO": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert (tmp_path / "trace.txt").read_text().split() == ["first", "wait", "last"]

    def test_resume_refuses_changed_dot_then_force_resumes(self, tmp_path: Path) -> None:
        """An interrupted session whose file changed is refused, then resumed with --force."""
        write(tmp_path / "p.dot", BLOCKING)
        os.mkfifo(tmp_path / "ready.fifo")
        process = subprocess.Popen(
            [str(ORCHESTRA), "run", "p.dot", "--quiet"],
            cwd=tmp_path,
            env={**os.environ, "GO": "0"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        read_fifo(tmp_path / "ready.fifo", process)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
        write(tmp_path / "p.dot", BLOCKING.replace("echo last", "echo changed"))
        env = {**os.environ, "GO": "1"}
        refused = subprocess.run(
            [str(ORCHESTRA), "resume", "1"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2
        assert "changed since session 1 began" in refused.stderr
        forced = subprocess.run(
            [str(ORCHESTRA), "resume", "1", "--force", "--quiet"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert (tmp_path / "trace.txt").read_text().split() == ["first", "wait", "changed"]
