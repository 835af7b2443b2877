"""How a chat node looks in the terminal: the agent's replies as Markdown, the person's
messages after ``you >``, and a spinner with the time taken while the agent thinks."""

from __future__ import annotations

import io
import os
import shutil
import textwrap
import threading
import time
from collections.abc import Callable

import click

__all__ = ["Spinner", "render_message"]

#: how much of the prompt a chat shows before the first reply
_PROMPT_CHARS = 1500
_INDENT = "    "


def render_message(who: str, text: str, *, live: bool, replayed: bool = False) -> str:
    """One chat message as printed: the agent's reply rendered as Markdown on a terminal
    (plain text, indented, elsewhere), the person's after ``you >``, the prompt and
    Orchestra's notes dim."""
    mark = click.style("  (earlier)", dim=True) if replayed else ""
    if who == "agent":
        head = "  " + click.style("agent", fg="cyan", bold=True) + mark
        body = _markdown(text) if live else _indented(text)
        return f"{head}\n{body.rstrip()}"
    if who == "human":
        return "  " + click.style("you >", fg="green", bold=True) + " " + text.rstrip() + mark
    if who == "prompt":
        shown = text.strip()
        if len(shown) > _PROMPT_CHARS:
            shown = shown[:_PROMPT_CHARS].rstrip() + " … (the rest is in prompt.md)"
        return click.style(_indented(_wrapped(shown, 6), "    │ "), dim=True)
    return click.style(_indented(text), dim=True)


def _wrapped(text: str, margin: int) -> str:
    """``text`` wrapped to the terminal's width less ``margin``, line by line."""
    width = max(shutil.get_terminal_size().columns - margin, 20)
    return "\n".join(
        textwrap.fill(line, width, replace_whitespace=False) if line else ""
        for line in text.splitlines()
    )


def _indented(text: str, prefix: str = _INDENT) -> str:
    return "\n".join(prefix + line if line else prefix.rstrip() for line in text.splitlines())


def _markdown(text: str) -> str:
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.padding import Padding

    buffer = io.StringIO()
    width = max(shutil.get_terminal_size().columns, 40)
    console = Console(
        file=buffer,
        width=width,
        force_terminal=True,
        no_color="NO_COLOR" in os.environ,
        highlight=False,
    )
    console.print(Padding(Markdown(text), (0, 0, 0, len(_INDENT))))
    # rich pads every line to the width; the padding would only get in a copy's way
    return "\n".join(_unpadded(line) for line in buffer.getvalue().splitlines())


def _unpadded(line: str) -> str:
    """``line`` without the spaces rich pads it with, before or after its last style
    reset."""
    reset = "\x1b[0m"
    if line.endswith(reset):
        return line[: -len(reset)].rstrip(" ") + reset
    return line.rstrip(" ")


class Spinner:
    """A line redrawn ten times a second from a thread (``⠹ agent is thinking  4.2s``)
    until ``stop()``, which erases it. ``write`` must be safe to call from that thread."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, label: str, write: Callable[[str], None]) -> None:
        self.label = label
        self._write = write
        self._began = time.monotonic()
        self._stop = threading.Event()
        self._draw(0)  # at once, from the caller's thread; the rest from the spinner's
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _draw(self, frame: int) -> None:
        elapsed = time.monotonic() - self._began
        glyph = click.style(self.FRAMES[frame % len(self.FRAMES)], fg="cyan")
        self._write(f"\r\x1b[2K  {glyph} {self.label}  {elapsed:.1f}s")

    def _spin(self) -> None:
        frame = 1
        while not self._stop.wait(0.1):
            self._draw(frame)
            frame += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._write("\r\x1b[2K")
