"""Opt-in memory snapshots of a running gateway, for finding what grows (off by default).

With ``ORDERGRAPH_DEBUG_TRACEMALLOC=/some/prefix`` in its environment, ``ordergraph serve``
starts ``tracemalloc`` (``ORDERGRAPH_DEBUG_TRACEMALLOC_FRAMES`` frames per allocation,
default 1) and, on each ``SIGUSR2``, collects garbage and writes a snapshot to
``<prefix>.<pid>.<n>``. Only whoever may signal the process (its user, root) can ask for
one; nothing is served over HTTP. Compare two snapshots with
``python -m gateway.memdebug OLD NEW`` (the top allocation sites by growth).
Tracing every allocation slows the process several times over: a diagnostic, never a
production setting.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import signal
import sys
import tracemalloc
from typing import Any

log = logging.getLogger("ordergraph.memdebug")

ENV = "ORDERGRAPH_DEBUG_TRACEMALLOC"


def tracemalloc_from_env() -> bool:
    """Start tracing and install the SIGUSR2 snapshot handler when ``ENV`` is set."""
    prefix = os.environ.get(ENV, "")
    if not prefix or not hasattr(signal, "SIGUSR2"):
        return False
    frames = int(os.environ.get(f"{ENV}_FRAMES", "1") or "1")
    if not tracemalloc.is_tracing():
        tracemalloc.start(max(1, frames))
    counter = itertools.count(1)

    def dump(_signum: int, _frame: Any) -> None:
        gc.collect()
        path = f"{prefix}.{os.getpid()}.{next(counter)}"
        tracemalloc.take_snapshot().dump(path)
        log.warning("tracemalloc snapshot written to %s", path)

    signal.signal(signal.SIGUSR2, dump)
    log.warning("tracemalloc on (%d frames): SIGUSR2 writes a snapshot to %s.<pid>.<n>", frames, prefix)
    return True


def compare(old: str, new: str, *, top: int = 30, key: str = "lineno") -> str:
    """The ``top`` allocation sites by growth from snapshot ``old`` to ``new``."""
    a = tracemalloc.Snapshot.load(old)
    b = tracemalloc.Snapshot.load(new)
    stats = b.compare_to(a, key)
    total = sum(s.size_diff for s in stats)
    lines = [f"total growth {total / 2**20:.1f} MiB ({sum(s.count_diff for s in stats):+,} blocks)"]
    for s in stats[:top]:
        where = " <- ".join(f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}" for f in s.traceback)
        lines.append(f"{s.size_diff / 1024:+10.1f} KiB {s.count_diff:+8,} blocks  {where}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print("usage: python -m gateway.memdebug OLD_SNAPSHOT NEW_SNAPSHOT [top] [lineno|traceback|filename]", file=sys.stderr)
        sys.exit(2)
    print(compare(sys.argv[1], sys.argv[2], top=int(sys.argv[3]) if len(sys.argv) > 3 else 30, key=sys.argv[4] if len(sys.argv) > 4 else "lineno"))
