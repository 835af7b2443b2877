"""The ``orchestra`` command: parses arguments, calls the library, renders the result."""

from __future__ import annotations

import importlib

import click

#: each command and where it is defined; a command's module is imported only when that
#: command runs (or --help lists it), so `orchestra compile` does not load the engine
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("orchestra_cli.run", "run_command"),
    "resume": ("orchestra_cli.run", "resume_command"),
    "status": ("orchestra_cli.run", "status_command"),
    "replay": ("orchestra_cli.run", "replay_command"),
    "attach": ("orchestra_cli.attach", "attach_command"),
    "compile": ("orchestra_cli.compile", "compile_command"),
    "doctor": ("orchestra_cli.doctor", "doctor_command"),
    "export": ("orchestra_cli.export", "export_command"),
    "cleanup": ("orchestra_cli.cleanup", "cleanup_command"),
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


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="orchestra", prog_name="orchestra")
def cli() -> None:
    """Orchestra runs multi-stage AI workflows written as Graphviz DOT files.

    A pipeline is a `digraph`: nodes are stages (LLM agents, human gates, shell tools,
    conditional routing, parallel fan-out and fan-in), edges are transitions with
    conditions, labels and weights (the Attractor specification).
    """
