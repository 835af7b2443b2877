"""``orchestra cleanup``: remove stale session worktrees and branches."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import click

from orchestra.attributes import AttrType, Duration, convert
from orchestra.errors import OrchestraError
from orchestra.store.location import is_cxdb, open_store, resolve_store
from orchestra_cli.run import _STORE_HELP, EXIT_INVALID


def _duration(value: str) -> float:
    try:
        parsed = convert(value, AttrType.DURATION)
    except ValueError as err:
        raise click.BadParameter(f"{err} (e.g. 7d, 12h, 30m)", param_hint="--older-than") from None
    assert isinstance(parsed, Duration)
    return parsed.seconds


@click.command("cleanup")
@click.option(
    "--older-than",
    "older_than",
    default="7d",
    show_default=True,
    metavar="DURATION",
    help="Remove session branches whose session last changed longer ago than this "
    "(7d, 12h, 30m, 0s for all).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option(
    "--include-crashed",
    is_flag=True,
    help="Also remove the branches of interrupted or crashed sessions, which could "
    "otherwise be resumed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
def cleanup_command(
    older_than: str, dry_run: bool, include_crashed: bool, as_json: bool, store_path: str | None
) -> None:
    """Remove what finished sessions left in the repositories of workspace.repos.

    Worktrees (.orchestra/worktrees/SESSION) of sessions that are not running go: a resume
    checks them out again. Session branches (orchestra/PIPELINE/SESSION, and their
    parallel branches) go once older than --older-than, when their session finished or its
    state is gone; a running session's never, an interrupted or crashed one's only with
    --include-crashed. Remotes are never touched. Reads orchestra.yaml from the working
    directory or its parents.

    Exit status: 0 done, 2 a store, configuration or repository could not be read.
    """
    seconds = _duration(older_than)

    async def main() -> object:
        from orchestra.backends.configured import load_settings
        from orchestra.workspace.cleanup import cleanup, worktrees_directory

        config = load_settings().config
        spec = resolve_store(store_path)
        worktrees = worktrees_directory(spec, config)
        if not is_cxdb(spec) and not Path(spec).exists():
            spec = ":memory:"  # no sessions: every branch's state is gone
        store = await open_store(spec)
        try:
            return await cleanup(
                store,
                config,
                older_than=seconds,
                worktrees=worktrees,
                dry_run=dry_run,
                include_crashed=include_crashed,
            )
        finally:
            await store.close()

    try:
        report = anyio.run(main)
    except OrchestraError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_INVALID)
    from orchestra.workspace.cleanup import CleanupReport, report_event

    assert isinstance(report, CleanupReport)
    if as_json:
        click.echo(json.dumps(report_event(report).to_json()))
        return
    verb = "would remove" if dry_run else "removed"
    for path in report.removed_worktrees:
        click.echo(f"{verb} worktree {path}")
    for branch in report.removed_branches:
        click.echo(f"{verb} branch {branch}")
    for kept in report.kept:
        click.echo(click.style(f"kept {kept.what}: {kept.reason}", dim=True))
    if not (report.removed_worktrees or report.removed_branches):
        click.echo("nothing to remove")
