"""HTTP plumbing shared by the five connectors.

One ``SourceClient`` per source system, all on one pooled ``aiohttp.ClientSession`` per
process. The client knows the source API contract (``sources/API.md``): batch reads by a
field, paged listing, typed records. It knows nothing of GraphQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp
import orjson
from opentelemetry.trace import SpanKind

from . import tracing
from .keys import KeyFormats
from .memory import frozen_read, gc_paused
from .records import R, Record, RecordError
from .resilience import Policy, Resilience, SourceError, utc_now

__all__ = ["InvalidKey", "Page", "RequestHook", "SourceClient", "SourceError"]


class InvalidKey(ValueError):
    """A key that cannot name a record of the source (``sources/keys.py``): never sent.

    Keys travel inside URLs and comma-separated batch filters, so ``A,B`` as one customer
    number read two customers' orders."""

MAX_KEYS_PER_CALL = 1000


@dataclasses.dataclass(slots=True)
class Page:
    """One page of a listing."""

    records: list[Any]
    count: int
    next_skip_token: str | None


# Called after every upstream call: (source, entity_set, seconds, outcome).
RequestHook = Callable[[str, str, float, str], None]


class SourceClient:
    """Reads one source system's entity sets over HTTP."""

    def __init__(
        self,
        name: str,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        timeout_seconds: float = 5.0,
        batch_size: int = 500,
        on_request: RequestHook | None = None,
        policy: Policy | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        generation: Callable[[], int] | None = None,
        key_formats: KeyFormats | None = None,
    ) -> None:
        self.name = name
        self.key_formats = key_formats or KeyFormats()
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.policy = policy or Policy(timeout_seconds=timeout_seconds)
        self.timeout = aiohttp.ClientTimeout(total=self.policy.timeout_seconds)
        self.batch_size = max(1, min(batch_size, MAX_KEYS_PER_CALL))
        self.on_request = on_request
        # Budget, retries, breaker, bulkhead and single-flight (sources/resilience.py).
        self.resilience = Resilience(name, self.policy, clock=clock, generation=generation)

    async def get(
        self, entity_set: str, params: dict[str, str], record_type: type[Record] | None = None
    ) -> dict[str, Any]:
        """One read of an entity set under the source's policy; the decoded JSON body.

        With ``record_type``, ``value`` holds parsed records: parsing happens inside the
        call, so a record that does not fit counts against the source like any bad answer,
        and identical concurrent reads share the parsed result.
        """
        key = (entity_set, record_type.__name__ if record_type else None, tuple(sorted(params.items())))
        if not tracing.enabled():
            return await self.resilience.call(
                key, lambda: self._get_once(entity_set, params, record_type), what=entity_set
            )
        return await self._traced_get(key, entity_set, params, record_type)

    async def _traced_get(
        self, key: Any, entity_set: str, params: dict[str, str], record_type: type[Record] | None
    ) -> dict[str, Any]:
        """``get`` in a ``source.call`` span: batch size, attempts, retries, breaker state."""
        keys = next((v.count(",") + 1 for k, v in params.items() if not k.startswith("$")), 0)
        attributes = {
            "ordergraph.source.system": self.name,
            "ordergraph.source.entity_set": entity_set,
            "ordergraph.source.batch_size": keys or int(params.get("$top", 0)),
            "ordergraph.source.breaker_state": self.resilience.breaker.state.name,
        }
        attempts = 0

        async def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            return await self._get_once(entity_set, params, record_type)

        with tracing.span(f"source.call {self.name} {entity_set}", attributes, kind=SpanKind.CLIENT) as span:
            try:
                return await self.resilience.call(key, attempt, what=entity_set)
            except SourceError as exc:
                if span is not None:
                    span.set_attribute("ordergraph.source.error", exc.code)
                raise
            finally:
                if span is not None:
                    # attempts 0: an identical read already in flight answered (single-flight)
                    span.set_attributes({
                        "ordergraph.source.attempts": attempts,
                        "ordergraph.source.retries": max(0, attempts - 1),
                        "ordergraph.source.shared": attempts == 0,
                        "ordergraph.source.breaker_state_after": self.resilience.breaker.state.name,
                    })

    async def _get_once(
        self, entity_set: str, params: dict[str, str], record_type: type[Record] | None
    ) -> dict[str, Any]:
        """One upstream GET, no retries; the resilience layer bounds its time."""
        url = f"{self.base_url}/{entity_set}"
        started = time.perf_counter()
        outcome = "ok"
        try:
            headers = tracing.inject({}) if tracing.enabled() else None  # traceparent to the source
            async with self.session.get(url, params=params, timeout=self.timeout, headers=headers) as resp:
                body = await resp.read()
                if resp.status >= 500:
                    outcome = "error"
                    raise SourceError(self.name, "SOURCE_UNAVAILABLE", f"{entity_set} answered HTTP {resp.status}")
                if resp.status >= 400:
                    outcome = "error"
                    raise SourceError(
                        self.name,
                        "SOURCE_BAD_RESPONSE",
                        f"{entity_set} refused the request: HTTP {resp.status} {body[:200]!r}",
                        client_fault=True,
                    )
            # Decoding and parsing an answer (up to a thousand records, a few dozen objects
            # each) is synchronous bulk work: the cyclic collector waits (sources.memory).
            # Left running, the allocations set off full passes over every object not yet
            # frozen, the answers parsed so far included: 6 of them, 1.6 s, while the first
            # what-if at 100,000 orders read its 44,000 records again.
            with gc_paused():
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    outcome = "error"
                    raise SourceError(self.name, "SOURCE_BAD_RESPONSE", f"{entity_set} answered malformed JSON") from exc
                if not isinstance(data, dict) or not isinstance(data.get("value"), list):
                    outcome = "error"
                    raise SourceError(self.name, "SOURCE_BAD_RESPONSE", f"{entity_set} answered without a 'value' list")
                if record_type is not None:
                    outcome = "error"
                    data["value"] = self._parse(record_type, data["value"])
                    outcome = "ok"
                frozen_read()  # inside sources.memory.reads_frozen only (a what-if's bulk reads)
            return data
        except (TimeoutError, asyncio.CancelledError):
            # Cancelled is how the call's budget (resilience deadline) ends an attempt.
            outcome = "timeout"
            raise
        except aiohttp.ClientError as exc:
            outcome = "error"
            raise SourceError(self.name, "SOURCE_UNAVAILABLE", f"{entity_set} unreachable: {exc}") from exc
        finally:
            if self.on_request is not None:
                self.on_request(self.name, entity_set, time.perf_counter() - started, outcome)

    def _parse(self, record_type: type[R], rows: Iterable[Any]) -> list[R]:
        try:
            parse = record_type.parser()
            return [parse(row) for row in rows]
        except RecordError as exc:
            raise SourceError(self.name, "SOURCE_BAD_RESPONSE", str(exc)) from exc

    def check_key(self, field: str, value: str) -> None:
        """InvalidKey unless ``value`` can be a ``field`` key of this source."""
        problem = self.key_formats.problem(field, value)
        if problem is not None:
            raise InvalidKey(problem)

    async def fetch_by(self, record_type: type[R], field: str, values: Sequence[str]) -> list[R]:
        """Every record whose ``field`` is one of ``values``, in as few calls as allowed.

        Values are sent in chunks of ``batch_size``; chunks run concurrently, so a large
        batch costs one round trip of latency.
        """
        # A value that cannot be a key names no record: it is left out, never sent.
        unique = [v for v in dict.fromkeys(values) if self.key_formats.problem(field, v) is None]
        if not unique:
            return []
        chunks = [unique[i : i + self.batch_size] for i in range(0, len(unique), self.batch_size)]

        async def one(chunk: list[str]) -> list[R]:
            data = await self.get(record_type.ENTITY_SET, {field: ",".join(chunk)}, record_type)
            return list(data["value"])

        if len(chunks) == 1:
            return await one(chunks[0])
        results = await asyncio.gather(*(one(c) for c in chunks))
        return [r for part in results for r in part]

    async def list(
        self, record_type: type[R], *, top: int, skip_token: str | None = None, filters: dict[str, str] | None = None
    ) -> Page:
        """One page of a listing, sorted by key."""
        params = dict(filters or {})
        params["$top"] = str(top)
        if skip_token:
            params["$skiptoken"] = skip_token
        data = await self.get(record_type.ENTITY_SET, params, record_type)
        return Page(list(data["value"]), int(data.get("count", 0)), data.get("nextSkipToken"))


def group_by(records: Iterable[Record], attr: str, keys: Iterable[str]) -> dict[str, list[Any]]:
    """Group records by an attribute, with an empty list for every asked key."""
    out: dict[str, list[Any]] = {k: [] for k in keys}
    for r in records:
        key = getattr(r, attr)
        group = out.get(key)
        if group is None:  # a record for a key not asked (setdefault without a list per record)
            group = out[key] = []
        group.append(r)
    return out


def index_by_key(records: Iterable[Record]) -> dict[str, Any]:
    return {r.key: r for r in records}
