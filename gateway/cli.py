"""The ``ordergraph`` command: demo, simulate, serve, token, events, schema."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, load_config

SCHEMA_FILE = Path("schema.graphql")
SUBGRAPH_FILE = Path("subgraph.graphql")  # the Apollo Federation v2 subgraph SDL (--federation)


def _schema_sdl() -> str:
    from resolvers.schema import schema_sdl

    return schema_sdl()


def _subgraph_sdl() -> str:
    from resolvers.federation import subgraph_sdl

    return subgraph_sdl()


def cmd_schema(args: argparse.Namespace) -> int:
    federation = getattr(args, "federation", False)
    path = Path(args.file or (SUBGRAPH_FILE if federation else SCHEMA_FILE))
    sdl = _subgraph_sdl() if federation else _schema_sdl()
    if args.action == "export":
        path.write_text(sdl)
        print(f"wrote {path} ({len(sdl.splitlines())} lines)")
        return 0
    if args.action == "print":
        sys.stdout.write(sdl)
        return 0
    # check: schema.graphql, and the federation subgraph's SDL beside it (both are published)
    checks = [(path, sdl, "--federation " if federation else "")]
    if not federation and not args.file:
        checks.append((SUBGRAPH_FILE, _subgraph_sdl(), "--federation "))
    return max(_check_file(p, text, flag) for p, text, flag in checks)


def _check_file(path: Path, sdl: str, flag: str) -> int:
    """0 when ``path`` holds ``sdl``; else 1 with a diff on stderr."""
    command = f"ordergraph schema export {flag}".strip()
    if not path.exists():
        print(f"{path} is missing: run `{command}`", file=sys.stderr)
        return 1
    current = path.read_text()
    if current == sdl:
        print(f"{path} is up to date")
        return 0
    diff = difflib.unified_diff(current.splitlines(), sdl.splitlines(), str(path), "generated from code", lineterm="")
    print("\n".join(list(diff)[:80]), file=sys.stderr)
    print(f"{path} is out of date: run `{command}`", file=sys.stderr)
    return 1


def _server(app, host: str, port: int) -> Any:
    import uvicorn

    from .server import server_settings

    # the server's own limits: request heads, WebSocket messages (gateway/server.py)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", **server_settings(app.state.gateway.config, app))
    return uvicorn.Server(config)


async def _serve(app, host: str, port: int, sock: Any = None, server: Any = None) -> None:
    from .memdebug import tracemalloc_from_env

    tracemalloc_from_env(getattr(app.state, "gateway", None))  # off unless ORDERGRAPH_DEBUG_TRACEMALLOC is set (gateway/memdebug.py)
    server = server or _server(app, host, port)
    await server.serve(sockets=[sock] if sock is not None else None)


def _stop_on_signals(server: Any) -> None:
    """From now on Ctrl-C or SIGTERM asks ``server`` to stop gracefully, even before it
    serves: a stop asked for while the gateway is still starting lets the start finish,
    then shuts down cleanly (a cancelled start would leave half-open stores behind)."""

    def ask(_signum: int, _frame: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGINT, ask)
    signal.signal(signal.SIGTERM, ask)


def _serve_workers(cfg: Any, host: str, port: int, workers: int, sock: Any) -> int:
    """``workers`` gateway processes on one listening socket, sharing state through Redis.

    The parent has bound the socket (``sock``) and forks the workers (before any event loop exists);
    each worker is a full scale-out replica (its own caches, one Redis journal, bus and
    invalidation fence for all). SIGINT/SIGTERM stop them all; if one exits, the others
    are stopped too, so a supervisor (systemd, Kubernetes) sees the failure."""
    import multiprocessing
    import os
    import signal
    from multiprocessing.connection import wait

    sock.set_inheritable(True)
    ctx = multiprocessing.get_context("fork")
    base_id = cfg.scaleout.replica_id
    procs = [ctx.Process(target=_worker, args=(cfg, host, port, sock, base_id, i), name=f"ordergraph-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    print(f"  {workers} workers (pids {', '.join(str(p.pid) for p in procs)}), sharing Redis at {cfg.scaleout.redis_url}", flush=True)

    asked: list[int] = []  # the signal that asked us to stop, if one did

    def stop_all(signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        if _frame is not None:
            asked.append(signum)
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    wait([p.sentinel for p in procs])  # the first one to exit
    first = next((p for p in procs if not p.is_alive()), None)
    first_code = first.exitcode if first is not None else 0
    stop_all()
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM/-SIGINT is a clean
    # stop when we asked for it (or were asked to stop).
    if asked or first_code in (-signal.SIGTERM, -signal.SIGINT, 0):
        return 0 if asked else 1  # a worker stopped on its own: say so to the supervisor
    return abs(first_code or 1)


def listening_socket(host: str, port: int) -> Any:
    """A socket bound and listening on ``host:port``; OSError (e.g. the port is taken) is
    raised here, before anything is printed or started, so it can be one clear line."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def _check_port_free(host: str, port: int) -> None:
    """Raise OSError if ``host:port`` cannot be listened on now (the demo's plant binds it
    itself a moment later)."""
    listening_socket(host, port).close()


def auth_problem(cfg: Config) -> str | None:
    """Why the gateway would refuse every request, or None: jwt mode without any key."""
    a = cfg.auth
    if a.mode == "jwt" and not a.hs256_secret and not a.jwks_url:
        return (
            "auth.mode = jwt needs a key to check tokens: set auth.jwks_url (production) or auth.hs256_secret "
            "(e.g. ORDERGRAPH_AUTH_HS256_SECRET), or auth.mode = \"open\" for a demo without auth"
        )
    return None


