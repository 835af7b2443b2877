"""The console interviewer: questions in the terminal, answered with arrow keys or typing.

Built on questionary, which runs its own prompt loop; it runs in a worker thread so the
event loop (and any parallel branch) keeps going while a person thinks. A timeout returns
the question's default, or TIMEOUT, and closes the prompt, so that it does not go on
reading the terminal under the next one.

A chat message (``Question.chat``) is typed at a ``you >`` prompt: Enter sends it, or with
``multi_line`` Enter starts a new line and Alt+Enter (Esc then Enter) sends, so pasted code
keeps its lines. Every prompt is erased once answered; the progress view prints the
answer.

Ctrl-C at a prompt interrupts the run, as it does anywhere else (the prompt holds the
terminal in raw mode, where Ctrl-C is a key, not a signal): the process is sent SIGINT,
the run stops at its last checkpoint and the question is asked again on resume. Ctrl-D
skips the question.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from orchestra.interviewer.base import Answer, AnswerValue, Option, Question, QuestionType

if TYPE_CHECKING:
    import questionary
    from prompt_toolkit.application import Application
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output

__all__ = ["ConsoleInterviewer"]


class ConsoleInterviewer:
    """Asks in the terminal; ``input`` and ``output`` replace it (prompt_toolkit's
    ``create_pipe_input()`` and ``DummyOutput()`` answer questions in tests)."""

    def __init__(
        self,
        *,
        input: Input | None = None,
        output: Output | None = None,
        multi_line: bool = False,
    ) -> None:
        self._input = input
        self._output = output
        self.multi_line = multi_line
        #: one prompt on the terminal at a time (parallel branches may ask at once)
        self._terminal = anyio.Lock()

    async def ask(self, question: Question) -> Answer:
        prompt = self._prompt(question)
        stop = threading.Event()
        try:
            with anyio.move_on_after(question.timeout_seconds):
                async with self._terminal:
                    reply = await anyio.to_thread.run_sync(
                        _run, prompt.application, stop, abandon_on_cancel=True
                    )
                if reply is _INTERRUPTED:
                    os.kill(os.getpid(), signal.SIGINT)
                    await anyio.sleep_forever()  # the run is cancelled from here
                return _answer(question, reply)
        finally:
            _close(prompt.application, stop)  # no-op once the prompt has returned
        return question.default or Answer(AnswerValue.TIMEOUT)

    async def inform(self, message: str, stage: str) -> None:
        print(f"[{stage}] {message}" if stage else message)

    def _prompt(self, question: Question) -> questionary.Question:
        import questionary

        # Erased once answered: the progress view prints the answer, once.
        terminal: dict[str, Any] = {
            "input": self._input,
            "output": self._output,
            "erase_when_done": True,
        }
        if question.chat:
            how = "Alt+Enter sends" if self.multi_line else "Enter sends"
            return questionary.text(
                ">",
                qmark="you",
                multiline=self.multi_line,
                instruction=f"({how}; /done ends the chat, /help lists commands)",
                **terminal,
            )
        if question.type is QuestionType.MULTIPLE_CHOICE and question.options:
            choices = _choices(question.options)
            # j/k would shadow the options keyed J or K (questionary refuses the clash).
            return questionary.select(
                question.text,
                choices=choices,
                use_shortcuts=len(choices) <= len(_shortcut_keys()),
                use_jk_keys=False,
                **terminal,
            )
        if question.type in (QuestionType.YES_NO, QuestionType.CONFIRMATION):
            default_no = question.default is not None and question.default.value is AnswerValue.NO
            return questionary.confirm(question.text, default=not default_no, **terminal)
        return questionary.text(question.text, **terminal)


def _shortcut_keys() -> Sequence[str]:
    from questionary.prompts.common import InquirerControl

    return InquirerControl.SHORTCUT_KEYS


def _choices(options: Sequence[Option]) -> list[questionary.Choice]:
    """One choice per option, with the option's key as its shortcut where questionary takes
    it (a letter or digit not already taken); the others get the next free key."""
    import questionary

    allowed = set(_shortcut_keys())
    taken: set[str] = set()
    choices = []
    for option in options:
        key = option.key.lower()
        usable = key in allowed and key not in taken
        if usable:
            taken.add(key)
        choices.append(
            questionary.Choice(
                title=option.label, value=option, shortcut_key=key if usable else True
            )
        )
    return choices


#: what ``_run`` returns for Ctrl-C
_INTERRUPTED = object()


def _run(application: Application[Any], stop: threading.Event) -> Any:
    """Run the prompt in this (worker) thread; None if it was closed or its input ended
    (Ctrl-D), ``_INTERRUPTED`` for Ctrl-C."""

    def close_if_stopped() -> None:
        # ``stop`` may have been set before the prompt started, when ``_close`` could not
        # reach it yet.
        if stop.is_set():
            application.exit(result=None)

    try:
        return application.run(pre_run=close_if_stopped)
    except KeyboardInterrupt:
        return _INTERRUPTED
    except EOFError:
        return None


def _close(application: Application[Any], stop: threading.Event) -> None:
    """Stop a prompt still running in its worker thread, from outside that thread."""
    stop.set()
    loop = application.loop
    if loop is None:
        return  # not started (it will see ``stop``) or already finished

    def exit_if_running() -> None:
        if application.future is not None and not application.future.done():
            application.exit(result=None)

    with contextlib.suppress(RuntimeError):  # the loop closed as the prompt finished
        loop.call_soon_threadsafe(exit_if_running)


def _answer(question: Question, reply: Any) -> Answer:
    if reply is None:
        return Answer(AnswerValue.SKIPPED)
    if isinstance(reply, Option):
        return Answer(reply.key, selected_option=reply)
    if question.type in (QuestionType.YES_NO, QuestionType.CONFIRMATION):
        return Answer(AnswerValue.YES if reply else AnswerValue.NO)
    text = str(reply)
    return Answer(text, text=text)
