"""`orchestra compile` and the command group, through Click's CliRunner and the real script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from orchestra_cli.compile import compile_command
from orchestra_cli.main import cli

CORPUS = Path(__file__).resolve().parent / "corpus" / "dot"
CORPUS_FILES = sorted(CORPUS.rglob("*.dot")) if CORPUS.is_dir() else []

VALID = textwrap.dedent(
    """
    digraph review {
        goal="review the change"
        model_stylesheet="* { llm_model: claude-sonnet-4-5; llm_provider: anthropic }"
        start [shape=Mdiamond]
        exit [shape=Msquare]
        plan [prompt="Plan $goal", llm_model="gpt-5.2", max_retries=3]
        check [prompt="Check", goal_gate=true, retry_target=plan, timeout="15m"]
        ask [shape=hexagon, label="Approve?"]
        start -> plan -> check -> ask -> exit
        typo [prompt="t", max_retry=2]
        check -> typo -> exit
    }
    """
).lstrip()

INVALID = textwrap.dedent(
    """
    digraph broken {
        start [shape=Mdiamond]
        exit [shape=Msquare]
        work [prompt="w"]
        orphan [prompt="never"]
        start -> work -> exit
    }
    """
).lstrip()

SYNTAX_ERROR = "digraph G {\n  start [shape=Mdiamond\n  a -> b\n}\n"

DIAGNOSTIC_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<severity>error|warning|info) ")
DIAGNOSTIC_KEYS = {"rule", "severity", "line", "message", "node_id", "edge", "fix"}


def invoke(*args: str) -> Result:
    """Run the CLI in-process; whatever happens, it must end by exiting, never by crashing."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def write(tmp_path: Path, text: str, name: str = "pipeline.dot") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


class TestCompileText:
    """`orchestra compile FILE`: compiler-style diagnostics and a summary line."""

    def test_valid_file_prints_summary_and_exits_0(self, tmp_path: Path) -> None:
        """A file with only warnings is valid: exit 0 and `FILE: valid, 0 errors, N warnings`."""
        path = write(tmp_path, VALID)
        result = invoke("compile", path)
        assert result.exit_code == 0
        assert result.output.splitlines()[-1] == f"{path}: valid, 0 errors, 1 warning"

    def test_clean_file_reports_no_warnings(self, tmp_path: Path) -> None:
        """A file with nothing to say prints just the summary."""
        path = write(tmp_path, INVALID.replace('orphan [prompt="never"]\n', ""))
        result = invoke("compile", path)
        assert result.exit_code == 0
        assert result.output == f"{path}: valid, 0 errors, 0 warnings\n"

    def test_diagnostics_print_as_file_line_severity_rule_message(self, tmp_path: Path) -> None:
        """Each diagnostic is `FILE:LINE: severity rule: message (fix)`."""
        path = write(tmp_path, VALID)
        [line] = invoke("compile", path).output.splitlines()[:-1]
        typo_line = VALID.splitlines().index('    typo [prompt="t", max_retry=2]') + 1
        assert line == (
            f"{path}:{typo_line}: warning attribute_typo: node 'typo' has attribute "
            "'max_retry', a likely typo (did you mean 'max_retries'?)"
        )

    def test_errors_exit_2(self, tmp_path: Path) -> None:
        """A validation error is printed first and the command exits 2, `invalid`."""
        path = write(tmp_path, INVALID)
        result = invoke("compile", path)
        assert result.exit_code == 2
        first, summary = result.output.splitlines()
        match = DIAGNOSTIC_LINE.match(first)
        assert match is not None
        assert match["file"] == path
        assert match["line"] == "5"
        assert match["severity"] == "error"
        assert " reachability: node 'orphan'" in first
        assert summary == f"{path}: invalid, 1 error, 0 warnings"

    def test_diagnostic_without_line_prints_file_only(self, tmp_path: Path) -> None:
        """A problem with no line (no start node) prints as `FILE: error rule: ...`."""
        path = write(tmp_path, "digraph G {\n  exit [shape=Msquare]\n}\n")
        result = invoke("compile", path)
        assert result.exit_code == 2
        assert f"{path}: error start_node: the pipeline has no start node" in result.output

    def test_syntax_error_prints_location_and_caret(self, tmp_path: Path) -> None:
        """A parse error prints `FILE:LINE:COL: error syntax: ...` and a caret excerpt."""
        path = write(tmp_path, SYNTAX_ERROR)
        result = invoke("compile", path)
        assert result.exit_code == 2
        lines = result.output.splitlines()
        assert lines[0].startswith(f"{path}:3:5: error syntax: ")
        assert lines[1].strip() == "a -> b"
        assert lines[2].index("^") == lines[1].index("->")
        assert lines[-1] == f"{path}: invalid, cannot be compiled"

    def test_missing_file_exits_2(self, tmp_path: Path) -> None:
        """A file that does not exist is reported as such, exit 2."""
        path = str(tmp_path / "absent.dot")
        result = invoke("compile", path)
        assert result.exit_code == 2
        assert result.output.splitlines()[0] == f"{path}: error file: no such file"

    def test_directory_exits_2(self, tmp_path: Path) -> None:
        """A directory is not a pipeline: exit 2 with a message that says so."""
        result = invoke("compile", str(tmp_path))
        assert result.exit_code == 2
        assert "is a directory" in result.output

    def test_missing_argument_is_a_usage_error(self) -> None:
        """Without FILE, Click's usage error (exit 2) names the missing argument."""
        result = invoke("compile")
        assert result.exit_code == 2
        assert "Missing argument 'FILE'" in result.output


