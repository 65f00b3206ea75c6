"""Fault injection for the simulated plant: make any source system sick on demand.

Modes, per system (``POST /control/faults`` ``{"mes": {"mode": "slow", "factor": 10}}``):

``down``
    Connection refused. When the plant serves each system on its own port
    (``start_simulator(..., separate_ports=True)``), the system's listener is closed, so
    new connections are refused and open ones dropped, and it is reopened on recovery. On
    the shared port a request for that system has its connection aborted without an answer
    (the client sees "server disconnected").
``slow``
    Answers after ``factor`` × the system's latency (at least ``MIN_SLOW_BASE_MS``), so
    ``factor`` 10 at the default 3 ms is 500 ms: slow enough to time out a tight budget.
``hang``
    Never answers, until the fault is cleared or the plant stops.
``error``
    HTTP 500.
``malformed``
    HTTP 200 with a body that is not JSON.
``missing_fields``
    HTTP 200 with records that lack their key field (a required field).
``flap``
    Down for ``period_seconds``, up for ``period_seconds``, and so on.
``none``
    Healthy again (as ``DELETE /control/faults``).

``rate`` (0..1, default 1) is the share of requests that ``slow``, ``hang``, ``error``,
``malformed`` and ``missing_fields`` hit; the others answer normally.
``GET /control/faults`` shows what is active. The CLI takes the same as ``--fault
mes=slow`` or ``--fault mes=error,rate=0.5`` (see ``parse_fault_option``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from sources.tasks import stop_task

from .world import SYSTEMS, find_entity_set

MODES = ("none", "down", "slow", "hang", "error", "malformed", "missing_fields", "flap")
RATED_MODES = frozenset({"slow", "hang", "error", "malformed", "missing_fields"})
MIN_SLOW_BASE_MS = 50.0
MALFORMED_BODY = b'{"value": [{"SalesOrder": "10000001", "Sold'  # cut off mid-record

# Opens (True) or closes (False) a system's own listener (separate-port mode).
ListenerToggle = Callable[[str, bool], Awaitable[None]]


class FaultError(ValueError):
    """An invalid fault description (answered as 400 by the control API)."""


def _number(spec: dict[str, Any], name: str, default: float, low: float, high: float, where: str) -> float:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FaultError(f"{where}.{name} must be a number")
    if not low <= value <= high:
        raise FaultError(f"{where}.{name} must be between {low:g} and {high:g}, got {value}")
    return float(value)


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """What is wrong with one system."""

    mode: str
    rate: float = 1.0
    factor: float = 10.0
    period_seconds: float = 1.0

    @classmethod
    def from_json(cls, spec: Any, where: str = "fault") -> Fault:
        """Validate one ``{"mode": ..., "rate": ..., ...}`` object; FaultError if invalid."""
        if isinstance(spec, str):
            spec = {"mode": spec}
        if not isinstance(spec, dict):
            raise FaultError(f'{where} must be an object like {{"mode": "down"}}')
        unknown = set(spec) - {"mode", "rate", "factor", "period_seconds"}
        if unknown:
            raise FaultError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
        mode = spec.get("mode")
        if mode not in MODES:
            raise FaultError(f"{where}.mode must be one of {', '.join(MODES)}, got {mode!r}")
        return cls(
            mode=mode,
            rate=_number(spec, "rate", 1.0, 0.0, 1.0, where),
            factor=_number(spec, "factor", 10.0, 1.0, 10_000.0, where),
            period_seconds=_number(spec, "period_seconds", 1.0, 0.01, 3600.0, where),
        )

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "rate": self.rate, "factor": self.factor, "period_seconds": self.period_seconds}


def parse_faults(body: Any) -> dict[str, Fault]:
    """``{"<system>": {"mode": ...}, ...}`` → faults by system; FaultError if invalid."""
    if not isinstance(body, dict) or not body:
        raise FaultError('body must be {"<system>": {"mode": "down|slow|hang|error|malformed|missing_fields|flap|none"}}')
    out = {}
    for system, spec in body.items():
        if system not in SYSTEMS:
            raise FaultError(f"unknown system {system!r}; expected one of {', '.join(SYSTEMS)}")
        out[system] = Fault.from_json(spec, system)
    return out


def parse_fault_option(text: str) -> tuple[str, Fault]:
    """A CLI ``--fault``: ``mes=slow``, ``mes=error,rate=0.5``, ``tms=flap,period=2``."""
    system, sep, rest = text.partition("=")
    if not sep or not rest:
        raise FaultError(f"--fault {text!r}: expected SYSTEM=MODE[,rate=R][,factor=F][,period=S]")
    mode, *settings = rest.split(",")
    spec: dict[str, Any] = {"mode": mode.strip()}
    names = {"rate": "rate", "factor": "factor", "period": "period_seconds", "period_seconds": "period_seconds"}
    for setting in settings:
        name, _, raw = setting.partition("=")
        if name.strip() not in names:
            raise FaultError(f"--fault {text!r}: unknown setting {name!r} (rate, factor, period)")
        try:
            spec[names[name.strip()]] = float(raw)
        except ValueError:
            raise FaultError(f"--fault {text!r}: {name} must be a number") from None
    faults = parse_faults({system.strip(): spec})
    return next(iter(faults.items()))


def _abort(request: web.Request) -> web.Response:
    # No answer at all: the client sees the connection drop, as when a host goes away.
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)


def _strip_key_fields(response: web.Response, key_field: str) -> web.Response:
    body = response.body
    if response.status != 200 or not isinstance(body, bytes):
        return response
    data = orjson.loads(body)
    for row in data.get("value", []):
        if isinstance(row, dict):
            row.pop(key_field, None)
    return web.Response(body=orjson.dumps(data), status=200, content_type="application/json")


class FaultInjector:
    """The faults of each system, applied to the plant's data requests."""

    def __init__(self, *, seed: int | None = None, set_listener: ListenerToggle | None = None) -> None:
        self.faults: dict[str, Fault] = {}
        self.set_listener = set_listener
        self.in_flight = dict.fromkeys(SYSTEMS, 0)
        self.max_in_flight = dict.fromkeys(SYSTEMS, 0)
        self._down: set[str] = set()
        self._flappers: dict[str, asyncio.Task[None]] = {}
        self._released: dict[str, asyncio.Event] = {s: asyncio.Event() for s in SYSTEMS}
        self._rng = random.Random(seed)

    # --- state ------------------------------------------------------------------------------

    def is_down(self, system: str) -> bool:
        return system in self._down

    def describe(self) -> dict[str, Any]:
        """What ``GET /control/faults`` answers."""
        return {"faults": {s: f.to_json() for s, f in self.faults.items()}, "down": sorted(self._down)}

    async def set(self, system: str, fault: Fault) -> None:
        """Replace the fault of ``system`` (mode "none" clears it)."""
        await self._end(system)
        if fault.mode == "none":
            return
        self.faults[system] = fault
        if fault.mode == "down":
            await self._go(system, up=False)
        elif fault.mode == "flap":
            self._flappers[system] = asyncio.create_task(self._flap(system, fault.period_seconds))

    async def clear(self, systems: Iterable[str] | None = None) -> None:
        """Make ``systems`` (default: all) healthy again."""
        for system in list(systems if systems is not None else self.faults):
            await self._end(system)

    async def close(self) -> None:
        """Release every hung request and stop flapping (the plant is stopping)."""
        await self.clear()

    def reset_stats(self) -> None:
        for system in self.max_in_flight:
            self.max_in_flight[system] = self.in_flight[system]

    async def _end(self, system: str) -> None:
        self.faults.pop(system, None)
        task = self._flappers.pop(system, None)
        await stop_task(task)
        # Let hung and slow requests go, then start a fresh episode.
        self._released[system].set()
        self._released[system] = asyncio.Event()
        if system in self._down:
            await self._go(system, up=True)

    async def _go(self, system: str, *, up: bool) -> None:
        if up:
            self._down.discard(system)
        else:
            self._down.add(system)
        if self.set_listener is not None:
            # Shielded: a flap cancelled mid-toggle still leaves the listener consistent.
            await asyncio.shield(self.set_listener(system, up))

    async def _flap(self, system: str, period: float) -> None:
        while True:
            await self._go(system, up=False)
            await asyncio.sleep(period)
            await self._go(system, up=True)
            await asyncio.sleep(period)

    # --- requests ---------------------------------------------------------------------------

    async def serve(
        self, request: web.Request, system: str, answer: Callable[[], web.Response], latency_ms: float
    ) -> web.StreamResponse:
        """Answer a data request of ``system``, as sick as its fault says."""
        self.in_flight[system] += 1
        self.max_in_flight[system] = max(self.max_in_flight[system], self.in_flight[system])
        try:
            return await self._serve(request, system, answer, latency_ms)
        finally:
            self.in_flight[system] -= 1

    async def _serve(
        self, request: web.Request, system: str, answer: Callable[[], web.Response], latency_ms: float
    ) -> web.StreamResponse:
        if system in self._down:
            return _abort(request)
        # The answer reflects the plant when the request arrived; latency delays its
        # return, so a slow read racing a change sees the old state.
        response = answer()
        delay = latency_ms / 1000
        fault = self.faults.get(system)
        released = self._released[system]
        if fault is not None and fault.mode in RATED_MODES and self._rng.random() < fault.rate:
            if fault.mode == "hang":
                await released.wait()
            elif fault.mode == "slow":
                delay = max(latency_ms, MIN_SLOW_BASE_MS) * fault.factor / 1000
            elif fault.mode == "error":
                response = web.json_response(
                    {"error": {"code": "InternalServerError", "message": f"{system.upper()} fault injected"}}, status=500
                )
            elif fault.mode == "malformed" and response.status == 200:
                response = web.Response(body=MALFORMED_BODY, status=200, content_type="application/json")
            elif fault.mode == "missing_fields":
                entity_set = find_entity_set(system, request.match_info.get("entity_set", ""))
                if entity_set is not None:
                    response = _strip_key_fields(response, entity_set.key_field)
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await released.wait()  # clearing the fault (or stopping) cuts a slow answer short
            except TimeoutError:
                pass
        if system in self._down:  # went down while we waited
            return _abort(request)
        return response


