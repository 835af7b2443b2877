"""The ``orchestra`` command: parses arguments, calls the library, renders the result."""

from __future__ import annotations

import click

from orchestra_cli.attach import attach_command
from orchestra_cli.compile import compile_command
from orchestra_cli.doctor import doctor_command
from orchestra_cli.export import export_command
from orchestra_cli.run import replay_command, resume_command, run_command, status_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="orchestra", prog_name="orchestra")
def cli() -> None:
    """Orchestra runs multi-stage AI workflows written as Graphviz DOT files.

    A pipeline is a `digraph`: nodes are stages (LLM agents, human gates, shell tools,
    conditional routing, parallel fan-out and fan-in), edges are transitions with
    conditions, labels and weights (the Attractor specification).
    """


cli.add_command(run_command)
cli.add_command(resume_command)
cli.add_command(status_command)
cli.add_command(replay_command)
cli.add_command(attach_command)
cli.add_command(compile_command)
cli.add_command(doctor_command)
cli.add_command(export_command)