class TestCompileJson:
    """`orchestra compile --json`: machine-readable diagnostics."""

    def test_diagnostics_are_a_json_array_of_records(self, tmp_path: Path) -> None:
        """Each record has rule, severity, line, message, node_id, edge and fix."""
        path = write(tmp_path, INVALID.replace("-> exit", '-> exit [condition="=x"]'))
        result = invoke("compile", "--json", path)
        assert result.exit_code == 2
        records = json.loads(result.output)
        assert isinstance(records, list)
        assert all(set(r) >= DIAGNOSTIC_KEYS for r in records)
        by_rule = {r["rule"]: r for r in records}
        assert by_rule["reachability"]["severity"] == "error"
        assert by_rule["reachability"]["node_id"] == "orphan"
        assert by_rule["reachability"]["line"] == 5
        assert by_rule["reachability"]["fix"]
        assert by_rule["condition_syntax"]["edge"] == ["work", "exit"]
        assert all(r["file"] == path for r in records)

    def test_valid_file_gives_empty_array_and_exit_0(self, tmp_path: Path) -> None:
        """No diagnostics is `[]`, and the exit code still says valid."""
        path = write(tmp_path, INVALID.replace('orphan [prompt="never"]\n', ""))
        result = invoke("compile", "--json", path)
        assert result.exit_code == 0
        assert json.loads(result.output) == []

    def test_syntax_error_is_one_record(self, tmp_path: Path) -> None:
        """A parse error gives a single `syntax` record with line and column."""
        result = invoke("compile", "--json", write(tmp_path, SYNTAX_ERROR))
        assert result.exit_code == 2
        [record] = json.loads(result.output)
        assert set(record) >= DIAGNOSTIC_KEYS
        assert (record["rule"], record["severity"]) == ("syntax", "error")
        assert (record["line"], record["column"]) == (3, 5)

    def test_missing_file_is_one_record(self, tmp_path: Path) -> None:
        """A missing file gives a single `file` record saying so."""
        result = invoke("compile", "--json", str(tmp_path / "absent.dot"))
        assert result.exit_code == 2
        [record] = json.loads(result.output)
        assert (record["rule"], record["message"]) == ("file", "no such file")


