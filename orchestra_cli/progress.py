"""Rendering engine events for a person (live progress) or a program (JSON lines)."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import unicodedata
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import attrs
import click

from orchestra.engine.runner import RunResult
from orchestra.engine.usage import total_usage
from orchestra.events import (
    AgentCommitCreated,
    ChatMessage,
    Event,
    InterviewCompleted,
    InterviewStarted,
    InterviewTimeout,
    MergeConflict,
    ParallelBranchCompleted,
    ParallelBranchStarted,
    ParallelCompleted,
    ParallelStarted,
    PipelineStarted,
    PushFailed,
    SessionBranchCreated,
    SessionBranchPushed,
    StageActivity,
    StageCompleted,
    StageFailed,
    StageRetrying,
    StageStarted,
    WorktreeMerged,
)
from orchestra_cli.chatview import Spinner, render_message

#: moves the cursor to the line above and clears it
_UP_AND_ERASE = "\x1b[1A\x1b[2K"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _tokens(count: float) -> str:
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    return f"{count:,.0f}"


def _cost(usd: float) -> str:
    return f"${usd:.4f}" if usd < 1 else f"${usd:,.2f}"


def usage_text(usage: Mapping[str, Any] | None) -> str:
    """An LLM stage's spend in a few words: ``1,200 in / 340 out tok, $0.0084``."""
    if not usage:
        return ""
    parts = []
    if (usage.get("runs") or 0) > 1:
        parts.append(f"{usage['runs']} runs")
    if "input_tokens" in usage or "output_tokens" in usage:
        inputs, outputs = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
        parts.append(f"{_tokens(inputs)} in / {_tokens(outputs)} out tok")
    if usage.get("cost_usd") is not None:
        parts.append(_cost(float(usage["cost_usd"])))
    return ", ".join(parts)


