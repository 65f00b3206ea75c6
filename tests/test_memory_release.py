"""``sources.memory.release_free_memory`` gives the C heap's free pages back: after a burst
of medium-sized blocks is freed around a few survivors, the process's resident size falls
when it is called (glibc only; elsewhere it says it cannot)."""

from __future__ import annotations

import gc
import sys

import pytest

from sources.memory import _MALLOC_TRIM, release_free_memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(_MALLOC_TRIM is None or not sys.platform.startswith("linux"), reason="needs glibc's malloc_trim (Linux)")
def test_free_pages_between_survivors_go_back_to_the_system() -> None:
    gc.collect()
    release_free_memory()
    # 120 MB of 4 KiB blocks (bytes objects this size come from the C heap), every 64th kept:
    # the survivors pin the heap's top, so freeing the rest alone returns nothing.
    burst = [bytes(4000) + i.to_bytes(4, "little") for i in range(30_000)]
    survivors = burst[::64]
    before_free = _rss_bytes()
    del burst
    gc.collect()
    freed_not_trimmed = _rss_bytes()
    assert release_free_memory() is True
    trimmed = _rss_bytes()
    assert len(survivors) == 469
    # the blocks freed are about 118 MB; at least half of that goes back only when trimmed
    assert before_free - freed_not_trimmed < 40e6
    assert freed_not_trimmed - trimmed > 60e6
