"""Background-task helpers that hold under Python 3.11's cancellation quirks.

``asyncio.wait_for`` on Python 3.11 (also used inside redis-py and aiomqtt) returns the
awaited result when a cancel arrives in the same loop turn that the awaited thing
finishes: the cancel is lost and a ``task.cancel(); await task`` stop waits forever for a
loop that never ends. Every long-lived loop in the gateway and the simulator waits with
:func:`wait_event` and is stopped with :func:`stop_task`, so a shutdown always ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set.

    Unlike ``asyncio.wait_for(event.wait(), timeout)`` on Python 3.11 this never swallows
    a cancel of the waiting task.
    """
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)


async def stop_task(task: asyncio.Task[Any] | None, *, name: str = "", retry_seconds: float = 0.5) -> None:
    """Cancel ``task`` until it has really ended (a lost cancel is sent again).

    Its own error, if it ended with one, is logged, not raised: stopping goes on.
    Stopping the current task (a loop stopping itself) is a no-op.
    """
    if task is None or task is asyncio.current_task():
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_seconds)
    if not task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            exc = task.exception()
            if exc is not None:
                log.warning("%s ended with %r", name or task.get_name(), exc)