def _worker(cfg: Any, host: str, port: int, sock: Any, base_id: str, index: int) -> None:
    import signal

    from .app import create_app

    signal.signal(signal.SIGINT, signal.SIG_DFL)  # uvicorn installs its own handlers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if base_id:  # replicas need distinct ids; the default (hostname-pid) already is
        cfg.scaleout.replica_id = f"{base_id}-w{index}"
    _run(_serve(create_app(cfg), host, port, sock))


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import create_app

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"ordergraph: {exc}", file=sys.stderr)
        return 2
    host = args.host or cfg.gateway.host
    port = args.port or cfg.gateway.port
    if args.persisted_only:
        cfg.limits.persisted_only = True
    workers = args.workers if args.workers is not None else cfg.gateway.workers
    if workers < 1:
        print("ordergraph: --workers must be at least 1", file=sys.stderr)
        return 2
    if workers > 1 and not cfg.scaleout.redis_url:
        print(
            "ordergraph: several workers share the journal, the event bus and cache invalidations through Redis: "
            "set [scaleout] redis_url (or ORDERGRAPH_SCALEOUT_REDIS_URL), or run one worker",
            file=sys.stderr,
        )
        return 2
    if (problem := auth_problem(cfg)) is not None:
        print(f"ordergraph: {problem}", file=sys.stderr)
        return 2
    from .telemetry import telemetry_problem, use_json_logs  # [telemetry]: traces, JSON logs

    if (problem := telemetry_problem(cfg.telemetry)) is not None:
        print(f"ordergraph: {problem}", file=sys.stderr)
        return 2
    if cfg.telemetry.json_logs:
        use_json_logs()
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        print(f"ordergraph: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    _print_serve_banner(cfg, host, port)
    if workers > 1:
        return _serve_workers(cfg, host, port, workers, sock)
    with _quiet_interrupt():
        _run(_serve(create_app(cfg), host, port, sock))
    return 0


def _print_serve_banner(cfg: Config, host: str, port: int) -> None:
    print(f"ordergraph gateway on http://{host}:{port}/graphql (auth: {cfg.auth.mode})", flush=True)
    for name, src in cfg.sources.items():
        print(f"  {name.upper()}: {src.base_url}")


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when installed (uvicorn[standard] brings it): asyncio's own loop spends
    a large share of a request in Python-level task and callback bookkeeping (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def cmd_bench(argv: list[str]) -> int:
    """``ordergraph bench [--quick] ...``: the harness in ``bench/`` (a source checkout),
    run as ``python -m bench`` in a process of its own: the gateway does not import the
    harness, which measures it from outside."""
    checkout = Path(__file__).resolve().parent.parent  # bench/ sits beside gateway/ in a checkout
    if not (checkout / "bench" / "run.py").exists():
        print("ordergraph bench needs a source checkout (bench/ is not installed): `python -m bench --help`", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(checkout), env.get("PYTHONPATH", "")) if p)
    harness = subprocess.Popen([sys.executable, "-m", "bench", *argv], env=env)
    try:
        return harness.wait()
    except KeyboardInterrupt:
        # The harness got the same Ctrl-C (one process group) and stops its servers itself.
        return harness.wait()


def _plant_events(sim, gateway_url: str | None, secrets: dict[str, str], args: argparse.Namespace) -> list:
    """Start the plant's webhooks (when there is a gateway) and its clock at --speed; with
    ``--mqtt``, its shop floor (work-centre state) goes over Sparkplug B instead."""
    from sources.simulator.emitter import EventEmitter, PlantDriver

    mqtt_url = getattr(args, "mqtt", None)
    started: list[Any] = []
    if gateway_url:
        emitter = EventEmitter(
            sim.world,
            gateway_url,
            secrets,
            duplicate_rate=args.duplicate_rate,
            reorder_rate=args.reorder_rate,
            notification_rate=args.notification_rate,
            exclude_entity_sets=frozenset({"A_WorkCenter"}) if mqtt_url else frozenset(),
            muted=frozenset(getattr(args, "muted", ()) or ()),
            drop_rate=getattr(args, "drop_rate", 0.0),
        )
        emitter.start()
        started.append(emitter)
    if mqtt_url:
        from sources.simulator.sparkplug_edge import SparkplugEdge

        edge = SparkplugEdge(sim.world, mqtt_url, group=args.mqtt_group)
        edge.start()
        started.append(edge)
    # The plant clock runs at --speed by itself (0: frozen; only the control API moves it),
    # and /control/world reports that speed; the driver takes what falls due each second.
    sim.world.set_speed(args.speed)
    if args.speed > 0:
        driver = PlantDriver(
            sim.world,
            speed=args.speed,
            breakdown_rate=args.breakdown_rate,
            intake_per_day=args.intake_per_day,
            reversal_rate=args.reversal_rate,
            advance=False,
        )
        driver.start()
        started.append(driver)
    return started


def _clock_line(world: Any, speed: float) -> str:
    """The banner's line on plant time: it is not real time."""
    from sources.simulator.world.clock import iso_utc

    if speed > 0:
        how = f"runs {speed:g}x real time (a plant day every {86400 / speed / 60:.1f} real minutes)"
    else:
        how = "is frozen (--speed 0): only POST /control/clock/advance moves it"
    return f"plant time (not real time) {iso_utc(world.now())}: the plant clock {how}"


def _fault(text: str) -> tuple[str, Any]:
    """argparse type of ``--fault``: SYSTEM=MODE[,rate=R][,factor=F][,period=S]."""
    from sources.simulator.faults import FaultError, parse_fault_option

    try:
        return parse_fault_option(text)
    except FaultError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_fault_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="SYSTEM=MODE",
        help="make a source system sick: MODE is down, slow, hang, error, malformed, missing_fields or flap, "
        "with optional ,rate=R ,factor=F ,period=S (e.g. mes=slow, tms=error,rate=0.5, wms=flap,period=2); "
        "repeatable; change it live with POST/DELETE /control/faults",
    )


async def _apply_faults(sim, faults: list[tuple[str, Any]]) -> None:
    for system, fault in faults:
        await sim.faults.set(system, fault)
        print(f"  fault injected: {system.upper()} {fault.mode}")


