"""The simulated plant's HTTP server: five source systems on one aiohttp app.

Serves the contract of ``sources/API.md``: ``GET /<system>/<EntitySet>`` with batch
filters, ``changedSince``, ``confirmedBefore`` and paging; ``GET /<system>/openapi.json``;
``/healthz``; and the simulator-only control API under ``/control``. Latency per system is
simulated with ``asyncio.sleep`` so benchmarks see round trips that cost something.
Faults (down, slow, hang, 500s, malformed JSON, missing fields, flapping) are injected per
system through ``/control/faults`` (``faults.py``). With ``separate_ports=True`` each system
also listens on its own port (``Simulator.system_urls``), so "down" refuses connections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import math
from typing import Any

import orjson
from aiohttp import web

from ..records import format_datetime, parse_date, parse_datetime
from .faults import FaultInjector, add_control_routes
from .odata import SERVICE_SYSTEM, ODataRoutes, ODataState
from .openapi import build_openapi
from .world import SYSTEMS, Change, EntitySet, UnknownKey, World, find_entity_set

SAP_SYSTEMS = frozenset(SERVICE_SYSTEM.values())  # the systems also served as SAP

DEFAULT_TOP = 100
MAX_TOP = 1000
MAX_VALUES = 1000
# aiohttp refuses request lines over 8 KiB by default, but 1,000 keys of up to ~20
# characters need ~21 KiB; pass these to any runner that serves ``create_app``.
SERVER_LIMITS: dict[str, int] = {"max_line_size": 64 * 1024, "max_field_size": 64 * 1024}
_PAGING_PARAMS = ("$top", "$skiptoken", "changedSince", "confirmedBefore", "openOrChangedSince")


@dataclasses.dataclass(slots=True)
class _ServerState:
    world: World
    requests: dict[str, int]
    openapi: dict[str, bytes]
    faults: FaultInjector = dataclasses.field(default_factory=FaultInjector)
    odata: ODataState = dataclasses.field(default_factory=ODataState)  # the ERP as SAP serves it


_STATE = web.AppKey("ordergraph_simulator", _ServerState)


class _BadRequest(Exception):
    """A client error, answered as 400 with the contract's error shape."""


# --- responses -----------------------------------------------------------------------------


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status)


def _bad_request(message: str) -> web.Response:
    return _error(400, "BadRequest", message)


def _not_found(message: str) -> web.Response:
    return _error(404, "NotFound", message)


def encode_skip_token(key: str) -> str:
    """The ``nextSkipToken`` of a page that ended at ``key``: the key itself (API.md), so a
    client can resume after any record it has seen, not only at page ends."""
    return key


def decode_skip_token(token: str) -> str:
    """The last key seen; ValueError when the token cannot be a key."""
    if not token or len(token) > 64 or "," in token or not token.isprintable():
        raise ValueError(f"invalid $skiptoken {token!r}")
    return token


# --- data endpoints --------------------------------------------------------------------------


def _parse_datetime_param(name: str, raw: str) -> dt.datetime:
    # A '+' in an unencoded query string arrives as a space; put it back.
    text = raw.strip().replace(" ", "+")
    try:
        value = parse_datetime(text)
    except ValueError:
        value = None
    if value is None:
        raise _BadRequest(f"{name} must be an ISO 8601 date-time, got {raw!r}")
    return value


