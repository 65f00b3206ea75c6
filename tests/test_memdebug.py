"""gateway/memdebug.py's memory counts: what a soak compares to attribute the gateway's
growth (container lengths, structure sizes, allocator state)."""

from __future__ import annotations

import json

from gateway.cache import RecordCache
from gateway.memdebug import compare_counts, memory_counts


class _Part:
    pass


def _root(entries: int) -> _Part:
    root = _Part()
    root.cache = RecordCache()
    root.other = _Part()
    root.other.seen = {i: str(i) * 20 for i in range(entries)}
    root.seen = {i: i for i in range(entries)}
    for i in range(entries):
        root.cache.put(("ns", str(i)), {"value": str(i) * 10}, root.cache.ticket())
    return root


def test_counts_name_each_container_and_size_each_structure():
    root = _root(200)
    counts = memory_counts(root, sizes=True)
    assert counts["containers"]["gateway.cache._data"] == 200
    assert counts["containers"]["gateway.seen"] == 200  # (only the project's own classes are entered)
    assert "records._DATETIMES" in counts["containers"]
    # a structure's bytes grow with what it holds; one counted in cache._data is not counted again
    bigger = memory_counts(_root(2000), sizes=True)
    assert bigger["sizes"]["cache._data"] > counts["sizes"]["cache._data"] > 0
    assert bigger["sizes"]["gateway.other"] > counts["sizes"]["gateway.other"]
    assert counts["sizes"]["gateway.cache"] < counts["sizes"]["cache._data"]
    assert memory_counts(root)["sizes"] == {}  # the walk only when asked


def test_compare_counts_lists_what_grew(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(memory_counts(_root(10))))
    new.write_text(json.dumps(memory_counts(_root(500))))
    report = compare_counts(str(old), str(new))
    assert "containers.gateway.cache._data: 10 -> 500 (+490)" in report
