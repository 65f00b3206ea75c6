"""HTTP plumbing shared by the five connectors.

One ``SourceClient`` per source system, all on one pooled ``aiohttp.ClientSession`` per
process. The client knows the source API contract (``sources/API.md``): batch reads by a
field, paged listing, typed records. It knows nothing of GraphQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp
import orjson

from .records import R, Record, RecordError

MAX_KEYS_PER_CALL = 1000


class SourceError(Exception):
    """A source system failed to answer usefully.

    ``code`` is one of SOURCE_UNAVAILABLE, SOURCE_TIMEOUT, SOURCE_BAD_RESPONSE,
    CIRCUIT_OPEN; the GraphQL layer turns it into a typed error.
    """

    def __init__(self, source: str, code: str, message: str) -> None:
        super().__init__(f"{source.upper()}: {message}")
        self.source = source
        self.code = code
        self.extensions = {"code": code, "source": source}


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
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.batch_size = max(1, min(batch_size, MAX_KEYS_PER_CALL))
        self.on_request = on_request

    async def get(self, entity_set: str, params: dict[str, str]) -> dict[str, Any]:
        """One GET on an entity set; returns the decoded JSON body."""
        url = f"{self.base_url}/{entity_set}"
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with self.session.get(url, params=params, timeout=self.timeout) as resp:
                body = await resp.read()
                if resp.status >= 500:
                    outcome = "error"
                    raise SourceError(self.name, "SOURCE_UNAVAILABLE", f"{entity_set} answered HTTP {resp.status}")
                if resp.status >= 400:
                    outcome = "error"
                    raise SourceError(
                        self.name, "SOURCE_BAD_RESPONSE", f"{entity_set} refused the request: HTTP {resp.status} {body[:200]!r}"
                    )
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                outcome = "error"
                raise SourceError(self.name, "SOURCE_BAD_RESPONSE", f"{entity_set} answered malformed JSON") from exc
            if not isinstance(data, dict) or not isinstance(data.get("value"), list):
                outcome = "error"
                raise SourceError(self.name, "SOURCE_BAD_RESPONSE", f"{entity_set} answered without a 'value' list")
            return data
        except TimeoutError as exc:
            outcome = "timeout"
            raise SourceError(self.name, "SOURCE_TIMEOUT", f"{entity_set} did not answer within {self.timeout.total}s") from exc
        except aiohttp.ClientError as exc:
            outcome = "error"
            raise SourceError(self.name, "SOURCE_UNAVAILABLE", f"{entity_set} unreachable: {exc}") from exc
        finally:
            if self.on_request is not None:
                self.on_request(self.name, entity_set, time.perf_counter() - started, outcome)

    def _parse(self, record_type: type[R], rows: Iterable[Any]) -> list[R]:
        try:
            return [record_type.from_api(row) for row in rows]
        except RecordError as exc:
            raise SourceError(self.name, "SOURCE_BAD_RESPONSE", str(exc)) from exc

    async def fetch_by(self, record_type: type[R], field: str, values: Sequence[str]) -> list[R]:
        """Every record whose ``field`` is one of ``values``, in as few calls as allowed.

        Values are sent in chunks of ``batch_size``; chunks run concurrently, so a large
        batch costs one round trip of latency.
        """
        unique = list(dict.fromkeys(values))
        if not unique:
            return []
        chunks = [unique[i : i + self.batch_size] for i in range(0, len(unique), self.batch_size)]

        async def one(chunk: list[str]) -> list[R]:
            data = await self.get(record_type.ENTITY_SET, {field: ",".join(chunk)})
            return self._parse(record_type, data["value"])

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
        data = await self.get(record_type.ENTITY_SET, params)
        return Page(self._parse(record_type, data["value"]), int(data.get("count", 0)), data.get("nextSkipToken"))


def group_by(records: Iterable[Record], attr: str, keys: Iterable[str]) -> dict[str, list[Any]]:
    """Group records by an attribute, with an empty list for every asked key."""
    out: dict[str, list[Any]] = {k: [] for k in keys}
    for r in records:
        out.setdefault(getattr(r, attr), []).append(r)
    return out


def index_by_key(records: Iterable[Record]) -> dict[str, Any]:
    return {r.key: r for r in records}
