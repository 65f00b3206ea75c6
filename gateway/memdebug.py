"""Opt-in memory snapshots of a running gateway, for finding what grows (off by default).

With ``ORDERGRAPH_DEBUG_TRACEMALLOC=/some/prefix`` in its environment, ``ordergraph serve``
starts ``tracemalloc`` (``ORDERGRAPH_DEBUG_TRACEMALLOC_FRAMES`` frames per allocation,
default 1) and, on each ``SIGUSR2``, collects garbage and writes a snapshot to
``<prefix>.<pid>.<n>``. Only whoever may signal the process (its user, root) can ask for
one; nothing is served over HTTP. Compare two snapshots with
``python -m gateway.memdebug OLD NEW`` (the top allocation sites by growth).

Each signal also writes ``<prefix>.<pid>.<n>.json``: the resident size, the allocators'
state (pymalloc's arenas and blocks, glibc's ``mallinfo2``: in use and free in the C
heap), the collector's object counts by type, and the length of every container the
gateway's components hold (two attributes deep) and of the record parser's memos; compare
two with ``python -m gateway.memdebug --stats OLD.json NEW.json``. With
``ORDERGRAPH_DEBUG_TRACEMALLOC_FRAMES=0`` nothing is traced (no slowdown) and only these
counts are written, without a collection first (the heap as it is);
``ORDERGRAPH_DEBUG_TRACEMALLOC_LATE=1`` starts tracing at the first signal instead of at
start (what a soak allocates after its warm-up, without slowing the warm-up);
``ORDERGRAPH_DEBUG_TRACEMALLOC_SIZES=1`` (or a file ``<prefix>.sizes`` present at the
signal) adds the bytes each main structure holds: a walk of everything it reaches, seconds
with a full record cache, which a loaded gateway feels (take it at the end of a run).
Tracing every allocation slows the process several times over: a diagnostic, never a
production setting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import gc
import itertools
import json
import logging
import os
import re
import signal
import sys
import tempfile
import tracemalloc
import types
from typing import Any

log = logging.getLogger("ordergraph.memdebug")

ENV = "ORDERGRAPH_DEBUG_TRACEMALLOC"


def tracemalloc_from_env(root: Any = None) -> bool:
    """Start tracing and install the SIGUSR2 snapshot handler when ``ENV`` is set
    (``root``: the object whose containers the counts list, e.g. the gateway)."""
    prefix = os.environ.get(ENV, "")
    if not prefix or not hasattr(signal, "SIGUSR2"):
        return False
    frames = int(os.environ.get(f"{ENV}_FRAMES", "1") or "1")
    late = bool(os.environ.get(f"{ENV}_LATE"))  # trace from the first signal on
    if frames > 0 and not late and not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    counter = itertools.count(1)

    def dump(_signum: int, _frame: Any) -> None:
        path = f"{prefix}.{os.getpid()}.{next(counter)}"
        if frames > 0 and not tracemalloc.is_tracing():
            tracemalloc.start(frames)  # late: what is allocated from now on
        elif frames > 0:
            gc.collect()
            tracemalloc.take_snapshot().dump(path)
        with open(path + ".json", "w") as f:
            json.dump(memory_counts(root, sizes=bool(os.environ.get(f"{ENV}_SIZES")) or os.path.exists(f"{prefix}.sizes")), f, indent=1, sort_keys=True)
        log.warning("memory snapshot written to %s", path)

    signal.signal(signal.SIGUSR2, dump)
    log.warning("tracemalloc on (%d frames): SIGUSR2 writes a snapshot to %s.<pid>.<n>", frames, prefix)
    return True


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo2() -> dict[str, int]:
    """glibc's heap totals (every arena): ``uordblks`` in use, ``fordblks`` free, ``hblkhd``
    in mmap'ed blocks; empty elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
        fn.restype = _Mallinfo2
        info = fn()
        return {name: int(getattr(info, name)) for name, _ in _Mallinfo2._fields_}
    return {}


def _pymalloc() -> dict[str, int]:
    """pymalloc's arenas and pools, parsed from ``sys._debugmallocstats`` (it writes to fd 2)."""
    out: dict[str, int] = {}
    with tempfile.TemporaryFile() as tmp, contextlib.suppress(OSError, AttributeError):
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
        for line in text.splitlines():
            m = re.match(r"^#\s*([a-z][a-z \-]+?)\s*=\s*([\d,]+)$", line.strip()) or re.match(r"^([A-Za-z][\w ]*?)\s*=\s*([\d,]+)$", line.strip())
            pools = re.match(r"^([\d,]+) unused pools \* \d+ bytes\s*=\s*([\d,]+)$", line.strip())
            if pools:
                out["bytes_in_unused_pools"] = int(pools.group(2).replace(",", ""))
            if m:
                out.setdefault(m.group(1).strip().replace(" ", "_"), int(m.group(2).replace(",", "")))
    return out


def _status() -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in open("/proc/self/status"):
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmData", "Threads"):
                out[key] = int(rest.split()[0])  # kB, Threads a count
    return out


