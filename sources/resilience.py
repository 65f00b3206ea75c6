"""Fault tolerance for the calls to one source system.

A sick source must cost the gateway a bounded amount of time and must not be hammered
while it is sick. The layers around one read, outermost first:

``SingleFlight``
    Identical reads in flight (same entity set and parameters) share one upstream call,
    across every concurrent request, not only within one.
deadline
    Each call has a timeout budget (``Policy.timeout_seconds``), started when the
    upstream call starts. Waiting for a slot, every attempt and every backoff spend it.
``CircuitBreaker``
    Closed → open after ``breaker_failures`` consecutive failures, or a failure rate of
    ``breaker_failure_rate`` over the last ``breaker_window`` calls. While open, calls fail
    fast with CIRCUIT_OPEN. After the cool-down one probe goes through (half-open); its
    success closes the breaker, its failure opens it again.
retries
    Reads only, with jittered exponential backoff, only while the budget lasts, and only
    with a token from the ``RetryBudget`` (a token bucket fed by a share of the calls), so
    retries never multiply the load on a struggling system.
bulkhead
    At most ``max_in_flight`` attempts in flight per source, so one slow system cannot
    take every pooled connection.

``Resilience`` also keeps the source's health: breaker state, last success, last error
and last event, which ``/readyz`` and the ``sources`` query report.

Within one request (``request_budget()``, entered by the gateway around each execution)
the budget holds per source across all the request's calls to it (``RequestBudget``): the
time the request waits on a source, summed over its calls, is at most that source's
budget. Two reads of a hung WMS one after the other used to cost twice the budget.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import datetime as dt
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("ordergraph.sources")

# The codes of SourceError (sources/client.py); the GraphQL layer shows them as is.
SOURCE_UNAVAILABLE = "SOURCE_UNAVAILABLE"
SOURCE_TIMEOUT = "SOURCE_TIMEOUT"
SOURCE_BAD_RESPONSE = "SOURCE_BAD_RESPONSE"
CIRCUIT_OPEN = "CIRCUIT_OPEN"


class SourceError(Exception):
    """A source system failed to answer usefully.

    ``code`` is one of SOURCE_UNAVAILABLE, SOURCE_TIMEOUT, SOURCE_BAD_RESPONSE,
    CIRCUIT_OPEN; the GraphQL layer turns it into a typed error. ``client_fault`` marks an
    answer that blames the request (HTTP 4xx): the source is up, so it does not count
    against the source's breaker and is never retried.
    """

    def __init__(self, source: str, code: str, message: str, *, client_fault: bool = False) -> None:
        super().__init__(f"{source.upper()}: {message}")
        self.source = source
        self.detail = message
        self.code = code
        self.client_fault = client_fault
        self.extensions = {"code": code, "source": source}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RequestBudget:
    """One request's time budget per source: the time it spends waiting on that source,
    summed over its calls (overlapping calls count once), may not exceed the source's
    ``timeout_seconds``. The clock of a source runs only while a call to it is in flight,
    so a slow MES does not spend the ERP's budget."""

    def __init__(self) -> None:
        self._sources: dict[str, list[float]] = {}  # source -> [seconds left, calls in flight, busy since]

    def begin(self, source: str, budget_seconds: float, now: float) -> float:
        """A call to ``source`` starts: its deadline (loop time)."""
        state = self._sources.get(source)
        if state is None:
            state = self._sources[source] = [budget_seconds, 0.0, now]
        if state[1] == 0:
            state[2] = now
        state[1] += 1
        return state[2] + state[0]

    def end(self, source: str, now: float) -> None:
        """A call to ``source`` ended (answered, failed or gave up)."""
        state = self._sources[source]
        state[1] -= 1
        if state[1] == 0:
            state[0] = max(0.0, state[0] - (now - state[2]))


_REQUEST_BUDGET: contextvars.ContextVar[RequestBudget | None] = contextvars.ContextVar("ordergraph_request_budget", default=None)


