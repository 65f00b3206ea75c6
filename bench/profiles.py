"""Summaries of py-spy's collapsed stacks (``--format raw``): where the gateway spends its time.

``python -m bench.profiles FILE...`` prints, for each profile, the functions with the most
samples on top of the stack (self) and the project's functions with the most samples
anywhere on the stack (inclusive), grouped by function (line numbers dropped).
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

PROJECT = ("gateway/", "resolvers/", "sources/")
_LINE = re.compile(r":\d+\)$")


def _frame(raw: str) -> str:
    """``func (path/file.py:123)`` → ``func (path/file.py)``."""
    return _LINE.sub(")", raw.strip())


def _area(frame: str) -> str:
    """A coarse bucket for a frame: the library or project package it belongs to."""
    m = re.search(r"\(([^)]*)\)", frame)
    path = m.group(1) if m else frame
    for key, label in (
        ("asyncio/", "asyncio (event loop, tasks, gather)"),
        ("graphql/", "graphql-core (execution)"),
        ("strawberry/", "strawberry (resolver wrappers)"),
        ("aiodataloader", "aiodataloader"),
        ("cachetools", "cachetools"),
        ("uvicorn/", "uvicorn"),
        ("starlette/", "starlette"),
        ("aiohttp/", "aiohttp (source calls)"),
        ("sqlite3", "sqlite"),
        ("sources/", "ordergraph sources/"),
        ("resolvers/", "ordergraph resolvers/"),
        ("gateway/", "ordergraph gateway/"),
    ):
        if key in path:
            return label
    return "other"


def summarize(path: Path, top: int = 15) -> str:
    """A markdown summary of one collapsed-stack profile."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        areas[_area(frames[-1])] += n
        for f in set(frames):
            if any(p in f for p in PROJECT):
                incl[f] += n
    if not total:
        return f"{path.name}: no samples\n"
    pct = lambda n: f"{100 * n / total:.1f}%"  # noqa: E731
    out = [f"#### {path.stem} ({total} samples)", "", "Self time by area:", ""]
    out += [f"- {pct(n)} {a}" for a, n in areas.most_common()]
    out += ["", "Top functions (self):", ""]
    out += [f"- {pct(n)} `{f}`" for f, n in own.most_common(top)]
    out += ["", "Project functions (inclusive, entry points left out):", ""]
    out += [f"- {pct(n)} `{f}`" for f, n in incl.most_common() if n < 0.95 * total][:top]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    for name in argv if argv is not None else sys.argv[1:]:
        print(summarize(Path(name)))


if __name__ == "__main__":
    main()