# --- control API ---------------------------------------------------------------------------

FAULTS = web.AppKey("ordergraph_faults", FaultInjector)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"code": "BadRequest", "message": message}}, status=400)


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].describe())


async def _post_faults(request: web.Request) -> web.Response:
    injector = request.app[FAULTS]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _bad_request("body must be JSON")
    try:
        faults = parse_faults(body)
    except FaultError as exc:
        return _bad_request(str(exc))
    for system, fault in faults.items():  # all validated before any is applied
        await injector.set(system, fault)
    return web.json_response(injector.describe())


async def _delete_faults(request: web.Request) -> web.Response:
    injector = request.app[FAULTS]
    system = request.match_info.get("system")
    if system is not None and system not in SYSTEMS:
        return web.json_response({"error": {"code": "NotFound", "message": f"unknown system {system!r}"}}, status=404)
    await injector.clear([system] if system else None)
    return web.json_response(injector.describe())


def add_control_routes(app: web.Application, injector: FaultInjector) -> None:
    """``GET|POST|DELETE /control/faults`` and ``DELETE /control/faults/{system}``."""
    app[FAULTS] = injector
    app.router.add_get("/control/faults", _get_faults)
    app.router.add_post("/control/faults", _post_faults)
    app.router.add_delete("/control/faults", _delete_faults)
    app.router.add_delete("/control/faults/{system}", _delete_faults)
