"""Background loops stop even when Python 3.11's ``asyncio.wait_for`` would lose a cancel
(sources/tasks.py): the cancel that arrives in the same loop turn as the wake-up."""

from __future__ import annotations

import asyncio
import sys

import pytest

from sources.tasks import stop_task, wait_event


async def _race(waiter) -> bool:
    """Start a loop that waits with ``waiter``, then wake it and cancel it in one turn.
    True if the cancel reached it (the loop ended by itself within 0.3 s)."""
    wake = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            await waiter(wake)
            wake.clear()
            rounds += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop is now waiting
    wake.set()
    await asyncio.sleep(0)  # the inner wait is done; the waiting task is due to resume
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    if not done:
        await stop_task(task)
        assert task.done()
    return bool(done)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the lost cancel is Python 3.11's wait_for")
async def test_wait_for_loses_the_cancel_that_wait_event_keeps() -> None:
    async def with_wait_for(ev: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(ev.wait(), 30)
        except TimeoutError:
            pass

    async def with_wait_event(ev: asyncio.Event) -> None:
        await wait_event(ev, 30)

    lost = [not await _race(with_wait_for) for _ in range(10)]
    kept = [await _race(with_wait_event) for _ in range(10)]
    assert any(lost)  # the hazard is real here, so the next line means something
    assert all(kept)


async def test_wait_event_says_whether_the_event_was_set() -> None:
    ev = asyncio.Event()
    assert await wait_event(ev, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, ev.set)
    assert await wait_event(ev, 5) is True
    assert await wait_event(ev, 0) is True  # already set: no wait


async def test_stop_task_ends_a_loop_that_swallows_its_first_cancels() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed >= 3:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await stop_task(task, retry_seconds=0.05)
    assert task.cancelled() and swallowed == 3


async def test_stop_task_logs_a_loop_that_had_failed_and_tolerates_none(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken(), name="broken-loop")
    await asyncio.sleep(0.01)
    await stop_task(task)
    await stop_task(None)
    assert "broken-loop ended with RuntimeError('boom')" in caplog.text
