"""The console interviewer: questions in the terminal, answered with arrow keys or typing.

Built on questionary, which runs its own prompt loop; it runs in a worker thread so the
event loop (and any parallel branch) keeps going while a person thinks. A timeout returns
the question's default, or TIMEOUT.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread

from orchestra.interviewer.base import Answer, AnswerValue, Question, QuestionType

__all__ = ["ConsoleInterviewer"]


class ConsoleInterviewer:
    async def ask(self, question: Question) -> Answer:
        if question.timeout_seconds is None:
            return await anyio.to_thread.run_sync(
                self._ask_blocking, question, abandon_on_cancel=True
            )
        with anyio.move_on_after(question.timeout_seconds):
            return await anyio.to_thread.run_sync(
                self._ask_blocking, question, abandon_on_cancel=True
            )
        return question.default or Answer(AnswerValue.TIMEOUT)

    async def inform(self, message: str, stage: str) -> None:
        print(f"[{stage}] {message}" if stage else message)

    def _ask_blocking(self, question: Question) -> Answer:
        import questionary

        prompt: Any
        if question.type is QuestionType.MULTIPLE_CHOICE:
            choices = [
                questionary.Choice(title=o.label, value=o, shortcut_key=o.key.lower() or None)
                for o in question.options
            ]
            prompt = questionary.select(
                question.text, choices=choices, use_shortcuts=len(choices) <= 36
            )
            option = prompt.ask()
            if option is None:
                return Answer(AnswerValue.SKIPPED)
            return Answer(option.key, selected_option=option)
        if question.type in (QuestionType.YES_NO, QuestionType.CONFIRMATION):
            reply = questionary.confirm(question.text).ask()
            if reply is None:
                return Answer(AnswerValue.SKIPPED)
            return Answer(AnswerValue.YES if reply else AnswerValue.NO)
        text = questionary.text(question.text).ask()
        if text is None:
            return Answer(AnswerValue.SKIPPED)
        return Answer(text, text=text)
