"""Child processes in their own process group: signalled, and killed, as one.

The tool handler, the agent's ``shell`` tool, tool hooks and CLI agents all run a command
through :func:`run_in_group`: it starts with ``start_new_session=True``, so whatever the
command starts in turn stays in its group, and killing the group leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import anyio
import anyio.abc
import attrs

__all__ = [
    "KILL_GRACE",
    "Finished",
    "collect",
    "end_group",
    "group_identity",
    "run_in_group",
    "signal_group",
    "terminate",
]

#: seconds between SIGTERM and SIGKILL
KILL_GRACE = 2.0

#: receives a process's output, chunk by chunk, as it arrives
Sink = Callable[[bytes], None]


@attrs.frozen
class Finished:
    #: the exit status, negative for a signal (None only if it could not be had)
    returncode: int | None
    timed_out: bool


def signal_group(process: anyio.abc.Process, sig: int) -> None:
    """Send ``sig`` to the process's group; a group already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def terminate(process: anyio.abc.Process, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group, give it ``grace`` seconds, then SIGKILL what is left."""
    signal_group(process, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
    signal_group(process, signal.SIGKILL)
    await process.wait()


def collect(into: bytearray, limit: int | None = None) -> Sink:
    """A sink appending to ``into``, keeping at most its first ``limit`` bytes."""
    if limit is None:
        return into.extend

    def keep(chunk: bytes) -> None:
        room = limit - len(into)
        if room > 0:
            into.extend(chunk[:room])

    return keep


async def run_in_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdout: Sink,
    stderr: Sink,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float | None = None,
    on_start: Callable[[int], Awaitable[None]] | None = None,
) -> Finished:
    """Run ``argv`` in a new process group to its end, its output going to the sinks as it
    arrives; ``stdin`` is written to it (a command that exits without reading it is fine),
    else it reads from /dev/null.

    At ``timeout`` seconds the group gets SIGTERM, then SIGKILL after :data:`KILL_GRACE`.
    When the command exits, whatever it left running in its group is killed, and the pipes
    are read for at most the grace period more (a process that left the group may hold
    them open). Cancelled, the group is killed before this returns. An ``OSError`` from
    starting the process (no such program) is raised as it is. ``on_start(pid)`` is awaited
    once the process runs (to record its group, say), before anything else.
    """
    # Shielded: cancelled half-way through starting, the process would run on with no one
    # left to kill it. Once started, cancellation reaches the cleanup below.
    with anyio.CancelScope(shield=True):
        process = await anyio.open_process(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as one
        )
    try:
        if on_start is not None:
            await on_start(process.pid)
        async with anyio.create_task_group() as group:
            if stdin is not None:
                group.start_soon(_feed, process.stdin, stdin)
            group.start_soon(_pump, process.stdout, stdout)
            group.start_soon(_pump, process.stderr, stderr)
            with anyio.move_on_after(math.inf if timeout is None else timeout) as waiting:
                await process.wait()
            timed_out = waiting.cancelled_caught
            if timed_out:
                await terminate(process)
            else:
                signal_group(process, signal.SIGKILL)  # stragglers holding the pipes open
            group.cancel_scope.deadline = anyio.current_time() + KILL_GRACE
    except BaseException:
        with anyio.CancelScope(shield=True):
            await terminate(process)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()
    return Finished(process.returncode, timed_out)


async def _feed(stream: anyio.abc.ByteSendStream | None, data: bytes) -> None:
    if stream is None:
        return
    # A command need not read its input; one that exits first closes the pipe under us.
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        try:
            await stream.send(data)
        finally:
            await stream.aclose()


async def _pump(stream: anyio.abc.ByteReceiveStream | None, sink: Sink) -> None:
    if stream is None:
        return
    async for chunk in stream:
        sink(chunk)


def group_identity(pid: int) -> dict[str, object]:
    """What tells this process group from a later one with the same id: host, boot and
    the leader's start time (Linux; elsewhere the pid and host alone)."""
    return {
        "pgid": pid,
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "start": _start_time(pid),
    }


def end_group(identity: Mapping[str, object]) -> bool:
    """SIGKILL the process group ``identity`` names if it still runs here (a stage's
    command left behind by a killed runner); True when it did."""
    try:
        pgid = int(str(identity.get("pgid")))
    except ValueError:
        return False
    if identity.get("host") != socket.gethostname() or identity.get("boot") != _boot_id():
        return False
    start = identity.get("start")
    if start is not None and _start_time(pgid) != start:
        return False  # the id went to another process since
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None