def _parse_query(entity_set: EntitySet, query: Any) -> dict[str, Any]:
    """Validate the query string; returns the arguments of ``Table.query``."""
    filters: dict[str, set[str]] = {}
    args: dict[str, Any] = {
        "changed_since": None,
        "confirmed_before": None,
        "after": None,
        "top": None,
        "open_or_changed_since": None,
    }
    for name, raw in query.items():
        if name == "$top":
            try:
                top = int(raw)
            except ValueError:
                raise _BadRequest(f"$top must be an integer, got {raw!r}") from None
            if not 1 <= top <= MAX_TOP:
                raise _BadRequest(f"$top must be between 1 and {MAX_TOP}, got {top}")
            args["top"] = top
        elif name == "$skiptoken":
            try:
                args["after"] = decode_skip_token(raw)
            except ValueError as exc:
                raise _BadRequest(str(exc)) from None
        elif name == "changedSince":
            args["changed_since"] = _parse_datetime_param(name, raw)
        elif name == "openOrChangedSince":
            if entity_set.name != "A_SalesOrder":
                raise _BadRequest(f"openOrChangedSince is only supported on A_SalesOrder, not {entity_set.name}")
            args["open_or_changed_since"] = _parse_datetime_param(name, raw)
        elif name == "confirmedBefore":
            if entity_set.name != "A_SalesOrder":
                raise _BadRequest(f"confirmedBefore is only supported on A_SalesOrder, not {entity_set.name}")
            try:
                value = parse_date(raw.strip())
            except ValueError:
                value = None
            if value is None:
                raise _BadRequest(f"confirmedBefore must be an ISO 8601 date, got {raw!r}")
            args["confirmed_before"] = value
        elif name in entity_set.filter_fields:
            values = {v.strip() for v in raw.split(",") if v.strip()}
            if len(values) > MAX_VALUES:
                raise _BadRequest(f"at most {MAX_VALUES} values per field, got {len(values)} for {name}")
            # The same field twice is two conditions, combined with AND like all others.
            filters[name] = filters[name] & values if name in filters else values
        else:
            allowed = ", ".join((*entity_set.filter_fields, *_PAGING_PARAMS))
            raise _BadRequest(f"unknown field {name!r} for {entity_set.name}; allowed: {allowed}")
    if args["top"] is None and not filters:
        # Listings are paged by default; a look-up by field values returns every match.
        args["top"] = DEFAULT_TOP
    args["filters"] = filters
    return args


