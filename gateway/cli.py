"""The ``ordergraph`` command: demo, simulate, serve, schema."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import logging
import sys
import tempfile
from pathlib import Path

from .config import Config, ConfigError, load_config

SCHEMA_FILE = Path("schema.graphql")


def _schema_sdl() -> str:
    from resolvers.schema import schema_sdl

    return schema_sdl()


def cmd_schema(args: argparse.Namespace) -> int:
    path = Path(args.file)
    sdl = _schema_sdl()
    if args.action == "export":
        path.write_text(sdl)
        print(f"wrote {path} ({len(sdl.splitlines())} lines)")
        return 0
    if args.action == "print":
        sys.stdout.write(sdl)
        return 0
    # check
    if not path.exists():
        print(f"{path} is missing: run `ordergraph schema export`", file=sys.stderr)
        return 1
    current = path.read_text()
    if current == sdl:
        print(f"{path} is up to date")
        return 0
    diff = difflib.unified_diff(current.splitlines(), sdl.splitlines(), str(path), "generated from code", lineterm="")
    print("\n".join(list(diff)[:80]), file=sys.stderr)
    print(f"{path} is out of date: run `ordergraph schema export`", file=sys.stderr)
    return 1


async def _serve(app, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    await server.serve()


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import create_app

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"ordergraph: {exc}", file=sys.stderr)
        return 2
    host = args.host or cfg.gateway.host
    port = args.port or cfg.gateway.port
    print(f"ordergraph gateway on http://{host}:{port}/graphql")
    for name, src in cfg.sources.items():
        print(f"  {name.upper()}: {src.base_url}")
    asyncio.run(_serve(create_app(cfg), host, port))
    return 0


def _plant_events(sim, gateway_url: str, secrets: dict[str, str], args: argparse.Namespace) -> list:
    """Start the plant's webhooks (and its accelerated clock when --speed > 0)."""
    from sources.simulator.emitter import EventEmitter, PlantDriver

    emitter = EventEmitter(
        sim.world,
        gateway_url,
        secrets,
        duplicate_rate=args.duplicate_rate,
        reorder_rate=args.reorder_rate,
        notification_rate=args.notification_rate,
    )
    emitter.start()
    started = [emitter]
    if args.speed > 0:
        driver = PlantDriver(sim.world, speed=args.speed, breakdown_rate=args.breakdown_rate)
        driver.start()
        started.append(driver)
    return started


def _add_plant_event_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=float, default=600.0, help="plant clock speed: plant seconds per real second (default 600; 0 = only the control API moves it)")
    p.add_argument("--breakdown-rate", type=float, default=0.05, help="chance per second that a work centre breaks down (default 0.05)")
    p.add_argument("--duplicate-rate", type=float, default=0.05, help="share of events sent twice (default 0.05)")
    p.add_argument("--reorder-rate", type=float, default=0.05, help="share of events sent out of order (default 0.05)")
    p.add_argument("--notification-rate", type=float, default=0.3, help="share of notification-only events (default 0.3)")


def cmd_simulate(args: argparse.Namespace) -> int:
    from sources.simulator.app import start_simulator

    from .config import DEV_SECRETS

    async def main() -> None:
        print(f"generating the plant: {args.orders} orders, seed {args.seed} ...", flush=True)
        sim = await start_simulator(
            args.host, args.port, orders=args.orders, seed=args.seed, latency_ms=args.latency_ms
        )
        print(f"simulated plant on {sim.url} (ERP /erp, MES /mes, WMS /wms, QMS /qms, TMS /tms)")
        print(f"  OpenAPI: {sim.url}/erp/openapi.json (and per system); control API: {sim.url}/control/world")
        running = []
        if args.gateway_url:
            running = _plant_events(sim, args.gateway_url, DEV_SECRETS, args)
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
    from sources.simulator.app import start_simulator

    from .app import create_app

    from .graphiql import assets_present

    if not assets_present() and not args.no_assets:
        from .assets import AssetsError, fetch_assets

        print("ordergraph demo: GraphiQL's assets are missing; fetching them once (ordergraph assets) ...", flush=True)
        try:
            fetch_assets()
        except AssetsError as exc:
            print(f"  could not fetch them ({exc}); GraphiQL will load them from a CDN instead.", flush=True)

    async def main() -> None:
        print(f"ordergraph demo: generating the simulated plant ({args.orders} orders, seed {args.seed}) ...", flush=True)
        sim = await start_simulator(
            "127.0.0.1", args.plant_port, orders=args.orders, seed=args.seed, latency_ms=args.latency_ms
        )
        cfg = Config.for_plant(sim.url, host=args.host, port=args.port)
        cfg.events.journal_path = args.journal or str(Path(tempfile.mkdtemp(prefix="ordergraph-demo-")) / "journal.sqlite")
        app = create_app(cfg)
        first = sorted(sim.world.sales_orders)[0] if hasattr(sim.world, "sales_orders") else "10000001"
        url = f"http://{args.host}:{args.port}/graphql"
        print(f"  plant (ERP, MES, WMS, QMS, TMS): {sim.url}")
        print(f"  GraphiQL: {url}")
        print("  first query to try:")
        print(f"    curl -s {url} -H 'content-type: application/json' \\")
        print(f"      -d '{{\"query\": \"{{ order(id: \\\"{first}\\\") {{ id stage deliveryRisk predictedDeliveryDate }} }}\"}}'")
        print(f"  journal: {cfg.events.journal_path}")
        print(f"  the plant runs at {args.speed:g}x and sends signed events to {url.rsplit('/', 1)[0]}/events;")
        print("  in GraphiQL, subscribe to orderChanges to watch orders move.")
        print("  Ctrl-C stops.", flush=True)
        running = _plant_events(sim, url.rsplit("/", 1)[0], cfg.events.secrets, args)
        try:
            await _serve(app, args.host, args.port)
        finally:
            for r in running:
                await r.close()
            await sim.close()

    with _quiet_interrupt():
        asyncio.run(main())
    return 0


class _quiet_interrupt:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is KeyboardInterrupt


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
    demo.add_argument("--journal", help="event journal file (default: a fresh temporary file)")
    _add_plant_event_options(demo)
    demo.set_defaults(func=cmd_demo)

    sim = sub.add_parser("simulate", help="run the simulated plant alone (five source APIs on one port)")
    sim.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    sim.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    sim.add_argument("--orders", type=int, default=2000, help="sales orders (default 2000)")
    sim.add_argument("--seed", type=int, default=42, help="world seed (default 42)")
    sim.add_argument("--latency-ms", type=float, default=3.0, help="per-call latency (default 3 ms)")
    sim.add_argument("--gateway-url", help="send the plant's events to this gateway (e.g. http://127.0.0.1:8000)")
    _add_plant_event_options(sim)
    sim.set_defaults(func=cmd_simulate)

    serve = sub.add_parser("serve", help="run the gateway against the sources in a configuration file")
    serve.add_argument("--config", help="TOML configuration file (defaults point at a local simulated plant)")
    serve.add_argument("--host", help="address (overrides the configuration)")
    serve.add_argument("--port", type=int, help="port (overrides the configuration)")
    serve.set_defaults(func=cmd_serve)

    assets = sub.add_parser("assets", help="fetch GraphiQL's browser assets (npm) so GraphiQL works offline")
    assets.set_defaults(func=cmd_assets)

    schema = sub.add_parser("schema", help="export or check schema.graphql, the published contract")
    schema.add_argument("action", choices=["export", "check", "print"], help="export writes, check fails when stale")
    schema.add_argument("--file", default=str(SCHEMA_FILE), help="schema file (default schema.graphql)")
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
