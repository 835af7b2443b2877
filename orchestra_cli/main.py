"""The ``orchestra`` command: parses arguments, calls the library, renders the result."""

from __future__ import annotations

import importlib

import click

#: each command: where it is defined, and the line `orchestra --help` lists it with (the
#: first sentence of its docstring, which a test keeps in step), so that listing the
#: commands imports none of them: `run` alone would load the engine
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "orchestra_cli.run",
        "run_command",
        "Run the pipeline FILE, with optional VARIABLES as key=value pairs.",
    ),
    "resume": (
        "orchestra_cli.run",
        "resume_command",
        "Continue SESSION from its last checkpoint, in its own run directory.",
    ),
    "status": (
        "orchestra_cli.run",
        "status_command",
        "List sessions (newest first), or show one SESSION's path and outcomes.",
    ),
    "replay": (
        "orchestra_cli.run",
        "replay_command",
        "Fork SESSION at checkpoint TURN and run the fork from there as a new session.",
    ),
    "attach": (
        "orchestra_cli.attach",
        "attach_command",
        "Follow SESSION as it runs (from another terminal, or another machine sharing a "
        "CXDB server), showing what `orchestra run` shows, from its start until it ends.",
    ),
    "compile": (
        "orchestra_cli.compile",
        "compile_command",
        "Parse, transform and validate the pipeline FILE without running it.",
    ),
    "doctor": (
        "orchestra_cli.doctor",
        "doctor_command",
        "Check the store, orchestra.yaml, provider keys, git and Python.",
    ),
    "export": (
        "orchestra_cli.export",
        "export_command",
        "Copy SESSION, turn for turn, into the store --to names, as a new session there.",
    ),
    "answer": (
        "orchestra_cli.answer",
        "answer_command",
        "Answer the question SESSION waits on (a run started with --wait-for-answers).",
    ),
    "cleanup": (
        "orchestra_cli.cleanup",
        "cleanup_command",
        "Remove what finished sessions left in the repositories of workspace.repos.",
    ),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = _COMMANDS.get(cmd_name)
        if where is None:
            return None
        command = getattr(importlib.import_module(where[0]), where[1])
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands with their lines from ``_COMMANDS``, shortened as click would."""
        limit = formatter.width - 6 - max(len(name) for name in _COMMANDS)
        rows = [(name, _shorten(help_line, limit)) for name, (_, _, help_line) in _COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 0)].rsplit(" ", 1)[0] + "..."


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="orchestra", prog_name="orchestra")
def cli() -> None:
    """Orchestra runs multi-stage AI workflows written as Graphviz DOT files.

    A pipeline is a `digraph`: nodes are stages (LLM agents, human gates, shell tools,
    conditional routing, parallel fan-out and fan-in), edges are transitions with
    conditions, labels and weights (the Attractor specification).
    """
