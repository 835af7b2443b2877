"""``orchestra doctor``: check that this machine can run pipelines, and say how to fix it."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import anyio
import attrs
import click

from orchestra_cli.run import _STORE_HELP, EXIT_FAILED, EXIT_SUCCESS

if TYPE_CHECKING:
    from orchestra.doctor import Finding

_MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


def _line(finding: Finding) -> str:
    mark, colour = _MARKS[finding.status]
    text = f"{click.style(mark, fg=colour)} {finding.check}: {finding.detail}"
    return f"{text}  → {finding.fix}" if finding.fix else text


def _summary(findings: list[Finding]) -> str:
    failed = sum(f.status == "fail" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    if not failed and not warned:
        return "everything is ready"
    parts = [f"{failed} failed"] if failed else []
    if warned:
        parts.append(f"{warned} warning{'' if warned == 1 else 's'}")
    return ", ".join(parts)


@click.command("doctor")
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the checks as a JSON array of {check, status, detail, fix}.",
)
def doctor_command(store_path: str | None, as_json: bool) -> None:
    """Check the store, orchestra.yaml, provider keys, git and Python.

    One line per check: ✓ fine, ! a warning (runs work), ✗ a problem, each problem with
    its fix. Provider keys are reported as set or not set, never shown.

    Exit status: 0 nothing failed (warnings allowed), 1 a check failed.
    """
    from orchestra.doctor import check  # httpx and the CXDB client: only when asked

    findings = anyio.run(check, store_path)
    if as_json:
        click.echo(json.dumps([attrs.asdict(f) for f in findings], indent=2))
    else:
        for finding in findings:
            click.echo(_line(finding))
        click.echo(_summary(findings))
    failed = any(f.status == "fail" for f in findings)
    sys.exit(EXIT_FAILED if failed else EXIT_SUCCESS)
