"""Live progress as a person sees it: fan-outs side by side on a terminal, lines elsewhere."""

from __future__ import annotations

import io
import re
from typing import ClassVar

import pytest

from orchestra.events import (
    ChatMessage,
    Event,
    InterviewCompleted,
    InterviewStarted,
    InterviewTimeout,
    ParallelBranchCompleted,
    ParallelBranchStarted,
    ParallelCompleted,
    ParallelStarted,
    StageActivity,
    StageCompleted,
    StageFailed,
    StageRetrying,
    StageStarted,
)
from orchestra_cli.progress import Progress

SESSION = "1"
_CONTROL = re.compile(r"(\x1b\[[0-9;]*[A-Za-z]|\r|\n)")


class FakeTerminal(io.StringIO):
    """What Progress writes, kept raw; it says it is a terminal."""

    def isatty(self) -> bool:
        return True


def screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: cursor-up, erase-line, CR and LF are
    obeyed, colours dropped; any other control sequence fails the test."""
    lines, row, col = [""], 0, 0
    for token in _CONTROL.split(raw):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            code, count = token[-1], int(token[2:-1] or 1)
            if code == "A":
                row = max(row - count, 0)
            elif token == "\x1b[2K":
                lines[row] = ""
            else:
                assert code == "m", f"unexpected control sequence {token!r}"
        elif token:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    while lines and lines[-1] == "":
        lines.pop()
    return lines


@pytest.fixture(autouse=True)
def terminal_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")


def live() -> tuple[Progress, FakeTerminal]:
    out = FakeTerminal()
    return Progress(out=out, live=True), out


def feed(progress: Progress, events: list[Event]) -> None:
    for event in events:
        progress(event)


def stage_started(node: str, branch: str | None = None, attempt: int = 1) -> StageStarted:
    return StageStarted(
        session_id=SESSION,
        node_id=node,
        label=node,
        handler="codergen",
        index=0,
        attempt=attempt,
        branch=branch,
    )


def stage_completed(
    node: str, branch: str | None = None, duration: float = 1.0, attempts: int = 1
) -> StageCompleted:
    return StageCompleted(
        session_id=SESSION,
        node_id=node,
        label=node,
        index=0,
        duration=duration,
        status="success",
        attempts=attempts,
        branch=branch,
    )


def stage_failed(
    node: str, error: str, branch: str | None = None, will_retry: bool = False
) -> StageFailed:
    return StageFailed(
        session_id=SESSION,
        node_id=node,
        label=node,
        index=0,
        duration=0.5,
        error=error,
        will_retry=will_retry,
        branch=branch,
    )


def stage_retrying(node: str, branch: str | None = None) -> StageRetrying:
    return StageRetrying(
        session_id=SESSION,
        node_id=node,
        label=node,
        index=0,
        attempt=2,
        delay=0.2,
        reason="simulated retry",
        branch=branch,
    )


def fan_out(node: str, *branches: str) -> ParallelStarted:
    return ParallelStarted(
        session_id=SESSION, node_id=node, branch_count=len(branches), branches=branches
    )


def branch_started(node: str, branch: str, index: int = 0) -> ParallelBranchStarted:
    return ParallelBranchStarted(session_id=SESSION, node_id=node, branch=branch, index=index)


def branch_completed(
    node: str, branch: str, duration: float, success: bool = True
) -> ParallelBranchCompleted:
    return ParallelBranchCompleted(
        session_id=SESSION,
        node_id=node,
        branch=branch,
        index=0,
        duration=duration,
        success=success,
        status="success" if success else "fail",
    )


def fan_in(node: str, successes: int, failures: int) -> ParallelCompleted:
    return ParallelCompleted(
        session_id=SESSION,
        node_id=node,
        duration=2.0,
        success_count=successes,
        failure_count=failures,
    )


def question(node: str = "gate") -> InterviewStarted:
    return InterviewStarted(
        session_id=SESSION, node_id=node, question="Merge it?", stage=node, options=("Yes", "No")
    )


def answer(node: str = "gate") -> InterviewCompleted:
    return InterviewCompleted(
        session_id=SESSION, node_id=node, question="Merge it?", answer="[Y] Yes", duration=3.0
    )


#: a review fan-out: one branch succeeds, one succeeds after a retry, one fails
REVIEW = [
    fan_out("review", "security", "style", "tests"),
    branch_started("review", "security"),
    stage_started("security", "security"),
    branch_started("review", "style"),
    stage_started("style", "style"),
    stage_failed("style", "simulated retry", "style", will_retry=True),
    stage_retrying("style", "style"),
    branch_started("review", "tests"),
    stage_started("tests", "tests"),
    stage_completed("security", "security", duration=1.0),
    branch_completed("review", "security", 1.2),
    stage_started("style", "style", attempt=2),
    stage_completed("style", "style", duration=0.4, attempts=2),
    branch_completed("review", "style", 0.9),
    stage_failed("tests", "3 tests failed", "tests"),
    branch_completed("review", "tests", 1.5, success=False),
    fan_in("review", 2, 1),
]

REVIEW_SCREEN = [
    "  ⇉ review: 3 branches (security, style, tests)",
    "  │ ✓ security  security  done 1.2s",
    "  │ ✓ style     style     done 0.9s, 1 retry",
    "  │ ✗ tests     tests     failed 1.5s  3 tests failed",
    "  ⇇ review: 2 succeeded, 1 failed in 2.0s",
]


class TestLiveFanOut:
    def test_final_screen_shows_one_row_per_branch_between_the_arrows(self) -> None:
        """After the fan-out, each branch's row stays with its outcome, duration and retries."""
        progress, out = live()
        feed(progress, REVIEW)
        assert screen(out.getvalue()) == REVIEW_SCREEN

    def test_block_is_redrawn_in_place(self) -> None:
        """Branch events change rows where they are; the block never grows past its rows."""
        progress, out = live()
        for event in REVIEW[:-1]:
            progress(event)
            assert len(screen(out.getvalue())) == 4
        assert "\x1b[1A\x1b[2K" in out.getvalue()

    def test_rows_show_waiting_running_and_retrying(self) -> None:
        """Mid-fan-out a row says waiting, running on a node, or retrying after a delay."""
        progress, out = live()
        feed(progress, REVIEW[:7])
        assert screen(out.getvalue())[1:] == [
            "  │ ▸ security  security  running ...",
            "  │ ↻ style     style     retrying in 0.2s (attempt 2)  simulated retry",
            "  │ · tests               waiting",
        ]
        progress(stage_started("style", "style", attempt=2))
        assert screen(out.getvalue())[2] == "  │ ▸ style     style     running (attempt 2) ..."

    def test_rows_keep_the_order_of_parallel_started(self) -> None:
        """Rows are in the fan-out's branch order, whatever order the branches start in."""
        progress, out = live()
        feed(progress, [fan_out("f", "a", "b"), branch_started("f", "b"), branch_started("f", "a")])
        assert [line.split()[2] for line in screen(out.getvalue())[1:]] == ["a", "b"]

    def test_row_shows_the_node_its_branch_is_on_now(self) -> None:
        """A branch that moves on to another node shows that node."""
        progress, out = live()
        feed(
            progress,
            [
                fan_out("f", "draft"),
                branch_started("f", "draft"),
                stage_started("draft", "draft"),
                stage_completed("draft", "draft"),
                stage_started("polish", "draft"),
            ],
        )
        assert screen(out.getvalue())[1] == "  │ ▸ draft  polish  running ..."

    def test_error_is_cut_to_the_terminal_width(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A long, multi-line error fits on its row, ending in '…', so no row wraps."""
        monkeypatch.setenv("COLUMNS", "40")
        progress, out = live()
        error = "Traceback (most recent call last):\n" + "x" * 200
        feed(
            progress,
            [
                fan_out("f", "a", "b"),
                branch_started("f", "a"),
                stage_started("a", "a"),
                stage_failed("a", error, "a"),
            ],
        )
        row = screen(out.getvalue())[1]
        assert row.startswith("  │ ✗ a  a  failed 0.5s  Traceback (mo")
        assert row.endswith("…")
        assert all(len(line) <= 39 for line in screen(out.getvalue())[1:])

    def test_lines_after_the_fan_out_print_below_it(self) -> None:
        """Once the fan-out completes, the next stage's lines follow the ⇇ line."""
        progress, out = live()
        feed(progress, [*REVIEW, stage_started("merge"), stage_completed("merge")])
        assert screen(out.getvalue()) == [*REVIEW_SCREEN, "  ✓ merge         1.0s"]

    def test_block_taller_than_the_terminal_is_cut_while_live(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a short terminal running rows stay in sight, the rest counted; the end shows all."""
        monkeypatch.setenv("LINES", "5")
        progress, out = live()
        names = [f"b{i}" for i in range(8)]
        feed(progress, [fan_out("f", *names), branch_started("f", "b6")])
        assert screen(out.getvalue())[1:] == [
            "  │ · b0      waiting",
            "  │ · b1      waiting",
            "  │ ▸ b6  b6  running ...",
            "  │ … 5 more: 5 waiting",
        ]
        feed(progress, [branch_started("f", name) for name in names])
        feed(progress, [branch_completed("f", name, 1.0) for name in names])
        progress(fan_in("f", 8, 0))
        final = screen(out.getvalue())
        assert len(final) == 10
        assert final[1:9] == [f"  │ ✓ {name}  {name}  done 1.0s" for name in names]


class TestLinesDuringAFanOut:
    def test_question_mid_fan_out_appears_intact(self) -> None:
        """A gate's answer in a branch prints whole above the block, which is redrawn under it."""
        progress, out = live()
        gate = [
            stage_completed("security", "security"),
            stage_started("gate", "security"),
            question(),
            answer(),
            stage_completed("gate", "security"),
        ]
        feed(progress, REVIEW[:3] + gate + REVIEW[3:9] + REVIEW[10:])
        assert screen(out.getvalue()) == [
            REVIEW_SCREEN[0],
            "  ? Merge it? -> [Y] Yes",
            "  │ ✓ security  gate      done 1.2s",
            *REVIEW_SCREEN[2:],
        ]

    def test_nothing_is_drawn_while_a_question_is_open(self) -> None:
        """While the console prompt is up, branch updates are kept, not written over it."""
        progress, out = live()
        feed(progress, [*REVIEW[:3], question()])
        asked = out.getvalue()
        assert screen(asked) == [REVIEW_SCREEN[0]]
        feed(progress, REVIEW[3:9])
        assert out.getvalue() == asked
        progress(answer())
        assert screen(out.getvalue())[1:] == [
            "  ? Merge it? -> [Y] Yes",
            "  │ ▸ security  security  running ...",
            "  │ ↻ style     style     retrying in 0.2s (attempt 2)  simulated retry",
            "  │ ▸ tests     tests     running ...",
        ]

    def test_timeout_and_other_lines_print_above_the_block(self) -> None:
        """A question's timeout or a stage outside any branch prints above the rows."""
        progress, out = live()
        timeout = InterviewTimeout(session_id=SESSION, question="Ship?", stage="g", duration=5.0)
        feed(progress, [*REVIEW[:3], question(), timeout, stage_completed("watch", duration=2.0)])
        assert screen(out.getvalue()) == [
            REVIEW_SCREEN[0],
            "  ? Ship?: no answer after 5.0s",
            "  ✓ watch         2.0s",
            "  │ ▸ security  security  running ...",
            "  │ · style               waiting",
            "  │ · tests               waiting",
        ]


class TestNestedFanOut:
    def test_inner_branches_are_rows_under_their_branch(self) -> None:
        """An inner fan-out's branches are indented rows under their branch; one ⇉ and one ⇇."""
        progress, out = live()
        feed(
            progress,
            [
                fan_out("outer", "left", "right"),
                branch_started("outer", "left"),
                stage_started("left", "left"),
                stage_completed("left", "left"),
                stage_started("inner", "left"),
                fan_out("inner", "x", "y"),
                branch_started("inner", "x"),
                stage_started("x", "x"),
                branch_started("outer", "right"),
                stage_started("right", "right"),
                branch_completed("inner", "x", 0.3),
                branch_started("inner", "y"),
                branch_completed("inner", "y", 0.4, success=False),
                fan_in("inner", 1, 1),
                stage_completed("inner", "left"),
                branch_completed("outer", "left", 2.0),
                branch_completed("outer", "right", 1.0),
                fan_in("outer", 2, 0),
            ],
        )
        assert screen(out.getvalue()) == [
            "  ⇉ outer: 2 branches (left, right)",
            "  │ ✓ left   inner  done 2.0s",
            "  │ ✓   x    x      done 0.3s",
            "  │ ✗   y    y      failed 0.4s  fail",
            "  │ ✓ right  right  done 1.0s",
            "  ⇇ outer: 2 succeeded, 0 failed in 2.0s",
        ]

    def test_branches_cut_short_say_so(self) -> None:
        """A branch stopped midway (first_success) is 'cancelled'; one never started 'not run'."""
        progress, out = live()
        feed(
            progress,
            [
                fan_out("f", "fast", "slow", "late"),
                branch_started("f", "fast"),
                branch_started("f", "slow"),
                branch_completed("f", "fast", 0.1),
                fan_in("f", 1, 0),
            ],
        )
        assert screen(out.getvalue())[1:4] == [
            "  │ ✓ fast  fast  done 0.1s",
            "  │ · slow  slow  cancelled",
            "  │ · late        not run",
        ]


class TestOffATerminal:
    def test_each_event_is_one_line_with_the_branch_prefix(self) -> None:
        """Piped output is today's log: one line per event, branch stages behind '│'."""
        out = io.StringIO()
        feed(Progress(out=out), REVIEW)
        assert out.getvalue().splitlines() == [
            "  ⇉ review: 3 branches (security, style, tests)",
            "  ▸ │ security    codergen ...",
            "  ▸ │ style       codergen ...",
            "  ✗ │ style       0.5s  simulated retry",
            "  ↻ │ style       retrying in 0.2s (attempt 2)",
            "  ▸ │ tests       codergen ...",
            "  ✓ │ security    1.0s",
            "  ▸ │ style       codergen (attempt 2) ...",
            "  ✓ │ style       0.4s, 2 attempts",
            "  ✗ │ tests       0.5s  3 tests failed",
            "  ⇇ review: 2 succeeded, 1 failed in 2.0s",
        ]

    def test_liveness_follows_the_stream(self) -> None:
        """Progress is live on a terminal and not on a plain stream."""
        assert Progress(out=FakeTerminal()).live
        assert not Progress(out=io.StringIO()).live

    @pytest.mark.parametrize("is_live", [True, False])
    def test_quiet_prints_nothing(self, is_live: bool) -> None:
        """--quiet writes no progress at all, on a terminal or not."""
        out = FakeTerminal()
        feed(Progress(quiet=True, out=out, live=is_live), [*REVIEW, question(), answer()])
        assert out.getvalue() == ""


class TestAgentActivity:
    EVENTS: ClassVar[list[Event]] = [
        stage_started("write"),
        StageActivity(session_id=SESSION, node_id="write", text="write_file notes.txt"),
        StageActivity(session_id=SESSION, node_id="write", text="shell pytest -q (error)"),
        StageCompleted(
            session_id=SESSION,
            node_id="write",
            label="write",
            index=0,
            duration=2.0,
            status="success",
            usage={"input_tokens": 12000, "output_tokens": 340, "cost_usd": 0.0411},
        ),
    ]

    def test_piped_each_tool_call_is_a_line_under_its_stage(self) -> None:
        out = io.StringIO()
        feed(Progress(out=out), self.EVENTS)
        assert out.getvalue().splitlines() == [
            "  ▸ write         codergen ...",
            "    · write_file notes.txt",
            "    · shell pytest -q (error)",
            "  ✓ write         2.0s  12k in / 340 out tok, $0.0411",
        ]

    def test_live_the_calls_stay_above_and_the_result_replaces_the_started_line(self) -> None:
        progress, out = live()
        feed(progress, self.EVENTS)
        assert screen(out.getvalue()) == [
            "    · write_file notes.txt",
            "    · shell pytest -q (error)",
            "  ✓ write         2.0s  12k in / 340 out tok, $0.0411",
        ]


def chat(who: str, text: str, node: str = "ideas", branch: str | None = None) -> ChatMessage:
    return ChatMessage(session_id=SESSION, node_id=node, who=who, text=text, turn=1, branch=branch)


class TestChats:
    progress: Progress | None = None

    def teardown_method(self) -> None:
        if self.progress is not None:
            self.progress.close()  # its spinner's thread must not outlive the test

    def test_off_a_terminal_messages_are_plain_lines(self) -> None:
        """In a pipe: the prompt behind ``│``, the agent's reply as its Markdown source
        indented, the person's after ``you >``, and no spinner."""
        out = io.StringIO()
        progress = Progress(out=out, live=False)
        feed(
            progress,
            [
                stage_started("ideas"),
                chat("prompt", "Brainstorm with me"),
                chat("agent", "1. **a hike**\n2. a cabin"),
                chat("human", "the hike"),
            ],
        )
        assert out.getvalue().splitlines()[1:] == [
            "    │ Brainstorm with me",
            "  agent",
            "    1. **a hike**",
            "    2. a cabin",
            "  you > the hike",
        ]

    def test_on_a_terminal_a_spinner_runs_while_the_agent_thinks(self) -> None:
        """After the person's message a spinner with the time taken; the agent's reply,
        rendered as Markdown, takes its place."""
        progress, out = live()
        self.progress = progress
        feed(progress, [stage_started("ideas"), chat("human", "the hike")])
        assert "ideas is thinking  0.0s" in screen(out.getvalue())[-1]
        progress(chat("agent", "Book **the hike**"))
        shown = screen(out.getvalue())
        assert not any("thinking" in line for line in shown)
        assert shown[-2:] == ["  agent", "    Book the hike"]

    def test_a_fan_out_block_steps_aside_for_a_chat_prompt(self) -> None:
        """A chat in a branch waiting for the person: branch updates are not drawn over
        the prompt; the person's message brings the block back under it."""
        progress, out = live()
        self.progress = progress
        feed(progress, [*REVIEW[:3], chat("agent", "Which one?", "security", "security")])
        asked = out.getvalue()
        feed(progress, REVIEW[3:9])
        assert out.getvalue() == asked
        progress(chat("human", "the first", "security", "security"))
        shown = screen(out.getvalue())
        assert "  you > the first" in shown
        assert shown[-4:-1] == [
            "  │ ▸ security  security  running ...",
            "  │ ↻ style     style     retrying in 0.2s (attempt 2)  simulated retry",
            "  │ ▸ tests     tests     running ...",
        ]
        assert "security is thinking" in shown[-1]  # under the block, until the reply
