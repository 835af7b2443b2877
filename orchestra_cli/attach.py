"""``orchestra attach SESSION``: follow a session run elsewhere, with run's progress view."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import click

from orchestra.engine.runner import RunResult
from orchestra.errors import OrchestraError
from orchestra.events import Event, PipelineCompleted, PipelineFailed
from orchestra.follow import follow
from orchestra.store.location import open_store
from orchestra_cli.progress import JsonLines, Progress, summary
from orchestra_cli.run import (
    _STORE_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_SUCCESS,
)


@click.command("attach")
@click.argument("session")
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print every event as a JSON line.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
def attach_command(session: str, store_path: str | None, as_json: bool, quiet: bool) -> None:
    """Follow SESSION as it runs (from another terminal, or another machine sharing a CXDB
    server), showing what `orchestra run` shows, from its start until it ends.

    A finished session is shown from start to end. Ctrl-C detaches; the run goes on.
    Exit status: 0 the session succeeded, 1 it failed or crashed, 2 no such session,
    130 detached.
    """
    listener = JsonLines() if as_json else Progress(quiet=quiet)

    if not session.isdigit():
        click.echo(f"error: '{session}' is not a session id (a number)", err=True)
        sys.exit(EXIT_INVALID)

    async def main() -> Event | None:
        store = await open_store(store_path)
        last: Event | None = None
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as group:

                async def detach_on_signal() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            group.cancel_scope.cancel()
                            return

                group.start_soon(detach_on_signal)
                try:
                    async for event in follow(store, session):
                        listener(event)
                        last = event
                except Exception as err:  # raised below as itself, not in an ExceptionGroup
                    failure = err
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()
        if failure is not None:
            raise failure
        return last

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        last = anyio.run(main)
    except OrchestraError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_INVALID)
    finally:
        signal.signal(signal.SIGINT, previous)
        if isinstance(listener, Progress):
            listener.close()  # a chat's spinner must not draw over what follows
    if not isinstance(last, PipelineCompleted | PipelineFailed):
        click.echo(f"\ndetached from session {session}; the run goes on", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if not as_json:
        click.echo(summary(_result(last)))
    sys.exit(EXIT_SUCCESS if isinstance(last, PipelineCompleted) else EXIT_FAILED)


def _result(event: PipelineCompleted | PipelineFailed) -> RunResult:
    return RunResult(
        session_id=event.session_id,
        status="success" if isinstance(event, PipelineCompleted) else event.status,
        completed_nodes=event.completed_nodes,
        context={},
        logs_root=Path(event.logs_root),
        failure_reason=event.error if isinstance(event, PipelineFailed) else "",
        duration=event.duration,
    )