async def _read_entity_set(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    system = request.match_info["system"]
    if system not in SYSTEMS:
        return _not_found(f"unknown system {system!r}; expected one of {', '.join(SYSTEMS)}")
    state.requests[system] += 1
    # The injector answers (after the system's latency), as sick as its fault says.
    return await state.faults.serve(
        request,
        system,
        lambda: _answer(state.world, system, request.match_info["entity_set"], request.rel_url.query),
        state.world.latency_ms.get(system, 0.0),
    )


def _answer(world: World, system: str, name: str, query: Any) -> web.Response:
    entity_set = find_entity_set(system, name)
    if entity_set is None:
        return _not_found(f"unknown entity set {name!r} in {system.upper()}")
    try:
        args = _parse_query(entity_set, query)
    except _BadRequest as exc:
        return _bad_request(str(exc))
    value, count, last = world.table(entity_set.name).query(**args)
    token = encode_skip_token(last) if last is not None else None
    return _json({"value": value, "count": count, "nextSkipToken": token})


async def _openapi(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    system = request.match_info["system"]
    if system not in SYSTEMS:
        return _not_found(f"unknown system {system!r}")
    body = state.openapi.get(system)
    if body is None:
        body = state.openapi[system] = orjson.dumps(build_openapi(system))
    return web.Response(body=body, content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    return _json({"status": "ok", "clock": format_datetime(world.now())})


# --- control API -----------------------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _BadRequest("body must be JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    return data


def _hours(body: dict[str, Any]) -> float:
    hours = body.get("hours")
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours):
        raise _BadRequest('body must be {"hours": <positive number>}')
    if not 0 < hours <= 24 * 366:
        raise _BadRequest("hours must be greater than 0 and at most a year")
    return float(hours)


def _changes(changes: list[Change]) -> list[dict[str, Any]]:
    return [c.to_json() for c in changes]


async def _stats(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return _json({"requests": dict(state.requests), "maxInFlight": dict(state.faults.max_in_flight)})


async def _stats_reset(request: web.Request) -> web.Response:
    requests = request.app[_STATE].requests
    for system in requests:
        requests[system] = 0
    request.app[_STATE].faults.reset_stats()
    return _json({"requests": dict(requests)})


async def _world_summary(request: web.Request) -> web.Response:
    return _json(request.app[_STATE].world.summary())


async def _latency(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    try:
        body = await _body(request)
        if not body:
            raise _BadRequest('body must be {"<system>": <milliseconds>, ...}')
        latency = world.set_latency(body)
    except _BadRequest as exc:
        return _bad_request(str(exc))
    except ValueError as exc:
        return _bad_request(str(exc))
    return _json({"latencyMs": latency})


async def _clock_advance(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    try:
        hours = _hours(await _body(request))
    except _BadRequest as exc:
        return _bad_request(str(exc))
    changes = world.advance_clock(hours)
    return _json({"clock": format_datetime(world.now()), "changeCount": len(changes), "changes": _changes(changes)})


async def _work_center_down(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    work_center = request.match_info["work_center"]
    if world.get("A_WorkCenter", work_center) is None:
        return _not_found(f"unknown work centre {work_center!r}")
    try:
        hours = _hours(await _body(request))
    except _BadRequest as exc:
        return _bad_request(str(exc))
    changes = world.work_center_down(work_center, hours)
    return _work_center_answer(world, work_center, changes)


async def _work_center_up(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    work_center = request.match_info["work_center"]
    try:
        changes = world.work_center_up(work_center)
    except UnknownKey:
        return _not_found(f"unknown work centre {work_center!r}")
    return _work_center_answer(world, work_center, changes)


def _work_center_answer(world: World, work_center: str, changes: list[Change]) -> web.Response:
    record = world.get("A_WorkCenter", work_center)
    assert record is not None
    return _json({"workCenter": record.to_api(), "changes": _changes(changes)})


async def _order_advance(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    sales_order = request.match_info["sales_order"]
    try:
        before = world.state_of(sales_order)
        changes = world.advance_order(sales_order)
    except UnknownKey:
        return _not_found(f"unknown sales order {sales_order!r}")
    return _json(
        {
            "salesOrder": sales_order,
            "from": before,
            "to": world.state_of(sales_order),
            "changes": _changes(changes),
        }
    )


async def _order_shortfall(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    sales_order = request.match_info["sales_order"]
    try:
        body = await _body(request)
        quantity = body.get("quantity")
        item, rest = body.get("item"), body.get("rest")
        if isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
            raise _BadRequest('body must be {"quantity": <number>, "item": "<item>", "rest": "reproduce"|"cancel"}')
        if item is not None and not isinstance(item, str):
            raise _BadRequest("item must be a sales order item number, e.g. \"10\"")
        if rest is not None and not isinstance(rest, str):
            raise _BadRequest('rest must be "reproduce" or "cancel"')
        answer = world.plan_shortfall(sales_order, float(quantity), item=item, rest=rest)
    except _BadRequest as exc:
        return _bad_request(str(exc))
    except UnknownKey:
        return _not_found(f"unknown sales order {sales_order!r}")
    except ValueError as exc:
        return _bad_request(str(exc))
    return _json(answer)


def _amendment(lever: str):
    """A control route taking something back on one order (``World.reverse_goods_issue``,
    ``World.cancel_confirmation``): 404 for an unknown order, 409 when there is nothing
    to take back."""

    async def handler(request: web.Request) -> web.Response:
        world = request.app[_STATE].world
        sales_order = request.match_info["sales_order"]
        try:
            before = world.state_of(sales_order)
            changes = getattr(world, lever)(sales_order)
        except UnknownKey:
            return _not_found(f"unknown sales order {sales_order!r}")
        except ValueError as exc:
            return _error(409, "Conflict", str(exc))
        return _json(
            {"salesOrder": sales_order, "from": before, "to": world.state_of(sales_order), "changes": _changes(changes)}
        )

    return handler


async def _order_quantity(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    sales_order = request.match_info["sales_order"]
    try:
        body = await _body(request)
        item, quantity = body.get("item"), body.get("quantity")
        if not isinstance(item, str) or isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
            raise _BadRequest('body must be {"item": "<item>", "quantity": <number>}')
        changes = world.change_quantity(sales_order, item, float(quantity))
    except _BadRequest as exc:
        return _bad_request(str(exc))
    except UnknownKey:
        return _not_found(f"unknown sales order {sales_order!r}")
    except ValueError as exc:
        return _error(409, "Conflict", str(exc))
    return _json({"salesOrder": sales_order, "item": item, "quantity": quantity, "changes": _changes(changes)})


async def _item_cancel(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    sales_order, item = request.match_info["sales_order"], request.match_info["item"]
    try:
        changes = world.cancel_item(sales_order, item)
    except UnknownKey:
        return _not_found(f"unknown sales order {sales_order!r}")
    except ValueError as exc:
        return _error(409, "Conflict", str(exc))
    return _json({"salesOrder": sales_order, "item": item, "changes": _changes(changes)})


async def _order_cancel(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    sales_order = request.match_info["sales_order"]
    try:
        changes = world.cancel_order(sales_order)
    except UnknownKey:
        return _not_found(f"unknown sales order {sales_order!r}")
    except ValueError as exc:
        return _error(409, "Conflict", str(exc))
    return _json({"salesOrder": sales_order, "changes": _changes(changes)})


async def _item_amend(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    sales_order, item = request.match_info["sales_order"], request.match_info["item"]
    try:
        body = await _body(request)
        extra = body.get("extra")
        if isinstance(extra, bool) or not isinstance(extra, (int, float)):
            raise _BadRequest('body must be {"extra": <quantity>}')
        changes = world.amend_after_shipment(sales_order, item, float(extra))
    except _BadRequest as exc:
        return _bad_request(str(exc))
    except UnknownKey:
        return _not_found(f"unknown sales order {sales_order!r}")
    except ValueError as exc:
        return _error(409, "Conflict", str(exc))
    return _json({"salesOrder": sales_order, "item": item, "extra": extra, "changes": _changes(changes)})


async def _order_date(request: web.Request) -> web.Response:
    world = request.app[_STATE].world
    sales_order = request.match_info["sales_order"]
    try:
        body = await _body(request)
        raw = body.get("requested")
        try:
            requested = parse_date(raw.strip()) if isinstance(raw, str) else None
        except ValueError:
            requested = None
        if requested is None:
            raise _BadRequest('body must be {"requested": "<ISO date>"}')
        changes = world.change_date(sales_order, requested)
    except _BadRequest as exc:
        return _bad_request(str(exc))
    except ValueError as exc:
        return _error(409, "Conflict", str(exc))
    except UnknownKey:
        return _not_found(f"unknown sales order {sales_order!r}")
    order = world.get("A_SalesOrder", sales_order)
    return _json(
        {"salesOrder": sales_order, "requested": requested.isoformat(),
         "confirmed": order.confirmed_delivery_date.isoformat(), "changes": _changes(changes)}
    )


# --- wiring ----------------------------------------------------------------------------------


def create_app(world: World, latency_ms: dict[str, float] | float = 3.0) -> web.Application:
    """The aiohttp application serving ``world`` as the five source systems."""
    world.set_latency(latency_ms if isinstance(latency_ms, (int, float)) else {**world.latency_ms, **latency_ms})
    app = web.Application()
    app[_STATE] = _ServerState(world=world, requests=dict.fromkeys(SYSTEMS, 0), openapi={})
    # Control routes first: "/control/stats" would otherwise match "/{system}/{entity_set}".
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/control/stats", _stats)
    app.router.add_post("/control/stats/reset", _stats_reset)
    app.router.add_get("/control/world", _world_summary)
    app.router.add_post("/control/latency", _latency)
    app.router.add_post("/control/clock/advance", _clock_advance)
    app.router.add_post("/control/work-centers/{work_center}/down", _work_center_down)
    app.router.add_post("/control/work-centers/{work_center}/up", _work_center_up)
    app.router.add_post("/control/orders/{sales_order}/advance", _order_advance)
    app.router.add_post("/control/orders/{sales_order}/shortfall", _order_shortfall)
    app.router.add_post("/control/orders/{sales_order}/reverse-goods-issue", _amendment("reverse_goods_issue"))
    app.router.add_post("/control/orders/{sales_order}/cancel-confirmation", _amendment("cancel_confirmation"))
    app.router.add_post("/control/orders/{sales_order}/quantity", _order_quantity)
    app.router.add_post("/control/orders/{sales_order}/date", _order_date)
    app.router.add_post("/control/orders/{sales_order}/items/{item}/cancel", _item_cancel)
    app.router.add_post("/control/orders/{sales_order}/cancel", _order_cancel)
    app.router.add_post("/control/orders/{sales_order}/items/{item}/amend", _item_amend)
    add_control_routes(app, app[_STATE].faults)
    _add_odata_routes(app, app[_STATE])
    app.router.add_get("/{system}/openapi.json", _openapi)
    app.router.add_get("/{system}/{entity_set}", _read_entity_set)
    return app


def _add_odata_routes(app: web.Application, state: _ServerState, systems: frozenset[str] | None = None) -> None:
    """The systems SAP can be (ERP, MES) in SAP's OData v2 dialect (``odata.py``), under
    ``/sap/opu/odata/sap``; the answering system's latency, faults and request count apply.
    ``systems``: only these systems' services (a system on its own port)."""

    async def serve(request: web.Request, system: str, answer: Any) -> web.StreamResponse:
        state.requests[system] += 1
        return await state.faults.serve(request, system, answer, state.world.latency_ms.get(system, 0.0))

    ODataRoutes(state.world, state.odata, serve, systems).add_to(app)


def _system_app(state: _ServerState, system: str) -> web.Application:
    """The data routes of one system only, over the shared plant state."""
    app = web.Application()
    app[_STATE] = state
    app.router.add_get("/healthz", _healthz)
    if system in SAP_SYSTEMS:
        _add_odata_routes(app, state, frozenset({system}))
    app.router.add_get(f"/{{system:{system}}}/openapi.json", _openapi)
    app.router.add_get(f"/{{system:{system}}}/{{entity_set}}", _read_entity_set)
    return app


class _SystemListener:
    """One system on its own port; closing it refuses connections, as a host that is down."""

    def __init__(self, state: _ServerState, system: str, host: str, port: int) -> None:
        self.state = state
        self.system = system
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()  # opens and closes in the order asked

    async def open(self) -> None:
        async with self._lock:
            if self._runner is not None:
                return
            # Short shutdown: going down drops the requests in flight too.
            runner = web.AppRunner(
                _system_app(self.state, self.system), access_log=None, shutdown_timeout=0.1, **SERVER_LIMITS
            )
            await runner.setup()
            await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
            self.port = runner.addresses[0][1]  # the port picked on first open; kept for reopening
            self._runner = runner

    async def close(self) -> None:
        async with self._lock:
            if self._runner is not None:
                runner, self._runner = self._runner, None
                await runner.cleanup()


@dataclasses.dataclass(slots=True)
class Simulator:
    """A running simulated plant: its world, its base URL, and how to stop it."""

    world: World
    url: str
    app: web.Application
    _runner: web.AppRunner
    # Each system's own base URL: the shared port's /<system>, or its own port.
    system_urls: dict[str, str] = dataclasses.field(default_factory=dict)
    _listeners: dict[str, _SystemListener] = dataclasses.field(default_factory=dict)

    @property
    def faults(self) -> FaultInjector:
        """Fault injection (same as ``/control/faults``)."""
        return self.app[_STATE].faults

    @property
    def odata(self) -> ODataState:
        """The OData routes' settings: auth, page size, injected answers (``odata.py``)."""
        return self.app[_STATE].odata

    def sap_url(self, system: str = "erp") -> str:
        """Where ``system`` answers as SAP S/4HANA (``base_url`` of a ``sap-odata`` source)."""
        return self.system_urls.get(system, self.url).removesuffix(f"/{system}")

    async def close(self) -> None:
        """Stop serving and release the ports (hung requests are released first)."""
        await self.faults.close()
        for listener in self._listeners.values():
            await listener.close()
        await self._runner.cleanup()

    async def __aenter__(self) -> Simulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_simulator(
    host: str = "127.0.0.1",
    port: int = 8100,
    *,
    orders: int = 2000,
    customers: int = 50,
    seed: int = 42,
    latency_ms: dict[str, float] | float = 3.0,
    start: dt.datetime | None = None,
    prerender: bool = True,
    separate_ports: bool = False,
) -> Simulator:
    """Generate a world and serve it; ``port=0`` picks a free port (see ``.url``).

    ``prerender`` renders every record's JSON before serving, so the first requests of a
    benchmark are not slower than the rest. ``separate_ports`` also serves each system on
    its own port (``port + 1`` … ``port + 5`` in ERP, MES, WMS, QMS, TMS order, or free
    ports when ``port`` is 0); ``.system_urls`` has their base URLs. The shared port keeps
    serving every system and the control API.
    """

    def build() -> World:
        world = World.generate(orders, customers, seed, start)
        if prerender:
            world.prerender()
        return world

    # Generation is CPU work of about a second; keep the event loop responsive meanwhile.
    world = await asyncio.to_thread(build)
    app = create_app(world, latency_ms)
    runner = web.AppRunner(app, access_log=None, **SERVER_LIMITS)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    url = f"http://{shown}:{bound_port}"
    sim = Simulator(world=world, url=url, app=app, _runner=runner)
    sim.system_urls = {s: f"{url}/{s}" for s in SYSTEMS}
    if separate_ports:
        state = app[_STATE]
        for i, system in enumerate(SYSTEMS):
            listener = _SystemListener(state, system, host, port + 1 + i if port else 0)
            await listener.open()
            sim._listeners[system] = listener
            sim.system_urls[system] = f"http://{shown}:{listener.port}/{system}"

        async def toggle(system: str, up: bool) -> None:
            await (sim._listeners[system].open() if up else sim._listeners[system].close())

        state.faults.set_listener = toggle
    return sim


def keep_world_out_of_collections() -> None:
    """For a process that serves one generated world until it stops (``ordergraph
    simulate``, ``bench.plant``): the world's millions of long-lived objects leave the
    cyclic collector's generations (``gc.freeze()``, O(1)).

    Generation runs with the collector paused (``world.store.gc_paused``), so every object it
    made was still counted as young: the first collections once serving began walked all
    of them (1.4 s, then 3.5 s at 100,000 orders), and each later full pass walked the
    world again; a gateway reading the plant meanwhile waited. Reference counting still
    frees what dies; the world is never dropped before the process ends, so nothing is
    lost by never collecting its cycles. Not for tests, which build many worlds."""
    gc.freeze()


def run_simulator(
    host: str = "127.0.0.1",
    port: int = 8100,
    orders: int = 2000,
    seed: int = 42,
    latency_ms: dict[str, float] | float = 3.0,
    *,
    customers: int = 50,
) -> None:
    """Serve a simulated plant until interrupted, printing its URL."""

    async def serve() -> None:
        simulator = await start_simulator(
            host, port, orders=orders, customers=customers, seed=seed, latency_ms=latency_ms
        )
        keep_world_out_of_collections()
        print(f"ordergraph simulated plant at {simulator.url} ({orders} orders, seed {seed})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await simulator.close()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