def _containers(root: Any, depth: int = 2) -> dict[str, int]:
    """``len()`` of every dict, list, set and deque ``root`` holds, ``depth`` attributes deep."""
    out: dict[str, int] = {}
    seen: set[int] = set()

    def walk(obj: Any, path: str, level: int) -> None:
        if id(obj) in seen or level > depth:
            return
        seen.add(id(obj))
        try:
            attrs = vars(obj)
        except TypeError:
            return
        for name, value in list(attrs.items()):
            where = f"{path}.{name}"
            if isinstance(value, dict | list | set | frozenset | collections.deque):
                out[where] = len(value)
            elif hasattr(value, "__dict__") and not isinstance(value, type) and type(value).__module__.split(".")[0] in ("gateway", "sources", "resolvers"):
                walk(value, where, level + 1)

    if root is not None:
        walk(root, "gateway", 0)
    from sources import records

    for name in ("_DATES", "_DATETIMES", "_FLOATS", "_FORMATTED"):
        memo = getattr(records, name, None)
        if memo is not None:
            out[f"records.{name}"] = len(memo)
    return out


_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.CodeType, types.FrameType)


def _deep_size(roots: list[Any], seen: set[int]) -> int:
    """Bytes of ``roots`` and of everything they reach that ``seen`` does not hold yet
    (``sys.getsizeof``; functions, classes and modules left out)."""
    size = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _NOT_DATA):
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return size


def _structure_sizes(root: Any) -> dict[str, int]:
    """Approximate bytes held by each of the gateway's main structures, in this order; an
    object two of them share is counted in the first. The gateway, its components and the
    event loop are fences (a walk does not cross into another component)."""
    from sources import records

    seen: set[int] = set()
    with contextlib.suppress(RuntimeError):
        seen.add(id(asyncio.get_running_loop()))
    components = {}
    if root is not None:
        seen.add(id(root))
        components = {name: value for name, value in vars(root).items() if hasattr(value, "__dict__") and not isinstance(value, _NOT_DATA)}
        seen.update(id(v) for v in components.values())
    out: dict[str, int] = {}
    for name in ("_DATES", "_DATETIMES", "_FLOATS", "_FORMATTED"):
        out[f"records.{name}"] = _deep_size([getattr(records, name, {})], seen)
    cache = getattr(root, "cache", None)
    journal = getattr(root, "journal", None)
    for label, obj, attr in (
        ("cache._data", cache, "_data"), ("cache._last_good", cache, "_last_good"), ("cache._invalidated", cache, "_invalidated"),
        ("journal._watermarks", journal, "_watermarks"),
    ):
        value = getattr(obj, attr, None)
        if value is not None:
            out[label] = _deep_size([value], seen)
    for name, value in components.items():
        out[f"gateway.{name}"] = _deep_size(gc.get_referents(value), seen)
    return out


def memory_counts(root: Any = None, *, sizes: bool = False) -> dict[str, Any]:
    """What the process holds now (see the module's docstring); ``sizes``: with each
    structure's bytes too."""
    frozen = gc.get_freeze_count()
    gc.unfreeze()  # the frozen objects too (the gateway freezes what is alive every few seconds)
    try:
        kinds = collections.Counter(type(o).__name__ for o in gc.get_objects())
    finally:
        if frozen:
            gc.freeze()
    return {
        "status_kb": _status(),
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_objects": sum(kinds.values()),
        "gc_counts": list(gc.get_count()),
        "gc_frozen": frozen,
        "types": dict(kinds.most_common(60)),
        "mallinfo2": _mallinfo2(),
        "pymalloc": _pymalloc(),
        "containers": _containers(root),
        "sizes": _structure_sizes(root) if sizes else {},
    }


def compare_counts(old: str, new: str, *, top: int = 40) -> str:
    """What changed between two ``memory_counts`` files, largest changes first."""
    a, b = json.load(open(old)), json.load(open(new))
    lines = []
    for section in ("status_kb", "mallinfo2", "pymalloc"):
        for k in sorted(set(a[section]) | set(b[section])):
            x, y = a[section].get(k, 0), b[section].get(k, 0)
            if x != y:
                lines.append(f"{section}.{k}: {x:,} -> {y:,} ({y - x:+,})")
    lines.append(f"allocated_blocks: {a['allocated_blocks']:,} -> {b['allocated_blocks']:,} ({b['allocated_blocks'] - a['allocated_blocks']:+,})")
    lines.append(f"gc_objects: {a['gc_objects']:,} -> {b['gc_objects']:,} ({b['gc_objects'] - a['gc_objects']:+,})")
    for section in ("types", "containers", "sizes"):
        keys = set(a[section]) | set(b[section])
        diffs = sorted(((b[section].get(k, 0) - a[section].get(k, 0), k) for k in keys), key=lambda d: -abs(d[0]))
        for d, k in diffs[:top]:
            if d:
                lines.append(f"{section}.{k}: {a[section].get(k, 0):,} -> {b[section].get(k, 0):,} ({d:+,})")
    return "\n".join(lines)


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
    if len(sys.argv) >= 4 and sys.argv[1] == "--stats":
        print(compare_counts(sys.argv[2], sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) < 3:
        print("usage: python -m gateway.memdebug OLD_SNAPSHOT NEW_SNAPSHOT [top] [lineno|traceback|filename]", file=sys.stderr)
        sys.exit(2)
    print(compare(sys.argv[1], sys.argv[2], top=int(sys.argv[3]) if len(sys.argv) > 3 else 30, key=sys.argv[4] if len(sys.argv) > 4 else "lineno"))