def usage_lines(usage: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The run's spend: a total, then one line per node that called a model."""
    if not usage:
        return []
    total = total_usage(usage)
    head = f"  usage: {usage_text(total)}"
    calls = total.get("model_calls")
    if calls:
        head += f" in {calls} model call{'s' if calls != 1 else ''}"
    if total.get("cost_complete") is False:
        head += " (some models have no known price)"
    width = max(len(node) for node in usage)
    lines = [head]
    for node, fields in usage.items():
        model = str(fields.get("model") or "")
        lines.append(f"    {node:<{width}}  {usage_text(fields)}" + (f"  {model}" if model else ""))
    return lines


class JsonLines:
    """One JSON object per event on stdout, flushed, for programs to follow."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        self.out.write(json.dumps(event.to_json(), default=str) + "\n")
        self.out.flush()


class Progress:
    """Each stage as it starts and ends, with duration, retries and outcome.

    Off a terminal (a pipe, CI, tests) every event is one line, and a parallel branch's
    stages print with ``│`` and the branch name in front, interleaved as they happen.

    On a terminal (``live``), a stage's "started" line is replaced by its result when
    nothing else was printed in between, and a fan-out is shown side by side: from
    ``ParallelStarted`` to its ``ParallelCompleted`` a block of one row per branch (the
    branch, the node it is on, and waiting / running / retrying / done / failed) is redrawn
    in place as branch events arrive; it then stays on screen in its final state, under the
    ``⇉`` line and above the ``⇇`` one. Any other line printed meanwhile goes *above* the
    block, which is redrawn under it. While a question is open (``InterviewStarted`` until
    its answer or timeout) the block is taken off the screen and not drawn, because the
    console prompt is drawn at the cursor and owns it; the answer line is then printed where
    the block was, and the block again under it.

    A fan-out nested in a branch adds its branches as rows of the outer block, indented
    under the row of the branch that runs it; only the outermost fan-out prints ``⇉`` and
    ``⇇`` lines. Branches that never start (cancelled by ``first_success``, or recorded
    before a resume) end as "not run", and those stopped midway as "cancelled".

    ``quiet`` prints nothing; the caller prints the summary. ``out`` is the stream written
    to (stdout by default); ``live`` says whether it is a terminal (by default, whether it
    is a tty).
    """

    def __init__(
        self, quiet: bool = False, *, out: TextIO | None = None, live: bool | None = None
    ) -> None:
        self.quiet = quiet
        self.width = 12
        self.out = out if out is not None else sys.stdout
        self.live = self.out.isatty() if live is None else live
        self._open_line: str | None = None
        self._started_line: dict[str, str] = {}
        self._block: _FanOutBlock | None = None
        #: the chat node whose agent is working on a reply, and the spinner saying so
        self._thinking: str | None = None
        self._spinner: Spinner | None = None
        #: the chat nodes waiting for the person's message
        self._chat_prompts: set[str] = set()

    def echo(self, text: str, *, opens: str | None = None) -> None:
        if self.quiet:
            return
        if self._block is not None:
            self._redraw(above=text)
            opens = None
        else:
            self._write(text + "\n")
        self._open_line = opens

    def _write(self, text: str) -> None:
        # Off a terminal click strips the colours; on one (or a test's fake one) it keeps
        # them, and the cursor movements with them.
        click.echo(text, file=self.out, nl=False, color=True if self.live else None)

    def _replace(self, node_id: str | None) -> None:
        if self.live and not self.quiet and node_id is not None and self._open_line == node_id:
            self._write(_UP_AND_ERASE)

    def _name(self, node_id: str | None, branch: str | None) -> str:
        if branch is None:
            return f"{node_id or '':<{self.width}}"
        name = node_id if branch == node_id else f"{branch} / {node_id}"
        return f"│ {name or '':<{self.width - 2}}"

    def _row(self, branch: str | None) -> _BranchRow | None:
        """The live block's row for a stage event's branch; None to print a line instead."""
        if self._block is None or branch is None:
            return None
        return self._block.row(branch)

    def _redraw(self, *, above: str | None = None, final: bool = False) -> None:
        """Bring the block on screen up to date, rewriting it from its first changed line;
        ``above`` is printed before the block, which is then drawn whole under it."""
        block = self._block
        if block is None:
            return
        size = shutil.get_terminal_size()
        if final:
            lines = block.lines(size.columns, None)
        elif block.questions:
            lines = []
        else:
            lines = block.lines(size.columns, max(size.lines - 1, 2))
        shown = block.shown
        first = 0
        if above is None and len(lines) == len(shown):
            first = next(
                (i for i, (old, new) in enumerate(zip(shown, lines, strict=True)) if old != new),
                len(lines),
            )
        text = _UP_AND_ERASE * (len(shown) - first)
        if above is not None:
            text += above + "\n"
        text += "".join(line + "\n" for line in lines[first:])
        block.shown = lines
        if text:
            self._write(text)

    def __call__(self, event: Event) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        if isinstance(event, StageCompleted | StageFailed | StageRetrying):
            self._thinking = None
            self._chat_ended(event.node_id)
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)
        if self._thinking is not None and self.live and not self.quiet:
            self._spinner = Spinner(f"{self._thinking} is thinking", self._write)

    def close(self) -> None:
        """Stop the spinner, if one runs (the run ended while an agent was thinking)."""
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        self._thinking = None

    def _on_ChatMessage(self, event: ChatMessage) -> None:
        node = event.node_id or ""
        if event.who == "agent":
            self._thinking = None
        elif event.who == "prompt" or (event.who == "human" and not event.text.startswith("/")):
            self._thinking = event.node_id
        if event.who == "human" and node in self._chat_prompts:
            self._chat_prompts.discard(node)
            self._answered()
        self.echo(render_message(event.who, event.text, live=self.live, replayed=event.replayed))
        if event.who == "agent" and not event.replayed and node not in self._chat_prompts:
            # the person's prompt comes next: a fan-out's block steps aside as for a gate
            self._chat_prompts.add(node)
            if self._block is not None:
                self._block.questions += 1
                self._redraw()

    def _chat_ended(self, node_id: str | None) -> None:
        if node_id in self._chat_prompts:
            self._chat_prompts.discard(node_id or "")
            self._answered()

    def _on_PipelineStarted(self, event: PipelineStarted) -> None:
        verb = "resuming" if event.resumed else "running"
        self.echo(
            click.style(f"{verb} {event.pipeline}", bold=True)
            + f"  session {event.session_id}"
            + (f"  goal: {event.goal}" if event.goal else "")
        )

    def _on_StageStarted(self, event: StageStarted) -> None:
        self.width = max(self.width, len(event.node_id or ""))
        row = self._row(event.branch)
        if row is not None:
            row.node, row.state, row.attempt = event.node_id or "", "running", event.attempt
            row.error = ""
            self._redraw()
            return
        attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        line = (
            "  "
            + click.style("▸", fg="cyan")
            + " "
            + self._name(event.node_id, event.branch)
            + click.style(f"  {event.handler}{attempt} ...", dim=True)
        )
        self._started_line[event.node_id or ""] = line
        self.echo(line, opens=event.node_id)

    def _on_StageActivity(self, event: StageActivity) -> None:
        if event.branch is not None:
            return  # a branch's row has no room for it
        self._activity(event.node_id, f"    · {event.text}")

    def _activity(self, node_id: str | None, text: str) -> None:
        """A dim line under a running stage, its "started" line kept last so that the
        stage's result still replaces it."""
        if self.quiet:
            return
        line = click.style(text, dim=True)
        if self.live and node_id is not None and self._open_line == node_id:
            self._write(_UP_AND_ERASE)
            self.echo(line)
            self.echo(self._started_line.get(node_id, ""), opens=node_id)
            return
        self.echo(line)

    def _on_StageCompleted(self, event: StageCompleted) -> None:
        row = self._row(event.branch)
        if row is not None:
            # The branch goes on to its next node: the row stays "running" until it ends.
            row.node = event.node_id or ""
            self._redraw()
            return
        self._replace(event.node_id)
        retries = f", {event.attempts} attempts" if event.attempts > 1 else ""
        status = "" if event.status == "success" else f" {event.status}"
        spent = usage_text(event.usage)
        self.echo(
            "  "
            + click.style("✓", fg="green")
            + " "
            + self._name(event.node_id, event.branch)
            + f"  {_duration(event.duration)}{status}{retries}"
            + (click.style(f"  {spent}", dim=True) if spent else "")
        )

    def _on_StageFailed(self, event: StageFailed) -> None:
        row = self._row(event.branch)
        if row is not None and event.will_retry:
            row.error = event.error  # shown with the StageRetrying that follows at once
            return
        if row is not None:
            row.node, row.state = event.node_id or "", "failed"
            row.duration, row.error = event.duration, event.error
            self._redraw()
            return
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
        row = self._row(event.branch)
        if row is not None:
            row.node, row.state = event.node_id or "", "retrying"
            row.attempt, row.delay, row.retries = event.attempt, event.delay, row.retries + 1
            row.error = event.reason or row.error
            self._redraw()
            return
        self.echo(
            "  "
            + click.style("↻", fg="yellow")
            + " "
            + self._name(event.node_id, event.branch)
            + f"  retrying in {event.delay:.1f}s (attempt {event.attempt})"
        )

    def _on_ParallelStarted(self, event: ParallelStarted) -> None:
        if self._block is not None:
            self._block.nest(event)
            self._redraw()
            return
        running = [branch for branch in event.branches if branch not in event.kept]
        kept = f"; {', '.join(event.kept)} kept from the round before" if event.kept else ""
        again = f"{len(running)} of " if event.kept else ""
        self.echo(
            "  " + click.style("⇉", fg="cyan") + " " + f"{event.node_id}: {again}"
            f"{event.branch_count} branches ({', '.join(running)}{kept})"
        )
        if self.live and not self.quiet:
            self._block = _FanOutBlock(event)
            self._redraw()

    def _on_ParallelBranchStarted(self, event: ParallelBranchStarted) -> None:
        if self._block is not None:
            row = self._block.row(event.branch, event.node_id or "")
            row.node, row.state, row.attempt = event.branch, "running", 1
            self._redraw()

    def _on_ParallelBranchCompleted(self, event: ParallelBranchCompleted) -> None:
        if self._block is not None:
            row = self._block.row(event.branch, event.node_id or "")
            row.state = "done" if event.success else "failed"
            row.duration, row.status = event.duration, event.status
            if not event.success and row.error == "":
                row.error = event.status or "fail"
            self._redraw()

    def _on_ParallelCompleted(self, event: ParallelCompleted) -> None:
        block = self._block
        if block is not None:
            if not block.close(event.node_id or ""):
                self._redraw()
                return
            self._redraw(final=True)
            self._block = None
        self.echo(
            "  " + click.style("⇇", fg="cyan") + " " + f"{event.node_id}: {event.success_count} "
            f"succeeded, {event.failure_count} failed in {_duration(event.duration)}"
        )

    def _on_SessionBranchCreated(self, event: SessionBranchCreated) -> None:
        note = f" ({event.note})" if event.note else ""
        self.echo(click.style(f"  branch {event.branch} in {event.repo}{note}", dim=True))

    def _on_AgentCommitCreated(self, event: AgentCommitCreated) -> None:
        if event.branch is not None:
            return  # a branch's row has no room for it
        files = len(event.files)
        self._activity(
            event.node_id,
            f"    · commit {event.sha[:7]} {event.summary} ({files} file{'s' * (files != 1)})",
        )

    def _on_WorktreeMerged(self, event: WorktreeMerged) -> None:
        how = "fast-forward" if event.fast_forward else event.sha[:7]
        self._activity(event.node_id, f"    · merged {event.branch} into {event.repo} ({how})")

    def _on_MergeConflict(self, event: MergeConflict) -> None:
        files = ", ".join(event.files)
        self.echo(
            click.style(f"  ⚠ merge conflict: {event.branch} in {event.repo}: {files}", fg="yellow")
        )

    def _on_SessionBranchPushed(self, event: SessionBranchPushed) -> None:
        self.echo(click.style(f"  · pushed {event.branch} to {event.remote}", dim=True))

    def _on_PushFailed(self, event: PushFailed) -> None:
        self.echo(
            click.style(
                f"  ⚠ push of {event.branch} to {event.remote} failed: {event.error}", fg="yellow"
            )
        )

    def _on_InterviewStarted(self, event: InterviewStarted) -> None:
        if self._block is not None:
            self._block.questions += 1
            self._redraw()
        if event.details:  # what the question that follows is about
            self.echo("")
            for line in event.details.splitlines():
                self.echo(click.style(f"    │ {line}", dim=True))
            self.echo("")

    def _answered(self) -> None:
        if self._block is not None:
            self._block.questions = max(self._block.questions - 1, 0)

    def _on_InterviewCompleted(self, event: InterviewCompleted) -> None:
        self._answered()
        self.echo(
            "  " + click.style("?", fg="magenta") + " " + f"{event.question} -> {event.answer}"
        )

    def _on_InterviewTimeout(self, event: InterviewTimeout) -> None:
        self._answered()
        self.echo(
            "  " + click.style("?", fg="yellow") + " " + f"{event.question}: no answer after "
            f"{_duration(event.duration)}"
        )


_State = Literal["waiting", "running", "retrying", "failed", "done", "cancelled", "not run", "kept"]

#: which rows stay in sight when a block is taller than the terminal
_PRIORITY: dict[_State, int] = {
    "running": 0,
    "retrying": 0,
    "failed": 1,
    "waiting": 2,
    "done": 3,
    "cancelled": 3,
    "not run": 3,
    "kept": 3,
}


#: a piece of a row: its text, colour, and whether it is dim
_Segment = tuple[str, str | None, bool]


@attrs.define
class _BranchRow:
    """One branch of a fan-out as its row in the live block shows it."""

    fan_out: str
    branch: str
    depth: int = 0
    node: str = ""
    state: _State = "waiting"
    attempt: int = 1
    delay: float = 0.0
    retries: int = 0
    duration: float = 0.0
    status: str = ""
    error: str = ""

    def segments(self, name_width: int, node_width: int) -> list[_Segment]:
        name = f"{'  ' * self.depth}{self.branch}"
        columns = f" {name:<{name_width}}  {self.node:<{node_width}}  "
        attempt = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        if self.state == "running":
            return [
                ("▸", "cyan", False),
                (columns, None, False),
                (f"running{attempt} ...", None, True),
            ]
        if self.state == "retrying":
            retry = f"retrying in {self.delay:.1f}s{attempt}"
            reason = [("  ", None, False), (self.error, "yellow", False)] if self.error else []
            return [("↻", "yellow", False), (columns, None, False), (retry, None, False), *reason]
        error: _Segment = (self.error, "red", False)
        if self.state == "failed":
            failed = f"failed {_duration(self.duration)}  "
            return [("✗", "red", False), (columns, None, False), (failed, None, False), error]
        if self.state == "done":
            status = "" if self.status in ("", "success") else f" {self.status}"
            retries = {0: "", 1: ", 1 retry"}.get(self.retries, f", {self.retries} retries")
            done = f"done {_duration(self.duration)}{status}{retries}"
            return [("✓", "green", False), (columns, None, False), (done, None, False)]
        return [("·", None, True), (columns, None, False), (self.state, None, True)]


class _FanOutBlock:
    """The rows of a running fan-out, and of the fan-outs nested in its branches."""

    def __init__(self, event: ParallelStarted) -> None:
        node = event.node_id or ""
        self.open = [node]  # fan-outs started and not yet completed, the outermost first
        self.rows = [
            _BranchRow(
                fan_out=node, branch=branch, state="kept" if branch in event.kept else "waiting"
            )
            for branch in event.branches
        ]
        # Each branch starts on the node it is named after; the column only ever widens, so
        # that rows do not shift about as branches move on.
        widest = max((len(branch) for branch in event.branches), default=0)
        self.name_width, self.node_width = widest, widest
        self._widths = (0, 0, 0)  # the name and node columns and the room the lines below use
        self._drawn: dict[tuple[object, ...], str] = {}  # rows as last laid out, by content
        self.shown: list[str] = []  # the block's lines now on screen, just above the cursor
        self.questions = 0  # questions open on the console; the block is hidden meanwhile

    def row(self, branch: str, fan_out: str | None = None) -> _BranchRow:
        """The row of ``branch`` (of ``fan_out`` when given), the latest if there are two;
        a branch no ``ParallelStarted`` named gets a new row."""
        for row in reversed(self.rows):
            if row.branch == branch and fan_out in (None, row.fan_out):
                return row
        row = _BranchRow(fan_out=fan_out or "", branch=branch)
        self.rows.append(row)
        self.name_width = max(self.name_width, len(branch))
        return row

    def nest(self, event: ParallelStarted) -> None:
        """Rows for a fan-out inside a branch, under the row of the branch that runs it."""
        node = event.node_id or ""
        self.open.append(node)
        owner = next((i for i in reversed(range(len(self.rows))) if self.rows[i].node == node), -1)
        depth = self.rows[owner].depth + 1 if owner >= 0 else 1
        at = owner + 1 if owner >= 0 else len(self.rows)
        while owner >= 0 and at < len(self.rows) and self.rows[at].depth >= depth:
            at += 1
        for branch in event.branches:
            fresh = _BranchRow(fan_out=node, branch=branch, depth=depth)
            self.name_width = max(self.name_width, 2 * depth + len(branch))
            again = [
                i for i, row in enumerate(self.rows) if (row.fan_out, row.branch) == (node, branch)
            ]
            if again:  # the same fan-out again, as in a loop: its rows start over
                self.rows[again[-1]] = fresh
            else:
                self.rows.insert(at, fresh)
                at += 1

    def close(self, node: str) -> bool:
        """Mark the end of fan-out ``node``; True when that is the outermost one."""
        if node == self.open[0] and self.open.count(node) == 1:
            self._settle(None)
            return True
        if node in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(node)]
        self._settle(node)
        return False

    def _settle(self, fan_out: str | None) -> None:
        """The branches of ``fan_out`` (of all when None) that did not end never will."""
        for row in self.rows:
            if fan_out not in (None, row.fan_out):
                continue
            if row.state == "waiting":
                row.state = "not run"
            elif row.state in ("running", "retrying"):
                row.state = "cancelled"

    def lines(self, columns: int, height: int | None) -> list[str]:
        """The block as lines of at most ``columns - 1`` cells (so none wraps), at most
        ``height`` of them: then the rows least worth watching are counted on the last."""
        rows = self.rows
        more = ""
        if height is not None and len(rows) > height:
            by_priority: list[list[int]] = [[], [], [], []]
            for i, row in enumerate(rows):
                by_priority[_PRIORITY[row.state]].append(i)
            kept = sorted([i for level in by_priority for i in level][: height - 1])
            rows = [self.rows[i] for i in kept]
            left_out = Counter(row.state for row in self.rows)
            left_out.subtract(row.state for row in rows)
            counts = ", ".join(f"{left_out[s]} {s}" for s in _PRIORITY if left_out[s] > 0)
            more = f"… {len(self.rows) - len(rows)} more: {counts}"
        # Only rows in sight widen the node column: a row is measured when it is shown.
        self.node_width = max([self.node_width, *(len(row.node) for row in rows)])
        widths = (self.name_width, self.node_width, max(columns - 1, 10))
        if widths != self._widths:
            self._widths, self._drawn = widths, {}
        lines = [self._line(row) for row in rows]
        if more:
            lines.append(_fit([("  │ ", None, False), (more, None, True)], widths[2]))
        return lines

    def _line(self, row: _BranchRow) -> str:
        # A wide fan-out redraws on every branch event: each row is laid out once per change.
        key = attrs.astuple(row, recurse=False)
        line = self._drawn.get(key)
        if line is None:
            name_width, node_width, room = self._widths
            segments = [("  │ ", None, False), *row.segments(name_width, node_width)]
            line = self._drawn[key] = _fit(segments, room)
        return line


def _cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _fit(segments: list[_Segment], room: int) -> str:
    """The segments styled and joined, cut with '…' to ``room`` terminal cells; text is
    flattened to one printable line first, since a row that wraps would break the redraw."""
    styled = []
    for raw, colour, dim in segments:
        text = raw
        if not text.isprintable():
            text = "".join(c for c in text.replace("\n", " ").replace("\t", " ") if c.isprintable())
        width = len(text) if text.isascii() else sum(_cells(c) for c in text)
        cut = width > room
        if cut:
            kept, used = [], 0
            for char in text:
                used += _cells(char)
                if used > room - 1:
                    break
                kept.append(char)
            text = "".join(kept) + "…"
        if text:
            styled.append(click.style(text, fg=colour, dim=dim or None) if colour or dim else text)
        room -= width
        if cut or room <= 0:
            break
    return "".join(styled)


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
        *usage_lines(result.usage),
        f"  logs: {result.logs_root}",
        f"  session: {result.session_id}",
    ]
    for repo, where in result.workspace.items():
        lines.append(
            f"  branch: {where['branch']} in {repo}  "
            + click.style(f"(git -C {shlex.quote(where['path'])} log {where['branch']})", dim=True)
        )
    return "\n".join(lines)