class TestCompileShow:
    """`orchestra compile --show`: the resolved graph as the engine will see it."""

    def node_rows(self, output: str) -> dict[str, str]:
        """The node table's rows (NODE header to blank line), by node id."""
        lines = output.splitlines()
        header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["NODE", "HANDLER"])
        rows = lines[header + 1 : lines.index("", header)]
        return {row.split()[0]: row for row in rows}

    def test_table_shows_handler_model_retries_and_goal_gate(self, tmp_path: Path) -> None:
        """Each node row shows its handler type, resolved model, provider, retries and gate."""
        result = invoke("compile", "--show", write(tmp_path, VALID))
        assert result.exit_code == 0
        rows = self.node_rows(result.output)
        assert rows["plan"].split()[:4] == ["plan", "codergen", "gpt-5.2", "anthropic"]
        assert "3" in rows["plan"].split()
        assert "yes -> plan" in rows["check"]
        assert "15m" in rows["check"]
        assert rows["ask"].split()[1] == "wait.human"

    def test_stylesheet_values_are_marked(self, tmp_path: Path) -> None:
        """Stylesheet-given models and providers say `(stylesheet)`; a node's own do not."""
        rows = self.node_rows(invoke("compile", "--show", write(tmp_path, VALID)).output)
        assert "claude-sonnet-4-5 (stylesheet)" in rows["check"]
        assert "anthropic (stylesheet)" in rows["plan"]
        assert "gpt-5.2 (stylesheet)" not in rows["plan"]

    def test_show_still_prints_diagnostics_and_summary(self, tmp_path: Path) -> None:
        """The graph comes first; the diagnostics and the summary follow it."""
        path = write(tmp_path, INVALID)
        result = invoke("compile", "--show", path)
        assert result.exit_code == 2
        assert result.output.index("edges") < result.output.index("error reachability")
        assert result.output.splitlines()[-1] == f"{path}: invalid, 1 error, 0 warnings"

    def test_show_json_is_one_object_with_graph_and_diagnostics(self, tmp_path: Path) -> None:
        """With --json, --show prints {"graph": ..., "diagnostics": [...]}."""
        result = invoke("compile", "--show", "--json", write(tmp_path, VALID))
        payload = json.loads(result.output)
        assert set(payload) == {"graph", "diagnostics"}
        graph: dict[str, Any] = payload["graph"]
        assert (graph["name"], graph["start"], graph["exit"]) == ("review", "start", "exit")
        nodes = {n["id"]: n for n in graph["nodes"]}
        assert nodes["plan"]["handler"] == "codergen"
        assert nodes["plan"]["model"] == "gpt-5.2"
        assert nodes["plan"]["provider"] == "anthropic (stylesheet)"
        assert nodes["plan"]["max_retries"] == 3
        assert nodes["check"]["goal_gate"] is True
        assert nodes["check"]["retry_target"] == "plan"
        assert {(e["source"], e["target"]) for e in graph["edges"]} >= {("start", "plan")}
        assert [d["rule"] for d in payload["diagnostics"]] == ["attribute_typo"]

    def test_show_json_syntax_error_keeps_the_object_shape(self, tmp_path: Path) -> None:
        """An unparseable file still gives the object, with no graph and one diagnostic."""
        result = invoke("compile", "--show", "--json", write(tmp_path, SYNTAX_ERROR))
        assert result.exit_code == 2
        payload = json.loads(result.output)
        assert payload["graph"] is None
        assert [d["rule"] for d in payload["diagnostics"]] == ["syntax"]


class TestHelp:
    """The help text documents the commands and every flag."""

    def test_group_help_lists_compile(self) -> None:
        """`orchestra --help` describes the tool and lists the compile command."""
        result = invoke("--help")
        assert result.exit_code == 0
        assert "Graphviz DOT" in result.output
        assert re.search(r"^\s+compile\s+\S", result.output, re.MULTILINE)
        assert "--version" in result.output

    def test_compile_help_describes_every_flag(self) -> None:
        """Every option of `compile` appears in its help with a description."""
        result = invoke("compile", "--help")
        assert result.exit_code == 0
        assert "compile [OPTIONS] FILE" in result.output
        options = [p for p in compile_command.params if isinstance(p, click.Option)]
        assert {o.name for o in options} >= {"as_json", "show"}
        for option in options:
            assert option.help, f"{option.opts} has no help text"
            for flag in option.opts:
                assert flag in result.output
        assert "Exits 0" in result.output

    def test_version(self) -> None:
        """`orchestra --version` prints the package version."""
        result = invoke("--version")
        assert result.exit_code == 0
        assert "0.1.0" in result.output


