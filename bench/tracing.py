"""Tracing overhead: throughput with OpenTelemetry on, as a ratio to tracing off.

Two gateways run side by side against the same plant, identical but for ``[telemetry]``:
one with tracing off (the default), one with every request traced and exported over
OTLP/HTTP (batched, as in production) to a sink in the harness process that accepts and
counts the exports. Rounds alternate (off, on, on, off, ...) so a burst of someone else's
work on a shared machine hits both. Run it alone with ``python -m bench --only tracing``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .run import Bench


class OtlpSink:
    """An OTLP/HTTP traces endpoint that accepts every export and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> OtlpSink:
        async def traces(request: web.Request) -> web.Response:
            self.bytes += len(await request.read())
            self.requests += 1
            return web.Response(status=200, content_type="application/x-protobuf", body=b"")

        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/traces", traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def tracing_overhead(bench: Bench) -> None:
    """Measure the cold and warm workloads with tracing off and on; rows in results["tracing"]."""
    from .run import say

    sink = await OtlpSink().start()
    bench.otlp_sink_url = sink.url
    say(f"7/7 tracing overhead: tracing off vs on (OTLP/HTTP to a sink at {sink.url}), rounds alternating")
    rows = bench.results.setdefault("tracing", [])
    try:
        for cache in ("cold", "warm"):
            gateways: dict[str, Any] = {}
            for label in ("off", "on"):
                await bench.start_gateway(cache if label == "off" else f"{cache}-traced")
                gateways[label], bench.gateway = bench.gateway, None
            try:
                loads = {label: await bench.workloads("ordergraph", proc) for label, proc in gateways.items()}
                for workload in ("where is my order", "dashboard page (50)"):
                    c = bench.size.concurrency if workload == "where is my order" else max(1, bench.size.concurrency // 2)
                    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
                    for label, proc in gateways.items():
                        if cache == "warm":  # every body once, so the caches hold them
                            for body in loads[label][workload]:
                                await bench.gql("ordergraph", proc, body)
                        if bench.size.warmup_seconds:
                            await bench.load("ordergraph", proc, loads[label][workload], connections=c, seconds=bench.size.warmup_seconds)
                    exports = sink.requests
                    slice_s = bench.size.throughput_seconds / bench.size.rounds
                    for r in range(bench.size.rounds):
                        for label in ("off", "on") if r % 2 == 0 else ("on", "off"):
                            runs[label].append(
                                await bench.load("ordergraph", gateways[label], loads[label][workload], connections=c, seconds=slice_s)
                            )
                    row: dict[str, Any] = {"workload": workload, "cache": cache, "concurrency": c}
                    for label, xs in runs.items():
                        requests = sum(x["requests"] for x in xs)
                        duration = sum(x["duration_s"] for x in xs)
                        row[label] = {
                            "requests": requests,
                            "requests_per_second": round(requests / max(duration, 1e-9), 1),
                            "errors": sum(x["errors"] for x in xs),
                            "p50_ms": sorted(x["p50_ms"] for x in xs)[len(xs) // 2],
                            "p99_ms": sorted(x["p99_ms"] for x in xs)[len(xs) // 2],
                            "server_cpu": round(sum(x["server_cpu"] for x in xs) / len(xs), 3),
                        }
                    row["exports"] = sink.requests - exports
                    off, on = row["off"], row["on"]
                    row["ratio"] = round(on["requests_per_second"] / max(off["requests_per_second"], 1e-9), 3)
                    rows.append(row)
                    say(
                        f"   {workload:<20} {cache:<4} c={c:<3} off {off['requests_per_second']:8.1f} req/s p99 {off['p99_ms']:.1f} ms; "
                        f"on {on['requests_per_second']:8.1f} req/s p99 {on['p99_ms']:.1f} ms; on/off {row['ratio']:.3f} "
                        f"[{row['exports']} OTLP exports, {off['errors'] + on['errors']} errors]"
                    )
            finally:
                for proc in gateways.values():
                    proc.stop()
    finally:
        await sink.stop()
