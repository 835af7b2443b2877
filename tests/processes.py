"""Waiting on the processes a test starts, always with a time limit: a run that dies early
or hangs fails the test with what it printed, instead of hanging the suite."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

#: seconds a test waits for a tool to reach its FIFO
FIFO_TIMEOUT = 60.0


def read_fifo(path: Path, process: subprocess.Popen[Any], timeout: float = FIFO_TIMEOUT) -> str:
    """What is written to the FIFO at ``path`` (a tool saying it is running). If nothing
    comes within ``timeout`` seconds, ``process`` is killed and the test fails."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(path.read_text()), daemon=True)
    reader.start()
    reader.join(timeout)
    if got:
        return got[0]
    process.kill()
    _unblock(path, os.O_WRONLY)
    output = process.communicate(timeout=10)
    pytest.fail(f"nothing came through {path.name} in {timeout:g} s; the run printed {output}")


def write_fifo(path: Path, text: str, timeout: float = FIFO_TIMEOUT) -> None:
    """Write ``text`` to the FIFO at ``path`` once a tool opens it to read; fails the test
    if none does within ``timeout`` seconds."""
    done = threading.Event()

    def write() -> None:
        path.write_text(text)
        done.set()

    threading.Thread(target=write, daemon=True).start()
    if not done.wait(timeout):
        _unblock(path, os.O_RDONLY)
        pytest.fail(f"nothing read {path.name} within {timeout:g} s")


def _unblock(path: Path, mode: int) -> None:
    """Open the other end of the FIFO for a moment, so the thread waiting on it returns."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, mode | os.O_NONBLOCK))
