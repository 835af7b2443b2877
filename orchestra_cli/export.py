"""``orchestra export``: copy a session to another store (a CXDB server, or a file)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import anyio
import click

from orchestra.errors import OrchestraError, StoreError
from orchestra.export import export_session
from orchestra.store.location import is_cxdb, open_store, resolve_store
from orchestra_cli.run import _STORE_HELP, EXIT_INVALID


@click.command("export")
@click.argument("session", type=click.IntRange(min=1))
@click.option(
    "--to",
    "target_spec",
    required=True,
    metavar="PATH|URL",
    help="The store to copy into: a path (the embedded store; created if needed) or "
    "cxdb://HOST:9009?http=HOST:9010.",
)
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
def export_command(session: int, target_spec: str, store_path: str | None) -> None:
    """Copy SESSION, turn for turn, into the store --to names, as a new session there.

    The copy can be listed, looked at and resumed on the target like the original (for a
    local run shared on a CXDB server, or a server's session brought home). Prints the new
    session's id and the command to look at it.

    Exit status: 0 copied, 2 the session or a store could not be read or written.
    """

    async def main() -> tuple[str, str]:
        source_spec = resolve_store(store_path)
        if not is_cxdb(source_spec) and not Path(source_spec).exists():
            raise StoreError(f"{source_spec} does not exist: there are no sessions to export")
        source = await open_store(source_spec)
        try:
            # An unknown session is refused before the target is opened: opening an
            # embedded store creates its file.
            await source.get_head(session)
            if _same_store(source_spec, target_spec):
                raise StoreError(
                    f"--to {target_spec} is the store the session is in: exporting would only "
                    "make a duplicate; give another path or a CXDB server"
                )
            target = await open_store(target_spec)
            try:
                return await export_session(source, str(session), target), source.location
            finally:
                await target.close()
        finally:
            await source.close()

    try:
        copied, origin = anyio.run(main)
    except OrchestraError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(f"exported session {session} from {origin} to {target_spec} as session {copied}")
    click.echo(
        f"look at it with:  orchestra status {copied} --store {shlex.quote(target_spec)} --detail"
    )


def _same_store(source: str, target: str) -> bool:
    if is_cxdb(source) or is_cxdb(target):
        return source == target
    return Path(source).resolve() == Path(target).resolve()
