"""``Loader.load_all`` primes its answers inline: what ``DataLoader.prime`` would leave, key
by key (a value, an error marked as seen, a future some ``load`` made meanwhile kept)."""

from __future__ import annotations

import asyncio

import pytest

from resolvers.loaders import Loader


class Boom(Exception):
    pass


def _reference(keys, values, before):
    """What the loader's map holds after ``prime`` of each key, as aiodataloader does it."""
    loop = asyncio.get_running_loop()
    futures = dict(before)
    for key, value in zip(keys, values, strict=True):
        if key not in futures:
            future = loop.create_future()
            if isinstance(value, Exception):
                future.set_exception(value)
            else:
                future.set_result(value)
            futures[key] = future
    return futures


async def test_load_all_primes_what_prime_would_and_keeps_a_load_made_meanwhile() -> None:
    calls: list[list[str]] = []
    gate = asyncio.Event()
    error = Boom("b")

    async def batch(keys: list[str]) -> list[object]:
        calls.append(list(keys))
        if keys == ["a", "b", "c"]:
            await gate.wait()
        return [error if k == "b" else k.upper() for k in keys]

    loader = Loader(batch)
    first = loader.load("z")  # asked for before: load_all leaves it to load
    task = asyncio.ensure_future(loader.load_all(["a", "b", "c", "a", "z"]))
    await asyncio.sleep(0)
    meanwhile = loader.load("c")  # while the batch is out: its own future, its own call
    gate.set()
    with pytest.raises(Boom):
        await task
    assert await first == "Z" and await meanwhile == "C"
    assert loader._futures["c"] is meanwhile  # kept, not replaced by the primed value
    expected = _reference(["a", "b", "c"], ["A", error, "C"], {"z": first, "c": meanwhile})
    assert loader._futures.keys() == expected.keys()
    for key, future in loader._futures.items():
        assert future.done()
        if key == "b":
            assert future.exception() is error is expected[key].exception()
            assert not future._log_traceback  # seen
        else:
            assert future.result() == expected[key].result()
    # Primed: later loads make no call.
    calls.clear()
    assert await loader.load("a") == "A"
    with pytest.raises(Boom):
        await loader.load("b")
    assert (await loader.load_all(["a", "c"])) == {"a": "A", "c": "C"}
    assert calls == [] and loader.has("a") and not loader.has("q")
