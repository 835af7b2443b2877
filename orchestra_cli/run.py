"""``orchestra run``, ``resume`` and ``status``: execute pipelines and look at sessions."""

from __future__ import annotations

import gc
import json
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import click

from orchestra.config import BACKENDS
from orchestra.engine.runner import RunResult
from orchestra.engine.session import SessionState, load_session
from orchestra.engine.usage import total_usage
from orchestra.errors import (
    ContextNotFound,
    HumanUnavailable,
    OrchestraError,
    RunDirectoryError,
    StoreError,
    ValidationError,
)
from orchestra.events import Event
from orchestra.interviewer.base import AutoApproveInterviewer, Interviewer, NoTerminalInterviewer
from orchestra.pipeline import Pipeline, replay, resume
from orchestra.store.base import Store
from orchestra.store.location import is_cxdb, open_store, resolve_store
from orchestra_cli.progress import JsonLines, Progress, summary, usage_lines

EXIT_SUCCESS, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

_BACKEND_HELP = (
    "How LLM stages run: 'agent' (Orchestra's tool loop), 'direct' (one model call, no "
    "tools), 'cli_agent' (Claude Code or Codex as a subprocess), 'simulation' (no model, no "
    "key). Default: backend in orchestra.yaml, else 'agent' when ANTHROPIC_API_KEY or "
    "OPENAI_API_KEY is set (also from .env), else 'simulation'. A node's backend= wins."
)
_STORE_HELP = (
    "Where sessions are kept: a path (the embedded SQLite store) or a CXDB server as "
    "cxdb://HOST:9009?http=HOST:9010. Default: $CXDB_URL, else cxdb.url in orchestra.yaml, "
    "else .orchestra/state.db"
)


