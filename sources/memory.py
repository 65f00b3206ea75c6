"""The cyclic garbage collector around bulk work (shared by the simulator and the gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection inside (restored as it was after).

    Bulk work (building a world, a what-if over a work centre's whole queue) allocates
    hundreds of thousands of objects that live until it ends and frees almost none in
    cycles; every automatic full collection meanwhile walks the whole heap again, which
    grows with the plant, so the work grew faster than the plant (a third of the CPU of
    generating 20,000 orders). Reference counting still frees what dies. Only for
    synchronous work: nothing else runs on the event loop meanwhile.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def gc_paused_for_this_step() -> None:
    """No automatic cyclic garbage collection until the event loop's current step ends.

    For a resolver whose answer graphql-core completes synchronously right after it returns
    (a board page's fields carry every order each exception hits: tens of thousands at
    100,000 orders): each automatic full collection meanwhile walks the answer built so
    far, so the answer's cost grew faster than its size. The collector is enabled again by
    a callback the loop runs once this step is over, whatever the completion does; if it
    was disabled already, nothing changes.
    """
    if gc.isenabled():
        gc.disable()
        asyncio.get_running_loop().call_soon(gc.enable)
