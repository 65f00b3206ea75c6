"""Memory around bulk work (shared by the simulator and the gateway): the cyclic garbage
collector paused, and the C heap's free pages given back afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
from collections.abc import Callable, Iterator
from contextvars import ContextVar


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


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _libc_malloc_trim()


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``); False when
    there is no such call here.

    Python's small objects live in its own arenas, which go back whole when empty; what is
    larger (response bodies, big dicts and lists, the parsers' buffers) comes from the C
    heap, whose free pages between live blocks stay in the process after a burst of work
    (a sweep over every order) until trimmed: the resident size then only ever grows.
    Costs a walk of the heap's free lists: call it after bulk work and full collections,
    not per request."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


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


# Set by ``reads_frozen``: source answers parsed in this context are frozen (``frozen_read``).
_READS_FROZEN: ContextVar[bool] = ContextVar("ordergraph_reads_frozen", default=False)


@contextlib.contextmanager
def reads_frozen() -> Iterator[None]:
    """Inside (in this task and the tasks it starts meanwhile, which copy its context: a
    request's loaders' batches), each source answer's records are frozen once parsed
    (``frozen_read``). For bulk reads whose records live on in the record cache (a what-if
    reading a work centre's whole queue: tens of thousands of records at 100,000 orders):
    the collector's young and middle passes after each answer would otherwise walk the
    records parsed so far again, and move them on to the full passes."""
    token = _READS_FROZEN.set(True)
    try:
        yield
    finally:
        _READS_FROZEN.reset(token)


def frozen_read() -> None:
    """``gc.freeze()`` (O(1)) inside ``reads_frozen``; nothing elsewhere. A source client
    calls it right after parsing an answer, before the collector runs again. What the
    freeze keeps from the collector and dies in a cycle waits for the gateway's next full
    pass, as with its freeze loop every few seconds (gateway/app.py); acyclic garbage is
    still freed at once."""
    if _READS_FROZEN.get():
        gc.freeze()
