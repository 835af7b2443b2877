"""Rendering engine events for a person (live progress) or a program (JSON lines)."""

from __future__ import annotations

import json
import sys
from typing import TextIO

import click

from orchestra.engine.runner import RunResult
from orchestra.events import (
    Event,
    InterviewCompleted,
    InterviewTimeout,
    ParallelCompleted,
    ParallelStarted,
    PipelineStarted,
    StageCompleted,
    StageFailed,
    StageRetrying,
    StageStarted,
)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class JsonLines:
    """One JSON object per event on stdout, flushed, for programs to follow."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        self.out.write(json.dumps(event.to_json(), default=str) + "\n")
        self.out.flush()


class Progress:
    """Each stage as it starts and ends, with duration, retries and outcome.

    On a terminal, a stage's "started" line is replaced by its result when nothing else was
    printed in between; parallel branches print with their branch name in front.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.width = 12
        self.live = sys.stdout.isatty()
        self._open_line: str | None = None

    def echo(self, text: str, *, opens: str | None = None) -> None:
        if not self.quiet:
            click.echo(text)
            self._open_line = opens

    def _replace(self, node_id: str | None) -> None:
        if self.live and not self.quiet and node_id is not None and self._open_line == node_id:
            click.echo("\x1b[1A\x1b[2K", nl=False)

    def _name(self, node_id: str | None, branch: str | None) -> str:
        if branch is None:
            return f"{node_id or '':<{self.width}}"
        name = node_id if branch == node_id else f"{branch} / {node_id}"
        return f"│ {name or '':<{self.width - 2}}"

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def _on_PipelineStarted(self, event: PipelineStarted) -> None:
        verb = "resuming" if event.resumed else "running"
        self.echo(
            click.style(f"{verb} {event.pipeline}", bold=True)
            + f"  session {event.session_id}"
            + (f"  goal: {event.goal}" if event.goal else "")
        )

    def _on_StageStarted(self, event: StageStarted) -> None:
        self.width = max(self.width, len(event.node_id or ""))
        attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        self.echo(
            "  "
            + click.style("▸", fg="cyan")
            + " "
            + self._name(event.node_id, event.branch)
            + click.style(f"  {event.handler}{attempt} ...", dim=True),
            opens=event.node_id,
        )

    def _on_StageCompleted(self, event: StageCompleted) -> None:
        self._replace(event.node_id)
        retries = f", {event.attempts} attempts" if event.attempts > 1 else ""
        status = "" if event.status == "success" else f" {event.status}"
        self.echo(
            "  "
            + click.style("✓", fg="green")
            + " "
            + self._name(event.node_id, event.branch)
            + f"  {_duration(event.duration)}{status}{retries}"
        )

    def _on_StageFailed(self, event: StageFailed) -> None:
        self._replace(event.node_id)
        colour = "yellow" if event.will_retry else "red"
        self.echo(
            "  "
            + click.style("✗", fg=colour)
            + " "
            + self._name(event.node_id, event.branch)
            + f"  {_duration(event.duration)}  "
            + click.style(event.error, fg=colour)
        )

    def _on_StageRetrying(self, event: StageRetrying) -> None:
        self.echo(
            "  "
            + click.style("↻", fg="yellow")
            + " "
            + self._name(event.node_id, event.branch)
            + f"  retrying in {event.delay:.1f}s (attempt {event.attempt})"
        )

    def _on_ParallelStarted(self, event: ParallelStarted) -> None:
        self.echo(
            "  " + click.style("⇉", fg="cyan") + " " + f"{event.node_id}: {event.branch_count} "
            f"branches ({', '.join(event.branches)})"
        )

    def _on_ParallelCompleted(self, event: ParallelCompleted) -> None:
        self.echo(
            "  " + click.style("⇇", fg="cyan") + " " + f"{event.node_id}: {event.success_count} "
            f"succeeded, {event.failure_count} failed in {_duration(event.duration)}"
        )

    def _on_InterviewCompleted(self, event: InterviewCompleted) -> None:
        self.echo(
            "  " + click.style("?", fg="magenta") + " " + f"{event.question} -> {event.answer}"
        )

    def _on_InterviewTimeout(self, event: InterviewTimeout) -> None:
        self.echo(
            "  " + click.style("?", fg="yellow") + " " + f"{event.question}: no answer after "
            f"{_duration(event.duration)}"
        )


def summary(result: RunResult) -> str:
    path = " → ".join(result.completed_nodes) or "(no stage ran)"
    if result.succeeded:
        head = click.style(f"✔ success in {_duration(result.duration)}", fg="green", bold=True)
    else:
        head = click.style(f"✘ failed after {_duration(result.duration)}", fg="red", bold=True)
        head += f": {result.failure_reason}"
    lines = [
        head,
        f"  path: {path}",
        f"  logs: {result.logs_root}",
        f"  session: {result.session_id}",
    ]
    return "\n".join(lines)
