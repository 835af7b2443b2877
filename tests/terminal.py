"""``orchestra`` in a real pseudo-terminal, for tests that type at its prompts."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


class Terminal:
    """A process whose stdin, stdout and stderr are one pseudo-terminal; ``screen`` is all
    it printed so far. ``type`` sends keys; ``wait_for`` waits until text appears."""

    def __init__(
        self, argv: Sequence[str], *, cwd: Path, env: dict[str, str], columns: int = 100
    ) -> None:
        master, slave = pty.openpty()
        os.set_blocking(master, True)
        # No one here answers prompt_toolkit's "where is the cursor?" as a terminal would.
        environment = {
            **env,
            "TERM": "xterm",
            "COLUMNS": str(columns),
            "LINES": "40",
            "PROMPT_TOOLKIT_NO_CPR": "1",
        }
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=environment,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,  # the terminal is its controlling terminal
        )
        os.close(slave)
        self._master = master
        self._output = bytearray()
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # the process closed the terminal
                chunk = b""
            with self._lock:
                if not chunk:
                    self._lock.notify_all()
                    return
                self._output.extend(chunk)
                self._lock.notify_all()

    @property
    def screen(self) -> str:
        with self._lock:
            return self._output.decode("utf-8", errors="replace")

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def wait_for(self, text: str, *, after: int = 0, timeout: float = 30) -> int:
        """Wait until ``text`` is on screen after position ``after``; returns where it ends."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = self._output.find(text.encode(), after)
                if found >= 0:
                    return found + len(text.encode())
                left = deadline - time.monotonic()
                if left <= 0 or (not self._reader.is_alive() and found < 0):
                    shown = self._output.decode("utf-8", errors="replace")
                    raise AssertionError(f"{text!r} did not appear; the screen:\n{shown}")
                self._lock.wait(min(left, 0.5))

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._master)
