"""The console interviewer (spec §6.4), driven without a terminal: keys go in through a
prompt_toolkit pipe input and the screen goes to a dummy output."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import anyio
import pytest
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from orchestra.interviewer.base import Answer, AnswerValue, Option, Question, QuestionType
from orchestra.interviewer.console import ConsoleInterviewer

DOWN = "\x1b[B"
ENTER = "\r"
CTRL_C = "\x03"

DEPLOY = (Option("A", "[A] Approve"), Option("R", "[R] Reject"), Option("S", "[S] Skip"))


@pytest.fixture
def keyboard() -> Iterator[PipeInput]:
    """Keys typed at the prompt; closed at the end so no prompt thread outlives the test."""
    with create_pipe_input() as pipe:
        yield pipe


@pytest.fixture
def console(keyboard: PipeInput) -> ConsoleInterviewer:
    return ConsoleInterviewer(input=keyboard, output=DummyOutput())


def choice(
    *options: Option, timeout: float | None = None, default: Answer | None = None
) -> Question:
    """A multiple-choice question offering ``options``."""
    return Question(
        "Deploy?",
        QuestionType.MULTIPLE_CHOICE,
        options=options,
        default=default,
        timeout_seconds=timeout,
    )


class TestMultipleChoice:
    """An option is picked with the arrow keys or its accelerator key, then Enter."""

    async def test_enter_takes_the_first_option(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Enter alone answers with the option under the pointer, the first."""
        keyboard.send_text(ENTER)

        answer = await console.ask(choice(*DEPLOY))

        assert answer == Answer("A", selected_option=DEPLOY[0])

    async def test_arrow_down_then_enter_takes_the_second_option(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Down arrow and Enter answer with the second option, carried in full."""
        keyboard.send_text(DOWN + ENTER)

        answer = await console.ask(choice(*DEPLOY))

        assert answer.value == "R"
        assert answer.selected_option == DEPLOY[1]

    async def test_accelerator_key_selects_its_option(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Typing an option's key (in either case) moves to it; Enter confirms."""
        keyboard.send_text("s" + ENTER)

        answer = await console.ask(choice(*DEPLOY))

        assert answer == Answer("S", selected_option=DEPLOY[2])

    async def test_options_keyed_j_and_k_are_reachable_by_their_keys(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """J and K are option keys, not cursor movement (questionary refuses the clash)."""
        options = (Option("J", "[J] Jump ahead"), Option("K", "[K] Keep going"))
        keyboard.send_text("k" + ENTER)

        answer = await console.ask(choice(*options))

        assert answer.selected_option == options[1]

    async def test_options_sharing_a_key_are_all_offered(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Two options keyed A: the first keeps the key, the second is still selectable."""
        options = (Option("A", "Approve"), Option("A", "Abort"), Option("-", "- nothing"))
        keyboard.send_text("a" + DOWN + DOWN + ENTER)

        answer = await console.ask(choice(*options))

        assert answer.selected_option == options[2]

    async def test_shared_key_selects_the_first_option_with_it(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Typing a key two options share selects the first of them."""
        options = (Option("S", "Stop"), Option("A", "Approve"), Option("A", "Abort"))
        keyboard.send_text("a" + ENTER)

        answer = await console.ask(choice(*options))

        assert answer.selected_option == options[1]

    async def test_no_options_asks_for_text(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """A choice with nothing to choose from takes a typed answer instead."""
        keyboard.send_text("ship it" + ENTER)

        answer = await console.ask(choice())

        assert answer == Answer("ship it", text="ship it")


class TestYesNo:
    """y and n answer at once; Enter takes the default."""

    @pytest.mark.parametrize("kind", [QuestionType.YES_NO, QuestionType.CONFIRMATION])
    @pytest.mark.parametrize(("key", "value"), [("y", AnswerValue.YES), ("n", AnswerValue.NO)])
    async def test_key_answers(
        self,
        console: ConsoleInterviewer,
        keyboard: PipeInput,
        kind: QuestionType,
        key: str,
        value: AnswerValue,
    ) -> None:
        """A single y or n is the answer, without Enter."""
        keyboard.send_text(key)

        answer = await console.ask(Question("Deploy?", kind))

        assert answer == Answer(value)

    async def test_enter_is_yes_by_default(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Enter alone is YES when the question has no default."""
        keyboard.send_text(ENTER)

        answer = await console.ask(Question("Deploy?", QuestionType.YES_NO))

        assert answer.value is AnswerValue.YES

    async def test_enter_takes_a_no_default(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Enter alone is NO when the question's default is NO."""
        keyboard.send_text(ENTER)

        answer = await console.ask(
            Question("Deploy?", QuestionType.YES_NO, default=Answer(AnswerValue.NO))
        )

        assert answer.value is AnswerValue.NO


class TestFreeform:
    """Typed text is the answer's value and text."""

    async def test_typed_line_is_the_answer(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """The line typed before Enter comes back as value and text."""
        keyboard.send_text("use the blue one" + ENTER)

        answer = await console.ask(Question("Which?", QuestionType.FREEFORM))

        assert answer == Answer("use the blue one", text="use the blue one")


class TestInterrupting:
    @pytest.mark.parametrize("kind", list(QuestionType))
    async def test_ctrl_c_interrupts_the_process(
        self, console: ConsoleInterviewer, keyboard: PipeInput, kind: QuestionType
    ) -> None:
        """Ctrl-C at any prompt (a key in the prompt's raw mode) is sent on as SIGINT, which
        stops a run at its last checkpoint, and the question gets no answer."""
        keyboard.send_text(CTRL_C)
        answers: list[Answer] = []

        async def ask() -> None:
            answers.append(await console.ask(Question("Deploy?", kind, options=DEPLOY)))

        with anyio.fail_after(10), anyio.open_signal_receiver(signal.SIGINT) as signals:
            async with anyio.create_task_group() as group:
                group.start_soon(ask)
                async for received in signals:
                    assert received == signal.SIGINT
                    group.cancel_scope.cancel()
                    break
        assert answers == []


class TestSkipping:
    """A person who backs out of a question skips it."""

    async def test_end_of_input_skips(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Input that ends (Ctrl-D, a closed pipe) is SKIPPED."""
        keyboard.close()

        answer = await console.ask(Question("Which?", QuestionType.FREEFORM))

        assert answer == Answer(AnswerValue.SKIPPED)


class TestTimeout:
    """No answer in ``timeout_seconds``: the default, else TIMEOUT (spec §6.5)."""

    async def test_timeout_without_default_is_timeout(self, console: ConsoleInterviewer) -> None:
        """Nothing typed in time gives TIMEOUT."""
        answer = await console.ask(choice(*DEPLOY, timeout=0.05))

        assert answer == Answer(AnswerValue.TIMEOUT)

    async def test_timeout_returns_the_default(self, console: ConsoleInterviewer) -> None:
        """Nothing typed in time gives the question's default answer."""
        default = Answer("R", selected_option=DEPLOY[1])

        answer = await console.ask(choice(*DEPLOY, timeout=0.05, default=default))

        assert answer == default

    async def test_timed_out_prompt_leaves_the_keys_to_the_next_question(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """The abandoned prompt is closed: keys typed afterwards answer the next question."""
        first = await console.ask(Question("Deploy?", QuestionType.YES_NO, timeout_seconds=0.05))
        keyboard.send_text(DOWN + ENTER)

        second = await console.ask(choice(*DEPLOY, timeout=5))

        assert first.value is AnswerValue.TIMEOUT
        assert second.selected_option == DEPLOY[1]

    async def test_answer_in_time_is_kept(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """An answer typed within the timeout is the answer, not the default."""
        keyboard.send_text("n")

        answer = await console.ask(
            Question(
                "Deploy?",
                QuestionType.YES_NO,
                timeout_seconds=5,
                default=Answer(AnswerValue.YES),
            )
        )

        assert answer.value is AnswerValue.NO


class TestInform:
    """Messages for the person at the terminal."""

    async def test_message_is_printed_with_its_stage(
        self, console: ConsoleInterviewer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """inform() prints the message, prefixed with its stage when there is one."""
        await console.inform("deploying", "ship")
        await console.inform("done", "")

        assert capsys.readouterr().out == "[ship] deploying\ndone\n"


class TestChatMessages:
    """A chat message is typed at the ``you >`` prompt."""

    async def test_enter_sends_the_message(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        keyboard.send_text("a hike, maybe?" + ENTER)

        answer = await console.ask(Question("Your reply", QuestionType.FREEFORM, chat=True))

        assert answer == Answer("a hike, maybe?", text="a hike, maybe?")

    async def test_multi_line_sends_on_alt_enter_and_keeps_the_lines(
        self, keyboard: PipeInput
    ) -> None:
        """With multi_line, Enter starts a new line (pasted code keeps its lines) and
        Alt+Enter, which a terminal sends as Esc then Enter, sends."""
        console = ConsoleInterviewer(input=keyboard, output=DummyOutput(), multi_line=True)
        keyboard.send_text("def f():" + ENTER + "    return 1" + "\x1b" + ENTER)

        answer = await console.ask(Question("Your reply", QuestionType.FREEFORM, chat=True))

        assert answer.text == "def f():\n    return 1"


class TestOneAtATime:
    async def test_questions_asked_at_once_take_turns(
        self, console: ConsoleInterviewer, keyboard: PipeInput
    ) -> None:
        """Two parallel branches asking at once get one prompt after the other on the one
        terminal, each answered by its own line."""
        answers: list[str] = []
        answered = anyio.Event()

        async def ask(name: str) -> None:
            answer = await console.ask(Question(name, QuestionType.FREEFORM))
            answers.append(f"{name}={answer.text}")
            answered.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(ask, "first")
                await anyio.sleep(0)  # the first is asking before the second starts
                group.start_soon(ask, "second")
                keyboard.send_text("one" + ENTER)
                await answered.wait()
                keyboard.send_text("two" + ENTER)
        assert answers == ["first=one", "second=two"]
