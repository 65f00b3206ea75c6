"""``sources.client.group_by`` groups as ``dict.setdefault`` does (the order of records
within a key, keys not asked for appended, every asked key present)."""

from __future__ import annotations

import dataclasses
import random

from sources.client import group_by


@dataclasses.dataclass
class Rec:
    key: str | None
    n: int


def _reference(records, attr, keys):
    out = {k: [] for k in keys}
    for r in records:
        out.setdefault(getattr(r, attr), []).append(r)
    return out


def test_group_by_answers_what_setdefault_answers_on_random_records():
    rng = random.Random(7)
    for _ in range(200):
        pool = [None, *(f"k{i}" for i in range(8))]
        records = [Rec(rng.choice(pool), n) for n in range(rng.randrange(30))]
        keys = rng.sample(pool[1:], rng.randrange(6)) + (["k1"] if rng.random() < 0.3 else [])
        got = group_by(records, "key", keys)
        want = _reference(records, "key", keys)
        assert got == want and list(got) == list(want)