def _add_plant_event_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=float, default=600.0, help="plant clock speed: plant seconds per real second (default 600; 0 = only the control API moves it)")
    p.add_argument("--breakdown-rate", type=float, default=0.05, help="chance per second that a work centre breaks down (default 0.05)")
    p.add_argument("--duplicate-rate", type=float, default=0.05, help="share of events sent twice (default 0.05)")
    p.add_argument("--reorder-rate", type=float, default=0.05, help="share of events sent out of order (default 0.05)")
    p.add_argument("--notification-rate", type=float, default=0.3, help="share of notification-only events (default 0.3)")
    p.add_argument("--drop-rate", type=float, default=0.0, help="share of webhooks lost for good (default 0)")
    p.add_argument(
        "--reversal-rate",
        type=float,
        default=0.02,
        help="chance per second of an order change: a goods issue reversed, a production confirmation cancelled, a quantity or date changed, an item cancelled, more ordered after shipment (default 0.02)",
    )
    p.add_argument(
        "--intake-per-day",
        type=float,
        default=None,
        help="new orders per plant day (default: as many as the plant delivers, from its open orders and lead time; 0 = none)",
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from sources.simulator.app import start_simulator

    from .config import DEV_SECRETS

    ports = [args.port] + ([args.port + 1 + i for i in range(5)] if args.separate_ports else [])
    for port in ports:
        try:
            _check_port_free(args.host, port)
        except OSError as exc:
            print(f"ordergraph simulate: cannot listen on {args.host}:{port}: {exc.strerror or exc}", file=sys.stderr)
            return 1

    async def main() -> None:
        print(f"generating the plant: {args.orders} orders, seed {args.seed} ...", flush=True)
        sim = await start_simulator(
            args.host,
            args.port,
            orders=args.orders,
            seed=args.seed,
            latency_ms=args.latency_ms,
            separate_ports=args.separate_ports,
        )
        print(f"simulated plant on {sim.url} (ERP /erp, MES /mes, WMS /wms, QMS /qms, TMS /tms)")
        if args.separate_ports:
            print("  each system on its own port: " + ", ".join(f"{s.upper()} {u}" for s, u in sim.system_urls.items()))
        await _apply_faults(sim, args.fault)
        print(f"  OpenAPI: {sim.url}/erp/openapi.json (and per system); control API: {sim.url}/control/world")
        running = _plant_events(sim, args.gateway_url, DEV_SECRETS, args)
        print(f"  {_clock_line(sim.world, args.speed)}")
        if args.gateway_url:
            print(f"  sending signed CloudEvents to {args.gateway_url}/events (development secrets)")
        try:
            await asyncio.Event().wait()
        finally:
            for r in running:
                await r.close()
            await sim.close()

    with _quiet_interrupt():
        asyncio.run(main())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .app import create_app
    from .graphiql import assets_present

    sap_systems = [x.strip() for x in (args.sap_systems or "").split(",") if x.strip()]
    if unknown := [x for x in sap_systems if x not in ("erp", "mes", "wms", "qms")]:
        print(f"ordergraph demo: --sap-systems takes erp, mes, wms, qms (not {', '.join(unknown)})", file=sys.stderr)
        return 2
    if "erp" in sap_systems:
        args.erp = "sap-odata"
    args.sap_systems = [x for x in sap_systems if x != "erp"]
    if args.erp == "sap-odata" and args.poll_seconds < 0.5:
        print("ordergraph demo: --poll-seconds must be at least 0.5", file=sys.stderr)
        return 2
    if not 0.0 <= args.drop_rate <= 1.0:
        print("ordergraph demo: --drop-rate is a share between 0 and 1", file=sys.stderr)
        return 2
    # Every port first, so a taken one is one line before anything starts or prints.
    plant_ports = [args.plant_port] + ([args.plant_port + 1 + i for i in range(5)] if args.fault else [])
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as exc:
        print(f"ordergraph demo: cannot listen on {args.host}:{args.port} (--port): {exc.strerror or exc}", file=sys.stderr)
        return 1
    for plant_port in plant_ports:
        try:
            _check_port_free("127.0.0.1", plant_port)
        except OSError as exc:
            sock.close()
            print(
                f"ordergraph demo: the simulated plant cannot listen on 127.0.0.1:{plant_port} (--plant-port): "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1

    if args.mqtt and (problem := _broker_problem(args.mqtt, args.mqtt_group)):
        sock.close()
        print(f"ordergraph demo: --mqtt {args.mqtt}: {problem}", file=sys.stderr)
        return 1

    if not assets_present() and not args.no_assets:
        from .assets import AssetsError, fetch_assets

        print("ordergraph demo: GraphiQL's assets are missing; fetching them once (ordergraph assets) ...", flush=True)
        try:
            fetch_assets()
        except AssetsError as exc:
            print(f"  could not fetch them ({exc}); GraphiQL will load them from a CDN instead.", flush=True)

    async def main() -> None:
        print(f"ordergraph demo: generating the simulated plant ({args.orders} orders, seed {args.seed}) ...", flush=True)
        sim = await _plant_or_exit(
            "127.0.0.1",
            args.plant_port,
            orders=args.orders,
            seed=args.seed,
            latency_ms=args.latency_ms,
            # With faults, each system on its own port: "down" then refuses connections.
            separate_ports=bool(args.fault),
        )
        cfg = Config.for_plant(sim.url, host=args.host, port=args.port)
        for system, url in sim.system_urls.items():
            cfg.sources[system].base_url = url
        _demo_erp(cfg, sim, args)
        _demo_sap_systems(cfg, sim, args)
        await _apply_faults(sim, args.fault)
        # Without --journal the journal is a temporary file, removed on exit with its
        # cursor key and WAL files (a demo writes tens of MB in minutes).
        scratch = None if args.journal else Path(tempfile.mkdtemp(prefix="ordergraph-demo-"))
        cfg.events.journal_path = args.journal or str(scratch / "journal.sqlite")
        _demo_auth(cfg, args)
        if args.mqtt:
            cfg.mqtt.url, cfg.mqtt.group = args.mqtt, args.mqtt_group
        mailbox = await _demo_notices(cfg, sim.world, args)
        # A demo runs for hours of plant days: orders delivered a plant week ago leave the
        # default listing (includeCompleted: true, or order(id:), still reads them).
        cfg.gateway.list_completed_days = 7.0
        # Predictions and exceptions run on the plant's (accelerated) clock; cached answers
        # may lag that clock by at most one plant minute (source changes never lag).
        if args.speed > 0:
            cfg.cache.response_ttl_seconds = min(cfg.cache.response_ttl_seconds, 60.0 / args.speed)
        app = create_app(cfg, domain_clock=sim.world.now, mailbox=mailbox)
        server = _server(app, args.host, args.port)
        _stop_on_signals(server)
        url = f"http://{args.host}:{args.port}/graphql"
        print(f"  plant (ERP, MES, WMS, QMS, TMS): {sim.url}")
        if args.erp == "sap-odata":
            print(f"  ERP as SAP S/4HANA (OData v2): {sim.sap_url()}/sap/opu/odata/sap/API_SALES_ORDER_SRV, "
                  f"polled every {args.poll_seconds:g}s (no ERP webhooks)")
        for system in args.sap_systems:
            what = {"mes": "production orders (work centres over REST)", "wms": "outbound deliveries (components over REST)",
                    "qms": "inspection lots"}[system]
            print(f"  {system.upper()} as SAP S/4HANA (OData v2): {what} from {sim.sap_url(system)}/sap/opu/odata/sap")
        print(f"  GraphiQL: {url}")
        _print_demo_tokens(cfg, sim.world, url)
        kept = "kept" if args.journal else "removed on exit; --journal FILE keeps one"
        print(f"  journal: {cfg.events.journal_path} ({kept})")
        if mailbox is not None:
            print(f"  proactive notices: every customer's email goes to a local SMTP server on 127.0.0.1:{mailbox.port};")
            print(f"    {url.rsplit('/', 1)[0]}/notices lists the notices decided and the mail received (integrator token)")
        running = _plant_events(sim, url.rsplit("/", 1)[0], cfg.events.secrets, args)
        print(f"  {_clock_line(sim.world, args.speed)};")
        print("  dates and times on every page are the plant's, not your wall clock's.")
        intake = next((r.intake_per_day for r in running if hasattr(r, "intake_per_day")), 0.0)
        if intake:
            print(f"  new orders arrive at about {intake:.0f} per plant day (--intake-per-day);")
        if args.speed > 0 and args.reversal_rate > 0:
            print("  now and then an order changes: a goods issue reversed, a confirmation cancelled, a quantity or date")
            print("  changed, an item cancelled, more ordered after shipment (--reversal-rate);")
        print(f"  the plant sends signed events to {url.rsplit('/', 1)[0]}/events;")
        print("  in GraphiQL, subscribe to orderChanges to watch orders move, or exceptionsChanged to watch")
        print("  machines break, lots go on hold, parts run short and trucks run late.")
        if args.mqtt:
            print(f"  shop floor over MQTT: the plant publishes Sparkplug B (spBv1.0/{args.mqtt_group}/...) to")
            print(f"  {args.mqtt}; the gateway consumes it. Watch it: mosquitto_sub -h <broker> -t 'spBv1.0/{args.mqtt_group}/#' -v")
        print("  Ctrl-C stops.", flush=True)
        try:
            await _serve(app, args.host, args.port, sock, server)
        finally:
            try:
                for r in running:
                    await r.close()
                await sim.close()
                if mailbox is not None:
                    await mailbox.close()
            finally:  # whatever stopping the parts raised, the scratch journal goes
                if scratch is not None:
                    _remove_scratch(scratch)

    # SIGTERM (a service manager's stop) ends the demo like Ctrl-C, so the temporary
    # journal is removed either way.
    signal.signal(signal.SIGTERM, _terminate)
    with _quiet_interrupt():
        asyncio.run(main())
    return 0


def _remove_scratch(path: Path, seconds: float = 5.0) -> None:
    """Remove the demo's scratch directory. A Ctrl-C during start-up can leave the
    journal's opening thread still creating its files there, so try again until it is
    gone (bounded): the directory never outlives the demo."""
    import shutil
    import time

    deadline = time.monotonic() + seconds
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _broker_problem(url: str, group: str) -> str | None:
    """Why the demo cannot use the MQTT broker at ``url``, or None."""
    import socket

    from .config import ConfigError, MqttConfig, check_mqtt
    from .mqtt import broker_address

    mq = MqttConfig(url=url, group=group)
    try:
        check_mqtt(mq)
    except ConfigError as exc:
        return str(exc)
    a = broker_address(mq)
    try:
        socket.create_connection((a.host, a.port), timeout=3).close()
    except OSError as exc:
        return f"no MQTT broker answers on {a.host}:{a.port} ({exc.strerror or exc}); start one, e.g. `mosquitto -p {a.port}`"
    return None


async def _demo_notices(cfg: Config, world: Any, args: argparse.Namespace) -> Any:
    """The demo's proactive notices: a local SMTP sink, every simulated customer's email
    address registered, and a short debounce window so notices flow within minutes."""
    import time

    from .outbox import Outbox
    from .smtp_sink import SmtpSink

    if args.no_notices:
        cfg.notices.enabled = False
        return None
    try:
        sink = await SmtpSink("127.0.0.1", args.smtp_port).start()
    except OSError as exc:
        print(f"ordergraph demo: the local SMTP server cannot listen on 127.0.0.1:{args.smtp_port} (--smtp-port): "
              f"{exc.strerror or exc}", file=sys.stderr)  # fmt: skip
        raise SystemExit(1) from None
    n = cfg.notices
    n.smtp_host, n.smtp_port = "127.0.0.1", sink.port
    n.debounce_seconds = args.notice_window
    n.critical_unacknowledged_minutes = args.critical_minutes
    n.allow_http_webhooks = True
    n.backoff_seconds = 1.0
    n.max_backoff_seconds = 30.0
    n.email_from = "Plant customer service <service@plant.example>"
    n.internal_emails = ["planning@plant.example"]
    n.portal_url = f"http://{args.host}:{args.port}/portal"
    n.outbox_path = str(Path(cfg.events.journal_path).with_name("notices.sqlite"))
    outbox = await Outbox.open(n.outbox_path)
    try:
        known = {e.customer for e in await outbox.endpoints(None)}
        for customer in world.tables["A_Customer"].records():
            if customer.customer in known:
                continue
            slug = "".join(c for c in customer.customer_name.lower().replace(" ", "-") if c.isalnum() or c == "-")
            await outbox.add_endpoint(
                customer.customer, "email", f"orders@{slug or customer.customer}.example", created_by="demo", now=time.time()
            )
    finally:
        await outbox.close()
    return sink


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


async def _plant_or_exit(*args: Any, **kwargs: Any) -> Any:
    """``start_simulator``; a port taken meanwhile is one line and exit status 1."""
    from sources.simulator.app import start_simulator

    try:
        return await start_simulator(*args, **kwargs)
    except OSError as exc:
        print(f"ordergraph demo: the simulated plant cannot listen: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _demo_erp(cfg: Config, sim: Any, args: argparse.Namespace) -> None:
    """``--erp sap-odata``: the ERP read as SAP S/4HANA (OData v2) and, as for an ERP that
    sends no webhooks, polled every ``--poll-seconds`` instead of pushing."""
    if args.erp != "sap-odata":
        return
    erp = cfg.sources["erp"]
    erp.profile = "sap-odata"
    erp.base_url = sim.sap_url()
    erp.pushes = False
    erp.poll_seconds = args.poll_seconds
    args.muted = {"erp"}


def _demo_sap_systems(cfg: Config, sim: Any, args: argparse.Namespace) -> None:
    """``--sap-systems mes,wms,qms``: those systems' SAP records read over OData from the
    plant's SAP dialect (gateway/connect.py); the rest of the MES and WMS over REST. They
    keep pushing events."""
    for system in args.sap_systems:
        source = cfg.sources[system]
        if system in ("mes", "wms"):
            source.rest_url = source.base_url
        source.profile = "sap-odata"
        source.base_url = sim.sap_url(system)


def _demo_auth(cfg: Config, args: argparse.Namespace) -> None:
    """The demo runs with auth on (development HS256 secret) unless --open."""
    from .auth import DEV_SECRET

    cfg.auth.mode = "open" if args.open else "jwt"
    cfg.auth.hs256_secret = DEV_SECRET
    cfg.limits.persisted_only = args.persisted_only


def _print_demo_tokens(cfg: Config, world: Any, url: str) -> None:
    """Ready tokens for one customer and one internal role, and how to use them."""
    from .auth import mint_token

    a = cfg.auth
    first = world.sales_orders[0]
    customer = world.get("A_SalesOrder", first).sold_to_party
    ttl = 12 * 3600
    customer_token = mint_token(a.hs256_secret, role="customer", customer=customer, ttl_seconds=ttl, issuer=a.issuer, audience=a.audience)
    internal_token = mint_token(a.hs256_secret, role="integrator", ttl_seconds=ttl, issuer=a.issuer, audience=a.audience)
    if a.mode == "open":
        print("  AUTH IS OFF (--open): requests without a token act as an integrator; tokens still work.")
    else:
        print("  auth is on: send `Authorization: Bearer <token>` (GraphiQL: paste it in the Token field)")
    print(f"  integrator token (all orders, introspection, GraphiQL; valid 12 h):\n    {internal_token}")
    print(f"  customer token ({customer}'s orders only, customer-safe fields; the MyOrders tab):\n    {customer_token}")
    print(f"  GraphiQL as the integrator: {url}#token={internal_token}")
    base = url.rsplit("/", 1)[0]
    print(f"  customer portal (sign in with the customer token): {base}/portal")
    print(f"  exceptions board (sign in with the integrator token): {base}/board")
    print("  more tokens: ordergraph token --role customer|service|planner|integrator [--customer ID] [--ttl S]")
    ids = ", ".join(world.customers()[:5])
    print(f"    customer ids: {ids}, … (all: ordergraph customers --erp-url {cfg.sources['erp'].base_url})")
    print("  first query to try, as the customer:")
    print(f"    TOKEN={customer_token}")
    print(f"    curl -s {url} -H 'content-type: application/json' -H \"Authorization: Bearer $TOKEN\" \\")
    print(f"      -d '{{\"query\": \"{{ order(id: \\\"{first}\\\") {{ id stage deliveryRisk predictedDeliveryDate }} }}\"}}'")


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a development HS256 token with the configured (or the demo's) secret."""
    from .auth import DEV_SECRET, mint_token

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"ordergraph: {exc}", file=sys.stderr)
        return 2
    secret = args.secret or cfg.auth.hs256_secret
    if not secret:
        secret = DEV_SECRET
        print("ordergraph token: no auth.hs256_secret configured; using the demo's development secret", file=sys.stderr)
    if args.role == "customer" and not args.customer:
        print("ordergraph token: --role customer needs --customer ID", file=sys.stderr)
        return 2
    token = mint_token(
        secret,
        role=args.role,
        customer=args.customer if args.role == "customer" else None,
        subject=args.subject,
        ttl_seconds=args.ttl,
        issuer=cfg.auth.issuer,
        audience=cfg.auth.audience,
    )
    if args.role == "customer" and (doubt := _customer_doubt(cfg, args.customer)) is not None:
        print(f"ordergraph token: warning: {doubt}; the token will see no orders", file=sys.stderr)
    print(token)
    return 0


def _customer_doubt(cfg: Config, customer: str) -> str | None:
    """Why ``customer`` is probably not a customer: its shape, else ERP's answer. None when
    it is one, or when ERP cannot be asked (a token can be minted offline)."""
    from sources.keys import KeyFormats

    if (problem := KeyFormats(cfg.events.key_formats).problem("Customer", customer)) is not None:
        return problem
    erp = cfg.sources.get("erp")
    if erp is None:
        return None

    async def ask() -> bool | None:
        import aiohttp

        from sources.client import SourceClient, SourceError
        from sources.erp import ErpConnector

        async with aiohttp.ClientSession() as session:
            connector = ErpConnector(SourceClient("erp", erp.base_url, session, timeout_seconds=3.0))
            if erp.profile == "sap-odata":  # the ERP read as SAP S/4HANA (gateway/connect.py)
                from sources.sap_erp import SapErpConnector

                from .connect import endpoint_settings

                odata = endpoint_settings(erp)
                connector = SapErpConnector(connector.client, auth=odata["auth"], sap_client=odata["sap_client"])
            try:
                return customer in await connector.customers([customer])
            except SourceError:
                return None

    if asyncio.run(ask()) is False:
        return f"ERP at {erp.base_url} knows no customer {customer!r}"
    return None


def cmd_customers(args: argparse.Namespace) -> int:
    """``ordergraph customers``: the ERP's customer ids (for ``token --role customer``)."""
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"ordergraph customers: {exc}", file=sys.stderr)
        return 2
    base_url = args.erp_url or cfg.sources["erp"].base_url

    async def read() -> list[Any]:
        import aiohttp

        from sources.client import SourceClient
        from sources.erp import ErpConnector

        async with aiohttp.ClientSession() as session:
            connector = ErpConnector(SourceClient("erp", base_url, session, timeout_seconds=5.0))
            return await connector.list_customers()

    from sources.client import SourceError

    try:
        customers = asyncio.run(read())
    except (SourceError, OSError) as exc:
        print(f"ordergraph customers: cannot read customers from ERP at {base_url}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json

        for c in customers:
            print(json.dumps({"id": c.customer, "name": c.customer_name, "country": c.country,
                              "commercialPriority": c.commercial_priority}))
        return 0
    print(f"{'ID':10}  {'PRIORITY':9}  {'COUNTRY':7}  NAME")
    for c in customers:
        print(f"{c.customer:10}  {c.commercial_priority or '':9}  {c.country or '':7}  {c.customer_name or ''}")
    print(f"{len(customers)} customers at {base_url}. A token for one: ordergraph token --role customer --customer ID")
    return 0


def _journal_for_cli(args: argparse.Namespace) -> tuple[str, str, str]:
    """Which journal ``ordergraph events`` works on: ``--journal FILE``, else the configured
    one (``[scaleout] redis_url`` → Redis, else ``[events] journal_path``), as (kind, where,
    key prefix). Raises ConfigError with a one-line reason; never names a file that is not
    there (opening it would create an empty journal)."""
    if args.journal:
        if not Path(args.journal).is_file():
            raise ConfigError(f"no journal file at {args.journal}")
        return "sqlite", args.journal, ""
    cfg = load_config(args.config)
    if cfg.scaleout.redis_url:
        return "redis", cfg.scaleout.redis_url, cfg.scaleout.key_prefix
    if not Path(cfg.events.journal_path).is_file():
        raise ConfigError(
            f"no journal file at {cfg.events.journal_path} ([events] journal_path): run this where the gateway "
            "runs, or name the file with --journal"
        )
    return "sqlite", cfg.events.journal_path, ""


async def _open_journal_for_cli(kind: str, where: str, prefix: str) -> Any:
    from .sqlite_journal import SQLiteJournal

    if kind == "sqlite":
        return await SQLiteJournal.open(where)
    from redis.exceptions import RedisError

    from .redis_journal import RedisJournal

    # The CLI reads and hands events back; it joins no processing and publishes nothing.
    logging.getLogger("ordergraph.journal").setLevel(logging.ERROR)
    try:
        return await RedisJournal.open(where, prefix=prefix, replica_id="ordergraph-cli", publish=False)
    except (RedisError, OSError) as exc:
        raise ConfigError(f"cannot reach the journal on Redis at {where}: {exc}") from exc


def cmd_events(args: argparse.Namespace) -> int:
    """``ordergraph events parked|replay``: the dead letters of a journal."""
    import json
    import sqlite3

    async def main() -> int:
        journal = await _open_journal_for_cli(*_journal_for_cli(args))
        try:
            if args.action == "parked":
                return await _events_parked(journal, args, json)
            return await _events_replay(journal, args)
        finally:
            await journal.close()

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        print(f"ordergraph events: {exc}", file=sys.stderr)
        return 2
    except (sqlite3.Error, RuntimeError) as exc:
        print(f"ordergraph events: cannot use the journal: {exc}", file=sys.stderr)
        return 2


def _short(text: str | None, width: int) -> str:
    text = "" if text is None else text.replace("\n", " ")
    return text if len(text) <= width else f"{text[: width - 1]}…"


async def _events_parked(journal: Any, args: argparse.Namespace, json: Any) -> int:
    parked = await journal.parked(limit=args.limit)
    total = await journal.parked_count()
    if args.json:
        for p in parked:
            e = p.event
            print(
                json.dumps(
                    {
                        "seq": e.seq, "eventId": e.event_id, "source": e.source, "type": e.type,
                        "subject": e.subject, "occurredAt": e.occurred_at.isoformat(),
                        "receivedAt": e.received_at.isoformat(), "parkedAt": p.parked_at.isoformat(),
                        "attempts": p.attempts, "reason": p.reason,
                    }  # fmt: skip
                )
            )
        return 0
    if not parked:
        print("no parked events")
        return 0
    print(f"{'SEQ':>8}  {'PARKED AT (UTC)':19}  {'SOURCE':6}  {'TYPE':34}  {'KEY':14}  {'TRIES':>5}  REASON")
    for p in parked:
        e = p.event
        kind = e.type.rsplit(".", 3)[-3] + "." + e.type.rsplit(".", 3)[-2] if e.type.count(".") >= 3 else e.type
        print(
            f"{e.seq:>8}  {p.parked_at:%Y-%m-%d %H:%M:%S}  {e.source:6}  {_short(kind, 34):34}  "
            f"{_short(e.subject, 14):14}  {p.attempts:>5}  {_short(p.reason, 200)}"
        )
    more = f" (the first {len(parked)} shown; --limit N for more)" if total > len(parked) else ""
    print(f"{total} parked event{'s' if total != 1 else ''}{more}.")
    print("Once the cause is fixed: ordergraph events replay SEQ [SEQ ...] | --all")
    return 0


async def _events_replay(journal: Any, args: argparse.Namespace) -> int:
    if args.all == bool(args.seqs):
        print("ordergraph events replay: give SEQ numbers or --all (not both)", file=sys.stderr)
        return 2
    released = await journal.unpark(None if args.all else args.seqs)
    missing = [] if args.all else [s for s in args.seqs if s not in released]
    for seq in missing:
        print(f"seq {seq} is not parked (see `ordergraph events parked`)", file=sys.stderr)
    if not released:
        print("nothing to replay")
        return 1 if missing else 0
    print(f"handed {len(released)} event{'s' if len(released) != 1 else ''} back to the event processor", flush=True)
    # The gateway's processor takes them within a few seconds; report what became of them.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.wait
    waiting = set(released)
    applied: list[int] = []
    parked_again: dict[int, str] = {}
    while waiting and loop.time() < deadline:
        await asyncio.sleep(0.5)
        again = {p.event.seq: p.reason for p in await journal.parked(limit=100_000) if p.event.seq in waiting}
        for seq in list(waiting):
            if seq in again:
                parked_again[seq] = again[seq]
                waiting.discard(seq)
            elif (event := await journal.get(seq)) is None or event.processed:
                applied.append(seq)
                waiting.discard(seq)
    if applied:
        print(f"applied: {len(applied)}" + (f" ({', '.join(map(str, sorted(applied)[:20]))})" if len(applied) <= 20 else ""))
    for seq, reason in sorted(parked_again.items()):
        print(f"seq {seq} parked again: {reason}")
    if waiting:
        print(
            f"not processed within {args.wait:g} s: {len(waiting)} (a running gateway takes them within seconds; "
            "a stopped one when it starts)"
        )
    return 1 if parked_again or missing else 0


class _quiet_interrupt:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is KeyboardInterrupt


def cmd_notices(args: argparse.Namespace) -> int:
    """``ordergraph notices dead|replay``: notice deliveries that failed every attempt."""
    import datetime as dt
    import json
    import sqlite3
    import time

    from .notices import outbox_path
    from .outbox import Outbox

    redis_url = prefix = ""
    try:
        if args.outbox:
            path = args.outbox
        else:
            cfg = load_config(args.config)
            path = outbox_path(cfg.notices.outbox_path, cfg.events.journal_path)
            redis_url, prefix = cfg.scaleout.redis_url, f"{cfg.scaleout.key_prefix}notices:"
        if not redis_url and (path == ":memory:" or not Path(path).is_file()):
            raise ConfigError(f"no notices outbox at {path}: run this where the gateway runs, or name it with --outbox")
    except ConfigError as exc:
        print(f"ordergraph notices: {exc}", file=sys.stderr)
        return 2

    async def open_outbox() -> Any:
        if not redis_url:
            return await Outbox.open(path)
        from redis.exceptions import RedisError

        from .redis_outbox import RedisOutbox

        try:
            return await RedisOutbox.open(redis_url, prefix=prefix)
        except (RedisError, OSError) as exc:
            raise ConfigError(f"cannot reach the notices outbox on Redis at {redis_url}: {exc}") from exc

    async def main() -> int:
        outbox = await open_outbox()
        try:
            if args.action == "dead":
                dead = await outbox.dead(limit=args.limit)
                for d, n in dead:
                    if args.json:
                        print(json.dumps({"delivery": d.id, "notice": n.id, "customer": n.customer, "order": n.subject,
                                          "kinds": n.kinds, "channel": d.channel, "target": d.target,
                                          "attempts": d.attempts, "lastError": d.last_error}))  # fmt: skip
                    else:
                        when = dt.datetime.fromtimestamp(n.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
                        print(f"{d.id:>6}  {when}  {n.subject:<12} {','.join(n.kinds):<28} {d.channel:<7} "
                              f"{_short(d.target, 40):<40} {d.attempts} tries: {_short(d.last_error, 60)}")  # fmt: skip
                if not dead and not args.json:
                    print("no dead notice deliveries")
                return 0
            if not args.ids and not args.all:
                print("ordergraph notices replay: name delivery ids (from `ordergraph notices dead`) or --all", file=sys.stderr)
                return 2
            count = await outbox.replay(None if args.all else args.ids, time.time())
            print(f"{count} deliveries handed back; the gateway sends them within a second")
            return 0
        finally:
            await outbox.close()

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        print(f"ordergraph notices: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"ordergraph notices: cannot use the outbox: {exc}", file=sys.stderr)
        return 2


def cmd_assets(args: argparse.Namespace) -> int:
    from .assets import AssetsError, fetch_assets

    print("fetching GraphiQL's browser assets from the npm registry (served by the gateway, no CDN):")
    try:
        files = fetch_assets()
    except AssetsError as exc:
        print(f"ordergraph assets: {exc}", file=sys.stderr)
        return 1
    print(f"done: {len(files)} files in {files[0].parent}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ordergraph",
        description="ordergraph: one live GraphQL view of every customer order across ERP, MES, WMS, QMS and TMS.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a simulated plant and the gateway together, with GraphiQL")
    demo.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    demo.add_argument("--host", default="127.0.0.1", help="gateway address (default 127.0.0.1)")
    demo.add_argument("--plant-port", type=int, default=8100, help="simulated plant port (default 8100)")
    demo.add_argument("--orders", type=int, default=2000, help="sales orders in the plant (default 2000)")
    demo.add_argument("--seed", type=int, default=42, help="world seed (default 42)")
    demo.add_argument("--latency-ms", type=float, default=3.0, help="per-call latency of each source (default 3 ms)")
    demo.add_argument("--no-assets", action="store_true", help="do not fetch GraphiQL's assets when missing")
    demo.add_argument("--open", action="store_true", help="no auth: requests without a token act as an integrator (demo only)")
    demo.add_argument("--persisted-only", action="store_true", help="accept only safelisted (persisted) operations")
    demo.add_argument("--journal", help="event journal file (default: a fresh temporary file)")
    demo.add_argument(
        "--mqtt",
        nargs="?",
        const="mqtt://127.0.0.1:1883",
        metavar="URL",
        help="the plant's work centres report over MQTT Sparkplug B to this broker (default mqtt://127.0.0.1:1883) "
        "and the gateway consumes it, instead of signed events",
    )
    demo.add_argument("--mqtt-group", default="Plant1000", help="Sparkplug group id of the demo plant (default Plant1000)")
    demo.add_argument("--no-notices", action="store_true", help="no proactive notices (and no local SMTP server)")
    demo.add_argument("--smtp-port", type=int, default=0, help="port of the demo's local SMTP server (default: any free)")
    demo.add_argument(
        "--notice-window", type=float, default=60.0, help="notices: one per customer and order per this many seconds (default 60)"
    )
    demo.add_argument(
        "--critical-minutes", type=float, default=2.0, help="notices: tell planning of a CRITICAL exception unacknowledged this long (default 2)"
    )
    demo.add_argument(
        "--erp", choices=("rest", "sap-odata"), default="rest",
        help="how the ERP is read: the REST contract (default), or SAP S/4HANA's OData v2 APIs, polled for changes",
    )
    demo.add_argument("--poll-seconds", type=float, default=5.0, help="with --erp sap-odata: ERP poll interval (default 5)")
    demo.add_argument(
        "--sap-systems", default="", metavar="SYSTEMS",
        help="comma-separated systems read as SAP S/4HANA over OData: erp (as --erp sap-odata), mes (production "
        "orders; work centres over REST), wms (deliveries; components over REST), qms (inspection lots)",
    )
    _add_plant_event_options(demo)
    _add_fault_options(demo)
    demo.set_defaults(func=cmd_demo)

    sim = sub.add_parser("simulate", help="run the simulated plant alone (five source APIs on one port)")
    sim.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    sim.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    sim.add_argument("--orders", type=int, default=2000, help="sales orders (default 2000)")
    sim.add_argument("--seed", type=int, default=42, help="world seed (default 42)")
    sim.add_argument("--latency-ms", type=float, default=3.0, help="per-call latency (default 3 ms)")
    sim.add_argument("--gateway-url", help="send the plant's events to this gateway (e.g. http://127.0.0.1:8000)")
    _add_plant_event_options(sim)
    _add_fault_options(sim)
    sim.add_argument(
        "--separate-ports",
        action="store_true",
        help="also serve each system on its own port (port+1 … port+5), so a `down` fault refuses connections",
    )
    sim.set_defaults(func=cmd_simulate)

    serve = sub.add_parser("serve", help="run the gateway against the sources in a configuration file")
    serve.add_argument("--config", help="TOML configuration file (defaults point at a local simulated plant)")
    serve.add_argument("--host", help="address (overrides the configuration)")
    serve.add_argument("--port", type=int, help="port (overrides the configuration)")
    serve.add_argument("--persisted-only", action="store_true", help="accept only safelisted (persisted) operations")
    serve.add_argument(
        "--workers",
        type=int,
        help="gateway processes on one port (default [gateway] workers, 1); more than one needs [scaleout] redis_url",
    )
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="mint a development JWT (HS256) for a role")
    token.add_argument("--role", required=True, choices=["customer", "service", "planner", "integrator"])
    token.add_argument("--customer", help="the customer id (ERP business partner), for --role customer")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds the token is valid (default 3600)")
    token.add_argument("--subject", help="the `sub` claim (default derived from the role)")
    token.add_argument("--secret", help="HS256 secret (default: auth.hs256_secret, else the demo's)")
    token.add_argument("--config", help="TOML configuration file (issuer, audience, secret)")
    token.set_defaults(func=cmd_token)

    events = sub.add_parser(
        "events",
        help="list and replay events parked as dead letters",
        description="Events whose processing failed for good are parked in the journal (kept, out of the way). "
        "List them, fix the cause (a source's data, a key format, a source's refusal), then replay them. "
        "Safe while the gateway runs: on SQLite the file is shared (WAL), on Redis every replica sees the change.",
    )
    events.add_argument("action", choices=["parked", "replay"], help="parked lists; replay hands events back")
    events.add_argument("seqs", nargs="*", type=int, metavar="SEQ", help="replay: the events' sequence numbers")
    events.add_argument("--all", action="store_true", help="replay: every parked event")
    events.add_argument("--journal", help="the SQLite journal file (default: the configured journal)")
    events.add_argument("--config", help="TOML configuration file (journal_path, or [scaleout] redis_url)")
    events.add_argument("--limit", type=int, default=100, help="parked: list at most this many (default 100)")
    events.add_argument("--json", action="store_true", help="parked: one JSON object per line")
    events.add_argument(
        "--wait", type=float, default=10.0, help="replay: seconds to wait and report what became of them (default 10)"
    )
    events.set_defaults(func=cmd_events)

    notices = sub.add_parser(
        "notices",
        help="list and replay notice deliveries that failed every attempt",
        description="A notice delivery (webhook or email) that failed [notices] max_attempts times is a dead letter. "
        "List them, fix the cause (the receiver, the SMTP server, the address), then replay them. Safe while the "
        "gateway runs (the outbox is SQLite in WAL mode).",
    )
    notices.add_argument("action", choices=["dead", "replay"], help="dead lists; replay sends again")
    notices.add_argument("ids", nargs="*", type=int, metavar="ID", help="replay: the deliveries' ids")
    notices.add_argument("--all", action="store_true", help="replay: every dead delivery")
    notices.add_argument("--outbox", help="the outbox file (default: [notices] outbox_path, else beside the journal)")
    notices.add_argument("--config", help="TOML configuration file ([scaleout] redis_url: the outbox on Redis)")
    notices.add_argument("--limit", type=int, default=100, help="dead: list at most this many (default 100)")
    notices.add_argument("--json", action="store_true", help="dead: one JSON object per line")
    notices.set_defaults(func=cmd_notices)

    customers = sub.add_parser(
        "customers", help="list the ERP's customer ids (for `ordergraph token --role customer --customer ID`)"
    )
    customers.add_argument("--erp-url", help="ERP base URL (default: the configured one, e.g. the demo's plant)")
    customers.add_argument("--config", help="TOML configuration file ([sources.erp] base_url)")
    customers.add_argument("--json", action="store_true", help="one JSON object per line")
    customers.set_defaults(func=cmd_customers)

    assets = sub.add_parser("assets", help="fetch GraphiQL's browser assets (npm) so GraphiQL works offline")
    assets.set_defaults(func=cmd_assets)

    # Listed for --help only: main() hands `ordergraph bench ...` to the harness unparsed.
    sub.add_parser("bench", help="benchmark against a Node peer (from a checkout; `ordergraph bench --help`)")

    schema = sub.add_parser("schema", help="export or check schema.graphql, the published contract")
    schema.add_argument("action", choices=["export", "check", "print"], help="export writes, check fails when stale")
    schema.add_argument("--file", default=None, help="schema file (default schema.graphql, or subgraph.graphql with --federation)")
    schema.add_argument(
        "--federation",
        action="store_true",
        help="the Apollo Federation v2 subgraph SDL (subgraph.graphql); check without it checks both files",
    )
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return cmd_bench(argv[1:])  # the harness parses its own options
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
