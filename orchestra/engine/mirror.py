"""The run directory's mirror files (``status.json`` per stage, ``checkpoint.json``), written
behind the run by one thread of their own.

The store already holds every checkpoint, so the next node need not wait for the
filesystem: creating a stage directory and its file costs two inodes, which is 20 µs on a
laptop and was measured at 300-900 µs of kernel time on a loaded VM. The writer thread runs
at a lower scheduling priority where the OS allows it (Linux), so on a busy machine the run
and its store writes come first and the mirror catches up in the gaps; the run waits for it
only where it must: before a stage runs again in the same directory, and at the end.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import threading
from pathlib import Path
from typing import Any

import anyio.to_thread

from orchestra.errors import RunDirectoryError

__all__ = ["MirrorWriter", "to_json", "write_json"]

#: how much lower than the run the writer thread is scheduled (a nice increment)
_NICENESS = 10


class MirrorWriter:
    """Writes files in order, in a background thread; a later version of a file that is
    still queued replaces the earlier one."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Path, str] | None] = queue.SimpleQueue()
        self._changed = threading.Condition()
        # Directories with a write queued, counted (O(1) per check, however far behind).
        self._pending: collections.Counter[Path] = collections.Counter()
        self._error: RunDirectoryError | None = None
        self._thread: threading.Thread | None = None

    def write(self, path: Path, data: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="orchestra-mirror", daemon=True)
            self._thread.start()
        text = to_json(data)
        with self._changed:
            self._pending[path.parent] += 1
        self._queue.put((path, text))

    async def settle(self, directory: Path) -> None:
        """Wait until no write into ``directory`` is queued: a stage that runs again (and a
        tool that writes its own status.json) must not find an old file land after it."""
        if self._pending[directory]:
            await anyio.to_thread.run_sync(self._wait_for, directory)

    async def close(self) -> None:
        """Write everything still queued, stop the thread, and raise the first error."""
        if self._thread is not None:
            self._queue.put(None)
            await anyio.to_thread.run_sync(self._thread.join)
            self._thread = None
        self.check()

    def check(self) -> None:
        """Raise the first error the thread met (a full disk, a directory made read-only)."""
        if self._error is not None:
            raise self._error

    def _wait_for(self, directory: Path) -> None:
        with self._changed:
            self._changed.wait_for(lambda: not self._pending[directory])

    def _work(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # per-thread nice: Linux only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICENESS)
        running = True
        while running:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            running = batch[-1] is not None
            files = [item for item in batch if item is not None]
            try:
                if self._error is None:
                    write_texts(files)
            except OSError as err:
                self._error = RunDirectoryError(
                    f"{err.filename or 'the run directory'}: cannot write the run directory: "
                    f"{err.strerror or err}; the store holds every checkpoint, so resume once "
                    "it is writable"
                )
            except Exception as err:  # the thread must live on, or settle() would wait forever
                self._error = RunDirectoryError(
                    f"the run directory's writer failed: {type(err).__name__}: {err}"
                )
            finally:
                with self._changed:
                    for path, _ in files:
                        self._pending[path.parent] -= 1
                        if not self._pending[path.parent]:
                            del self._pending[path.parent]
                    self._changed.notify_all()


def to_json(data: Any) -> str:
    # One line: without indent, json uses its C encoder, several times faster on the large
    # checkpoint mirror; `jq .` shows it indented.
    return json.dumps(data, default=str, ensure_ascii=False) + "\n"


def write_texts(files: list[tuple[Path, str]]) -> None:
    """Write each file atomically (a crash leaves the old file or the new one, never half
    of one); a later version of the same file replaces an earlier one in the list. Plain
    os calls, five system calls a file: each releases the GIL, which the run wants back."""
    latest = dict(files)
    made: set[Path] = set()
    for path, text in latest.items():
        directory = path.parent
        if directory not in made:
            try:
                os.mkdir(directory)
            except FileExistsError:
                if not directory.is_dir():
                    raise
            except FileNotFoundError:
                directory.mkdir(parents=True, exist_ok=True)
            made.add(directory)
        temporary = f"{path}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            data = memoryview(text.encode())
            while data:
                data = data[os.write(descriptor, data) :]
        finally:
            os.close(descriptor)
        os.replace(temporary, path)


def write_json(path: Path, data: Any) -> None:
    write_texts([(path, to_json(data))])