@contextlib.contextmanager
def request_budget() -> Iterator[RequestBudget]:
    """Make the calls inside (and the tasks they start) share one budget per source."""
    budget = RequestBudget()
    token = _REQUEST_BUDGET.set(budget)
    try:
        yield budget
    finally:
        _REQUEST_BUDGET.reset(token)


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """How calls to one source are bounded; built from ``gateway.config.SourceConfig``."""

    timeout_seconds: float = 5.0  # budget of one call, retries and waiting included
    retries: int = 2  # extra attempts of a read after a transient failure
    backoff_seconds: float = 0.05  # first backoff; doubles per retry, full jitter
    backoff_max_seconds: float = 1.0
    retry_budget_ratio: float = 0.2  # retries may be at most this share of calls ...
    retry_budget_burst: float = 10.0  # ... plus this many (the bucket's size)
    breaker_failures: int = 5  # consecutive failures that open the breaker
    breaker_failure_rate: float = 0.5  # or this failure rate ...
    breaker_window: int = 20  # ... over this many recent calls
    breaker_cooldown_seconds: float = 5.0  # open → half-open
    max_in_flight: int = 20  # bulkhead: attempts in flight to this source
    stale_if_error: bool = True  # serve the last good record, marked stale, on failure
    stale_after_seconds: float = 900.0  # silent (no call answered, no event) → stale


