"""Child processes in their own process group: signalled, and killed, as one.

The tool handler, the agent's ``shell`` tool, tool hooks and CLI agents all start a process
with ``start_new_session=True``; whatever it starts in turn stays in its group, so killing
the group leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal

import anyio
import anyio.abc

__all__ = ["KILL_GRACE", "drain", "signal_group", "terminate"]

#: seconds between SIGTERM and SIGKILL
KILL_GRACE = 2.0


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


async def drain(stream: anyio.abc.ByteReceiveStream | None, into: bytearray) -> None:
    """Read ``stream`` to its end into ``into``."""
    if stream is None:
        return
    async for chunk in stream:
        into.extend(chunk)