class TestConsoleScript:
    """The installed `orchestra` script runs the same command."""

    def test_installed_script_compiles_a_file(self, tmp_path: Path) -> None:
        """The venv's console script exists and exits 2 with the diagnostic on stdout."""
        script = shutil.which("orchestra", path=str(Path(sys.executable).parent))
        assert script is not None, "the orchestra console script is not installed in the venv"
        path = write(tmp_path, INVALID)
        completed = subprocess.run(
            [script, "compile", path], capture_output=True, text=True, timeout=60, check=False
        )
        assert completed.returncode == 2
        assert f"{path}:5: error reachability:" in completed.stdout
        assert "Traceback" not in completed.stdout + completed.stderr


class TestCorpus:
    """Every real-world pipeline in the shared corpus compiles without a crash."""

    def test_corpus_is_present(self) -> None:
        """The corpus folder exists and holds DOT files (a missing corpus is a failure)."""
        assert CORPUS.is_dir(), f"corpus folder {CORPUS} is missing"
        assert CORPUS_FILES, f"no .dot files under {CORPUS}"

    @pytest.mark.parametrize(
        "path",
        CORPUS_FILES or [CORPUS / "no-dot-files-found"],
        ids=lambda p: str(p.relative_to(CORPUS)),
    )
    def test_compiles_without_crashing(self, path: Path) -> None:
        """Exit 0 or 2, no traceback; exit 2 prints an error, and --json agrees."""
        assert path.is_file(), f"{path} is missing"
        result = invoke("compile", str(path))
        assert result.exit_code in (0, 2)
        if result.exit_code == 2:
            assert ": error " in result.output
        records = json.loads(invoke("compile", "--json", str(path)).output)
        has_error = any(r["severity"] == "error" for r in records)
        assert has_error == (result.exit_code == 2)

    def test_clean_file_is_valid(self) -> None:
        """kilroy's clean batch example compiles with exit 0."""
        result = invoke("compile", str(CORPUS / "kilroy/cmd/kilroy/testdata/batch/clean.dot"))
        assert result.exit_code == 0

    def test_missing_start_is_a_start_node_error(self) -> None:
        """The conformance case without a start node exits 2 with a start_node error."""
        path = CORPUS / "fkyeah-conformance/02-validation/01-missing-start/pipeline.dot"
        result = invoke("compile", str(path))
        assert result.exit_code == 2
        assert f"{path}: error start_node:" in result.output


class TestStartupStaysLight:
    """`orchestra --help` and `orchestra compile` load neither a provider SDK nor what
    only a run needs (the engine, the store, orchestra.yaml's YAML machinery)."""

    HEAVY = ("anthropic", "openai", "httpx", "ruamel", "cattrs", "orchestra.engine")

    def loaded_by(self, *args: str) -> list[str]:
        script = (
            "import sys\n"
            "from orchestra_cli.main import cli\n"
            f"try:\n    cli({list(args)!r})\n"
            "except SystemExit:\n    pass\n"
            f"heavy = {self.HEAVY!r}\n"
            "print(sorted({m for m in sys.modules if m.startswith(heavy)}))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1].replace("'", '"'))  # type: ignore[no-any-return]

    def test_help_loads_no_sdk_and_no_engine(self) -> None:
        """`orchestra --help` lists every command without importing any of them: no SDK,
        no engine, no YAML machinery."""
        assert self.loaded_by("--help") == []

    def test_help_lists_each_command_with_its_own_first_sentence(self) -> None:
        """The lines --help lists (kept in orchestra_cli.main so that listing imports
        nothing) are the commands' own first sentences."""
        import click

        from orchestra_cli.main import _COMMANDS, cli

        context = click.Context(cli)
        for name, (_, _, line) in _COMMANDS.items():
            command = cli.get_command(context, name)
            assert command is not None
            assert command.get_short_help_str(limit=500) == line, name

    def test_compile_loads_nothing_a_run_needs(self) -> None:
        example = Path(__file__).resolve().parents[1] / "examples" / "agents" / "change.dot"
        assert self.loaded_by("compile", str(example)) == []