class BreakerState(enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitOpen(Exception):
    """The breaker refused a call (internal; surfaces as SourceError CIRCUIT_OPEN)."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(retry_in)
        self.retry_in = retry_in


class CircuitBreaker:
    """Consecutive-failure and failure-rate breaker with a single half-open probe."""

    def __init__(
        self,
        failures: int = 5,
        failure_rate: float = 0.5,
        window: int = 20,
        cooldown_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = max(1, failures)
        self.failure_rate = failure_rate
        self.cooldown_seconds = cooldown_seconds
        self._monotonic = monotonic
        self._outcomes: collections.deque[bool] = collections.deque(maxlen=max(1, window))
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened = 0  # times the breaker opened

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._monotonic() - self._opened_at >= self.cooldown_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def admit(self) -> bool:
        """Let a call through; True when it is the half-open probe. Raises CircuitOpen."""
        if self._opened_at is None:
            return False
        waited = self._monotonic() - self._opened_at
        if self._probing or waited < self.cooldown_seconds:
            raise CircuitOpen(max(0.0, self.cooldown_seconds - waited))
        self._probing = True
        return True

    def success(self, probe: bool) -> None:
        if probe:
            self._close()
            return
        if self._opened_at is not None:
            return  # admitted before the breaker opened; only the probe may close it
        self._consecutive = 0
        self._outcomes.append(True)

    def failure(self, probe: bool) -> None:
        if probe:
            self._open()
            return
        if self._opened_at is not None:
            return  # a call admitted before the breaker opened; it is open already
        self._consecutive += 1
        self._outcomes.append(False)
        full = len(self._outcomes) == self._outcomes.maxlen
        rate = self._outcomes.count(False) / len(self._outcomes)
        if self._consecutive >= self.failures or (full and rate >= self.failure_rate):
            self._open()

    def abandon(self, probe: bool) -> None:
        """The call ended without a verdict (cancelled): let another probe go."""
        if probe:
            self._probing = False

    def _open(self) -> None:
        self._opened_at = self._monotonic()
        self._probing = False
        self.opened += 1

    def _close(self) -> None:
        self._opened_at = None
        self._probing = False
        self._consecutive = 0
        self._outcomes.clear()


class RetryBudget:
    """Token bucket: every call adds ``ratio`` tokens (up to ``burst``), a retry takes one."""

    def __init__(self, ratio: float = 0.2, burst: float = 10.0) -> None:
        self.ratio = ratio
        self.burst = burst
        self.tokens = burst

    def deposit(self) -> None:
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def withdraw(self) -> bool:
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class SingleFlight:
    """Shares one in-flight call among everyone asking the same thing at the same time.

    ``generation`` (e.g. the record cache's invalidation count) is part of the key: a
    caller that arrives after an invalidation starts a new call instead of joining one that
    began before it, so it never receives (and caches) an answer older than the event.
    """

    def __init__(self, generation: Callable[[], int] | None = None) -> None:
        self._generation = generation
        self._flights: dict[Hashable, asyncio.Task[Any]] = {}
        self.started = 0
        self.joined = 0

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """The result of ``call()``, shared with concurrent callers of the same key."""
        full = (key, self._generation()) if self._generation is not None else key
        task = self._flights.get(full)
        if task is None:
            task = asyncio.ensure_future(call())
            self._flights[full] = task
            self.started += 1

            def done(t: asyncio.Task[Any], full: Hashable = full) -> None:
                if self._flights.get(full) is t:
                    del self._flights[full]
                if not t.cancelled():
                    t.exception()  # retrieved: no "exception was never retrieved" noise

            task.add_done_callback(done)
        else:
            self.joined += 1
        # A caller that gives up (client gone) must not cancel the call for the others.
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancel every call in flight (shutdown)."""
        tasks = list(self._flights.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclasses.dataclass(frozen=True, slots=True)
class SourceHealth:
    """A snapshot of one source's health (``/readyz``, the ``sources`` query)."""

    source: str
    breaker_state: BreakerState
    in_flight: int
    max_in_flight: int
    last_success_at: dt.datetime | None
    last_error_at: dt.datetime | None
    last_error: str | None
    last_error_code: str | None
    last_event_at: dt.datetime | None
    stale: bool  # no answered call and no event for longer than stale_after_seconds
    calls: int
    failures: int
    retries: int
    short_circuited: int
    shared: int  # calls answered by joining an identical call in flight

    def to_json(self) -> dict[str, Any]:
        def iso(t: dt.datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "breakerState": self.breaker_state.value,
            "inFlight": self.in_flight,
            "maxInFlight": self.max_in_flight,
            "lastSuccessAt": iso(self.last_success_at),
            "lastErrorAt": iso(self.last_error_at),
            "lastError": self.last_error,
            "lastErrorCode": self.last_error_code,
            "lastEventAt": iso(self.last_event_at),
            "stale": self.stale,
            "calls": self.calls,
            "failures": self.failures,
            "retries": self.retries,
            "shortCircuited": self.short_circuited,
            "shared": self.shared,
        }


class Resilience:
    """The policy of one source applied to its calls, and that source's health."""

    def __init__(
        self,
        source: str,
        policy: Policy | None = None,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
        generation: Callable[[], int] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.policy = policy = policy or Policy()
        self.clock = clock
        self.breaker = CircuitBreaker(
            policy.breaker_failures, policy.breaker_failure_rate, policy.breaker_window, policy.breaker_cooldown_seconds
        )
        self.retry_budget = RetryBudget(policy.retry_budget_ratio, policy.retry_budget_burst)
        self.flights = SingleFlight(generation)
        self._slots = asyncio.Semaphore(max(1, policy.max_in_flight))
        self._rng = rng or random.Random()
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self.calls = 0
        self.failures = 0
        self.retries = 0
        self.short_circuited = 0
        self.started_at = clock()
        self.last_success_at: dt.datetime | None = None
        self.last_error_at: dt.datetime | None = None
        self.last_error: str | None = None
        self._last_detail = "n/a"
        self.last_error_code: str | None = None
        self.last_event_at: dt.datetime | None = None
        # Down = the breaker opened; said once when it goes down and once when it answers.
        self.down = False

    async def call(self, key: Hashable, attempt: Callable[[], Awaitable[T]], *, what: str, read: bool = True) -> T:
        """Run ``attempt`` under the policy; raises SourceError on failure.

        ``key`` identifies identical reads for single-flight; ``what`` names the call in
        error messages; only reads (``read=True``) are retried or shared.
        """
        budget = _REQUEST_BUDGET.get()
        if budget is None:
            if not read:
                return await self._run(attempt, what, retry=False)
            return await self.flights.do(key, lambda: self._run(attempt, what, retry=True))
        loop = asyncio.get_running_loop()
        seconds = self.policy.timeout_seconds
        deadline = budget.begin(self.source, seconds, loop.time())
        try:
            if deadline <= loop.time():
                raise SourceError(self.source, SOURCE_TIMEOUT, f"{what}: this request's {seconds:g}s budget for this source is spent")
            if deadline - loop.time() >= seconds:
                # The request's whole budget is left: the call's own budget bounds it, and
                # the call records its outcome (health, breaker) before this request moves on.
                if not read:
                    return await self._run(attempt, what, retry=False)
                return await self.flights.do(key, lambda: self._run(attempt, what, retry=True))
            try:
                # The shared flight goes on for the others; only this request stops waiting.
                async with asyncio.timeout_at(deadline):
                    if not read:
                        return await self._run(attempt, what, retry=False)
                    return await self.flights.do(key, lambda: self._run(attempt, what, retry=True))
            except TimeoutError as exc:
                raise SourceError(self.source, SOURCE_TIMEOUT, f"{what}: no answer within {seconds:g}s") from exc
        finally:
            budget.end(self.source, loop.time())

    def note_event(self, at: dt.datetime | None = None) -> None:
        """The source sent an event: it is alive, whatever its API says."""
        self.last_event_at = at or self.clock()

    def is_stale(self, now: dt.datetime | None = None) -> bool:
        """True when the source answered no call and sent no event for too long."""
        now = now or self.clock()
        heard = max(t for t in (self.started_at, self.last_success_at, self.last_event_at) if t is not None)
        return (now - heard).total_seconds() > self.policy.stale_after_seconds

    def health(self, now: dt.datetime | None = None) -> SourceHealth:
        """A snapshot of this source's health."""
        return SourceHealth(
            source=self.source,
            breaker_state=self.breaker.state,
            in_flight=self.in_flight,
            max_in_flight=self.policy.max_in_flight,
            last_success_at=self.last_success_at,
            last_error_at=self.last_error_at,
            last_error=self.last_error,
            last_error_code=self.last_error_code,
            last_event_at=self.last_event_at,
            stale=self.is_stale(now),
            calls=self.calls,
            failures=self.failures,
            retries=self.retries,
            short_circuited=self.short_circuited,
            shared=self.flights.joined,
        )

    async def aclose(self) -> None:
        await self.flights.aclose()

    # --- one call -------------------------------------------------------------------------

    async def _run(self, attempt: Callable[[], Awaitable[T]], what: str, *, retry: bool) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.timeout_seconds
        self.calls += 1
        self.retry_budget.deposit()
        tries = 0
        while True:
            try:
                probe = self.breaker.admit()
            except CircuitOpen as exc:
                self.short_circuited += 1
                raise SourceError(
                    self.source,
                    CIRCUIT_OPEN,
                    f"{what}: circuit open after repeated failures (last: {self._last_detail}); "
                    f"next probe in {exc.retry_in:.1f}s",
                ) from None
            try:
                result = await self._attempt(attempt, deadline, what)
            except SourceError as exc:
                self._failed(exc, probe)
                if not (retry and self._may_retry(exc, tries, deadline - loop.time())):
                    raise
                tries += 1
                self.retries += 1
                await asyncio.sleep(self._backoff(tries))
                continue
            except BaseException:
                self.breaker.abandon(probe)
                raise
            self.breaker.success(probe)
            self.last_success_at = self.clock()
            if self.down:
                self.down = False
                log.info("%s answers again", self.source.upper())
            return result

    async def _attempt(self, attempt: Callable[[], Awaitable[T]], deadline: float, what: str) -> T:
        waiting = True
        try:
            async with asyncio.timeout_at(deadline):
                async with self._slots:  # waiting for a slot spends the budget too
                    waiting = False
                    self.in_flight += 1
                    self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
                    try:
                        return await attempt()
                    finally:
                        self.in_flight -= 1
        except TimeoutError as exc:
            budget = self.policy.timeout_seconds
            why = f"no free call slot within {budget:g}s" if waiting else f"no answer within {budget:g}s"
            raise SourceError(self.source, SOURCE_TIMEOUT, f"{what}: {why}") from exc

    def _failed(self, exc: SourceError, probe: bool) -> None:
        self.last_error_at = self.clock()
        self.last_error = str(exc)
        self._last_detail = exc.detail
        self.last_error_code = exc.code
        if exc.client_fault:
            self.breaker.success(probe)  # the source answered; the request was wrong
            return
        self.failures += 1
        self.breaker.failure(probe)
        if not self.down and self.breaker.state is BreakerState.OPEN:
            self.down = True
            log.warning(
                "%s is down: %s; its calls fail fast, probing every %g s",
                self.source.upper(), exc.detail, self.policy.breaker_cooldown_seconds,
            )  # fmt: skip

    def _may_retry(self, exc: SourceError, tries: int, remaining: float) -> bool:
        # Only transient faults: a malformed answer will be malformed again, and a
        # timeout has spent the budget already.
        if exc.code != SOURCE_UNAVAILABLE or exc.client_fault or tries >= self.policy.retries:
            return False
        if self.breaker.state is not BreakerState.CLOSED:
            return False
        # The backoff's upper bound must leave time for the attempt itself.
        if remaining <= self._backoff_cap(tries + 1) * 2:
            return False
        return self.retry_budget.withdraw()

    def _backoff_cap(self, tries: int) -> float:
        return min(self.policy.backoff_max_seconds, self.policy.backoff_seconds * 2 ** (tries - 1))

    def _backoff(self, tries: int) -> float:
        return self._rng.uniform(0, self._backoff_cap(tries))  # full jitter