def _parse_variables(pairs: tuple[str, ...]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise click.BadParameter(
                f"expected key=value with key a name, got {pair!r}", param_hint="VARIABLES"
            )
        variables[key.strip()] = value
    return variables


_auto_approve = click.option(
    "--auto-approve",
    is_flag=True,
    help="Answer every human gate with its first choice and end every chat at once (/done), "
    "for CI and demos.",
)


def _answering(command: Callable[..., None]) -> Callable[..., None]:
    """How questions are answered (run, resume): --auto-approve, --wait-for-answers,
    --multi-line."""
    for option in reversed(
        (
            _auto_approve,
            click.option(
                "--wait-for-answers",
                is_flag=True,
                help="Wait at each human gate and chat for `orchestra answer SESSION` (from "
                "any terminal sharing the store) instead of asking here.",
            ),
            click.option(
                "--multi-line",
                is_flag=True,
                help="In a chat with an agent, Enter starts a new line and Alt+Enter (or Esc "
                "Enter) sends, so pasted code keeps its lines.",
            ),
        )
    ):
        command = option(command)
    return command


def _interviewer(
    auto_approve: bool,
    wait_for_answers: bool = False,
    store: Store | None = None,
    *,
    multi_line: bool = False,
) -> Interviewer:
    """--auto-approve's; --wait-for-answers's (answers come through the store, from
    `orchestra answer`); else the terminal's; with no terminal on stdin, one that stops the
    run at the first question (exit 2) instead of answering it for the person."""
    if auto_approve:
        return AutoApproveInterviewer()
    if wait_for_answers and store is not None:
        from orchestra.answers import StoreInterviewer

        return StoreInterviewer(store)
    if not sys.stdin.isatty():
        return NoTerminalInterviewer(
            "pass --auto-approve to take each gate's first choice and end each chat at once, "
            "--wait-for-answers to answer with `orchestra answer SESSION`, or run it in a "
            "terminal"
        )
    from orchestra.interviewer.console import ConsoleInterviewer

    return ConsoleInterviewer(multi_line=multi_line)


def _listener(as_json: bool, quiet: bool) -> Callable[[Event], None]:
    return JsonLines() if as_json else Progress(quiet=quiet)


def _finish(result: RunResult, as_json: bool) -> None:
    if not as_json:
        click.echo(summary(result))
    sys.exit(EXIT_SUCCESS if result.succeeded else EXIT_FAILED)


class _Interrupted(Exception):
    pass


async def _cancel_on_signal(main: Callable[[], Awaitable[RunResult]]) -> RunResult:
    """Run ``main``; the first SIGINT or SIGTERM cancels it cleanly (the running node is
    stopped, its processes killed, the last checkpoint kept) instead of raising
    KeyboardInterrupt at whatever line the event loop happened to be on."""
    interrupted = False
    result: RunResult | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted = True
                    group.cancel_scope.cancel()
                    return

        group.start_soon(watch)
        try:
            result = await main()
        except Exception as err:  # re-raised below as itself, not inside an ExceptionGroup
            failure = err
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if interrupted or result is None:
        raise _Interrupted
    return result


def _store_option(store_path: str | None) -> str:
    """`` --store X`` for a hint to paste, when the store was not the default one."""
    return f" --store {shlex.quote(store_path)}" if store_path else ""


def _freeze_heap() -> None:
    """Move what the CLI has loaded so far (modules, the parsed pipeline) out of the
    garbage collector's sight: a full collection of it takes tens of milliseconds, and
    would otherwise land at random moments of the run (mid fan-out, say)."""
    gc.collect()
    gc.freeze()


def _run_guarded(
    main: Callable[[], Awaitable[RunResult]],
    as_json: bool,
    session: Callable[[], str | None],
    listener: Callable[[Event], None] | None = None,
    store_path: str | None = None,
) -> None:
    """Run ``main`` and turn every way it can end into a message and an exit code;
    ``listener`` (the progress view) is closed first, however it ends."""
    # Keep asyncio's own SIGINT handler out: it cancels the event loop's root task natively,
    # behind anyio's back, which can leave the loop waiting forever. _cancel_on_signal
    # handles the signal instead.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            result = anyio.run(_cancel_on_signal, main)
        finally:
            close = getattr(listener, "close", None)
            if callable(close):
                close()  # a spinner must not draw over what is printed next
    except (_Interrupted, KeyboardInterrupt):
        session_id = session()
        if session_id:
            click.echo(
                f"\ninterrupted; everything up to the last checkpoint is saved. "
                f"Continue with:  orchestra resume {session_id}{_store_option(store_path)}",
                err=True,
            )
        else:
            click.echo("\ninterrupted before the run started", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ValidationError as err:
        click.echo(str(err), err=True)
        sys.exit(EXIT_INVALID)
    except (StoreError, RunDirectoryError, HumanUnavailable) as err:
        click.echo(f"error: {err}", err=True)
        session_id = session()
        if session_id and not isinstance(err, ContextNotFound):
            click.echo(
                "once that is fixed, continue with:  "
                f"orchestra resume {session_id}{_store_option(store_path)}",
                err=True,
            )
        sys.exit(EXIT_INVALID)
    except OrchestraError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_INVALID)
    finally:
        signal.signal(signal.SIGINT, previous)
    _finish(result, as_json)


_RUN_EXAMPLES = """\b
Examples:
  orchestra run examples/fan-out.dot
  orchestra run examples/pr-review/pr-review.dot --auto-approve
  orchestra run examples/pr-review/pr-review.dot repo=../app base=main head=feature
  orchestra run examples/pr-review/pr-review.dot pr_number=123 post=true
  orchestra run examples/brainstorm/brainstorm.dot --multi-line
  orchestra run pipeline.dot --wait-for-answers   # answer with: orchestra answer SESSION
"""


@click.command("run", epilog=_RUN_EXAMPLES)
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("variables", nargs=-1)
@_answering
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help=_BACKEND_HELP)
@click.option(
    "--logs-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory to write (default .orchestra/runs/SESSION); it must be empty or new.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a --logs-root that already holds files (an earlier run's are overwritten).",
)
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print every event as one JSON object per line instead of progress.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
def run_command(
    file: Path,
    variables: tuple[str, ...],
    auto_approve: bool,
    wait_for_answers: bool,
    multi_line: bool,
    backend: str | None,
    logs_root: Path | None,
    force: bool,
    store_path: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run the pipeline FILE, with optional VARIABLES as key=value pairs.

    Variables are available to prompts and tool commands as {{ key }}. Progress shows
    each stage as it starts and ends; the state is checkpointed after every stage, so an
    interrupted or crashed run continues with `orchestra resume SESSION`.

    Exit status: 0 success, 1 the pipeline failed, 2 invalid input, 130 interrupted.
    """
    values = _parse_variables(variables)
    holder: dict[str, Pipeline] = {}
    if logs_root is not None and not force and logs_root.is_dir() and any(logs_root.iterdir()):
        click.echo(
            f"error: --logs-root {logs_root} already holds files (an earlier run's?); pick a "
            "new or empty directory, or pass --force to write over them",
            err=True,
        )
        sys.exit(EXIT_INVALID)

    async def main() -> RunResult:
        store = await open_store(store_path)
        try:
            pipeline = Pipeline.load(
                file,
                variables=values,
                store=store,
                backend=backend,
                interviewer=_interviewer(
                    auto_approve, wait_for_answers, store, multi_line=multi_line
                ),
                logs_root=logs_root,
            )
            holder["pipeline"] = pipeline
            if not (as_json or quiet):
                for warning in pipeline.diagnostics:  # errors stopped the load already
                    click.echo(click.style(warning.render(str(file)), fg="yellow"), err=True)
            _freeze_heap()
            return await pipeline.run(on_event=listener)
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    listener = _listener(as_json, quiet)
    _run_guarded(
        main,
        as_json,
        lambda: holder["pipeline"].session_id if "pipeline" in holder else None,
        listener,
        store_path,
    )


@click.command("resume")
@click.argument("session")
@click.option(
    "--turn",
    type=int,
    default=None,
    metavar="TURN",
    help="Continue from this turn recorded inside a node (an agent's model call or tool "
    "result; `orchestra status SESSION --detail` lists them) instead of the last "
    "checkpoint. The session is forked there; the original is kept.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Resume even though the pipeline's DOT file changed since the run began.",
)
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help=_BACKEND_HELP)
@_answering
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print every event as a JSON line.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
def resume_command(
    session: str,
    turn: int | None,
    force: bool,
    backend: str | None,
    auto_approve: bool,
    wait_for_answers: bool,
    multi_line: bool,
    store_path: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Continue SESSION from its last checkpoint, in its own run directory.

    Stages that completed before the crash or interrupt do not run again, and an agent
    stopped mid-node goes on from its recorded turns without calling its tools again.
    Refuses a finished session (unless --turn), and one whose DOT file changed since it
    began unless --force.
    """
    holder: dict[str, str] = {}
    listener = _listener(as_json, quiet)

    def both(event: Event) -> None:
        holder.setdefault("session", event.session_id)  # a fork's own id, with --turn
        listener(event)

    async def main() -> RunResult:
        store = await open_store(store_path)
        try:
            _freeze_heap()
            return await resume(
                session,
                store=store,
                force=force,
                turn=turn,
                backend=backend,
                interviewer=_interviewer(
                    auto_approve, wait_for_answers, store, multi_line=multi_line
                ),
                on_event=both,
            )
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    _run_guarded(main, as_json, lambda: holder.get("session", session), listener, store_path)


@click.command("replay")
@click.argument("session")
@click.option(
    "--checkpoint",
    "checkpoint_turn",
    type=int,
    required=True,
    metavar="TURN",
    help="The checkpoint turn id to start from (`orchestra status SESSION --detail` lists them).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replay even though the pipeline's DOT file changed since the session began.",
)
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help=_BACKEND_HELP)
@_auto_approve
@click.option(
    "--logs-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory of the new session. Default: .orchestra/runs/NEW_SESSION",
)
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print every event as a JSON line.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
def replay_command(
    session: str,
    checkpoint_turn: int,
    force: bool,
    backend: str | None,
    auto_approve: bool,
    logs_root: Path | None,
    store_path: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Fork SESSION at checkpoint TURN and run the fork from there as a new session.

    The original session is untouched; the new one shares its history up to TURN (on a
    CXDB server the fork copies nothing) and gets its own run directory.
    """
    holder: dict[str, str] = {}
    listener = _listener(as_json, quiet)

    def both(event: Event) -> None:
        holder.setdefault("session", event.session_id)  # the new session, for Ctrl-C's hint
        listener(event)

    async def main() -> RunResult:
        store = await open_store(store_path)
        try:
            _freeze_heap()
            return await replay(
                session,
                checkpoint_turn,
                store=store,
                force=force,
                backend=backend,
                logs_root=logs_root,
                interviewer=_interviewer(auto_approve),
                on_event=both,
            )
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    _run_guarded(main, as_json, lambda: holder.get("session"), listener, store_path)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def _session_row(state: SessionState) -> dict[str, Any]:
    return {
        "session_id": state.session_id,
        "pipeline": state.pipeline,
        "status": state.status,
        "current_node": state.position or None,
        "started": _when(state.started_ms),
        "duration": round((state.updated_ms - state.started_ms) / 1000, 3)
        if state.started_ms
        else None,
        "completed_nodes": list(state.completed_nodes),
        "logs_root": state.logs_root or None,
    }


@click.command("status")
@click.argument("session", required=False)
@click.option(
    "--detail",
    is_flag=True,
    help="With SESSION: tokens and cost per node, and every stage in order with its "
    "outcome and checkpoint turn id.",
)
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status_command(
    session: str | None, detail: bool, store_path: str | None, as_json: bool
) -> None:
    """List sessions (newest first), or show one SESSION's path and outcomes."""
    try:
        target = resolve_store(store_path)
    except StoreError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_INVALID)
    path = Path(target)
    if not is_cxdb(target) and not path.exists():
        if session is not None:  # asked about one session: there is none to show
            click.echo(f"error: session {session} does not exist ({path} does not exist)", err=True)
            sys.exit(EXIT_INVALID)
        if as_json:
            click.echo("[]")
        else:
            click.echo(
                f"no sessions yet ({path} does not exist); start one with `orchestra run FILE.dot`"
            )
        return

    async def main() -> list[SessionState]:
        store = await open_store(target)
        try:
            if session is not None:
                return [await load_session(store, session)]
            return [
                await load_session(store, str(c.context_id)) for c in await store.list_contexts()
            ]
        finally:
            await store.close()

    try:
        states = anyio.run(main)
    except StoreError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_INVALID)
    if session is not None:
        _show_session(states[0], detail, as_json)
        return
    rows = [_session_row(s) for s in states]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no sessions yet; start one with `orchestra run FILE.dot`")
        return
    headers = ("session", "pipeline", "status", "current node", "started", "duration")
    table = [
        (
            r["session_id"],
            r["pipeline"],
            r["status"],
            r["current_node"] or "-",
            r["started"],
            f"{r['duration']:.1f}s" if r["duration"] is not None else "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(str(row[i])) for row in table)) for i, h in enumerate(headers)]
    click.echo(
        click.style(
            "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)), bold=True
        )
    )
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _records(state: SessionState) -> list[dict[str, Any]]:
    """The turns recorded inside nodes, each with a line on what it holds."""
    from orchestra.backends.agent import describe_record

    listed = []
    for turn, node, kind, entries in state.records:
        summary = describe_record(kind, entries)
        moved = state.workspace_moves.get(turn)
        if summary is None and moved:
            summary = kind
        if summary is not None:
            listed.append(
                {
                    "turn_id": turn,
                    "node_id": node,
                    "kind": kind,
                    "summary": summary,
                    "workspace": moved,
                }
            )
    return listed


#: how much of the agent's last chat message `status` shows
_SAID_CHARS = 300


def _heads_text(moved: Mapping[str, str] | None) -> str:
    """``app 1a2b3c4, app@b 5d6e7f8``: the worktree heads a turn recorded."""
    if not moved:
        return ""
    return "  " + ", ".join(
        f"{key} {sha[:7]}" if sha else f"{key} removed" for key, sha in sorted(moved.items())
    )


def _show_session(state: SessionState, detail: bool, as_json: bool) -> None:
    from orchestra.answers import pending_question

    row = _session_row(state)
    pending = pending_question(state) if state.status == "running" else None
    records = _records(state) if detail or as_json else []
    checkpoints = [
        {
            "turn_id": turn,
            "node_id": node,
            "outcome": state.node_outcomes.get(node, {}).get("outcome"),
            "time": _when(ms),
            "workspace": state.workspace_moves.get(turn),
        }
        for turn, node, ms in state.checkpoints
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    **row,
                    "checkpoints": checkpoints,
                    "records": records,
                    "node_outcomes": state.node_outcomes,
                    "usage": state.usage,
                    "usage_total": total_usage(state.usage),
                    "end_reason": state.end_reason or None,
                    "pending_question": (
                        {
                            "node_id": pending.node_id,
                            "text": pending.text,
                            "options": [[o.key, o.label] for o in pending.options],
                            "chat": pending.chat,
                            "details": pending.details,
                        }
                        if pending is not None
                        else None
                    ),
                },
                indent=2,
            )
        )
        return
    click.echo(
        click.style(f"session {state.session_id}", bold=True)
        + f"  {state.pipeline}  {state.status}"
    )
    click.echo(f"  started: {row['started']}   current node: {row['current_node'] or '-'}")
    if state.end_reason:
        click.echo(f"  reason: {state.end_reason}")
    click.echo(f"  path: {' → '.join(state.completed_nodes) or '(no stage completed)'}")
    if state.logs_root:
        click.echo(f"  logs: {state.logs_root}")
    if pending is not None:
        choices = ", ".join(
            o.label if o.label.startswith("[") else f"[{o.key}] {o.label}" for o in pending.options
        )
        how = "--choice KEY" if pending.options else '--text "..."'
        if pending.chat:
            said = pending.details.strip()
            if len(said) > _SAID_CHARS:
                said = "…" + said[-_SAID_CHARS:]
            if said:
                click.echo(click.style(f"  the agent said: {said}", dim=True))
            how += "   (--text /done ends the chat, --text /reject rejects it)"
        click.echo(
            click.style(f"  waiting at {pending.node_id}: {pending.text}", fg="yellow")
            + (f"  {choices}" if choices else "")
            + f"\n  answer with:  orchestra answer {state.session_id} {how}"
        )
    spent = usage_lines(state.usage)
    if spent:
        click.echo("\n".join(spent if detail else spent[:1]))
    if detail:
        click.echo()
        click.echo(click.style("  TURN   NODE                 OUTCOME          TIME", bold=True))
        rows = [
            (
                cp["turn_id"],
                f"{cp['node_id']:<20} {cp['outcome'] or '-':<16} {cp['time']}"
                + _heads_text(cp["workspace"]),
            )
            for cp in checkpoints
        ] + [
            (
                r["turn_id"],
                click.style(
                    f"{r['node_id']:<20} · {r['summary']}{_heads_text(r['workspace'])}", dim=True
                ),
            )
            for r in records
        ]
        for turn, text in sorted(rows, key=lambda row: int(str(row[0]))):
            click.echo(f"  {turn:<6} {text}")
        if records:
            click.echo(
                f"\n  (dimmed: turns inside nodes; `orchestra resume {state.session_id} "
                "--turn TURN` continues from one)"
            )
