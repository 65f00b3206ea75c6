"""Render docs/grafana/ordergraph-dashboard.json from a live /metrics, without Grafana.

    python docs/grafana/preview.py [--url http://127.0.0.1:8000] [--seconds 90] [--out docs/screenshots/grafana-dashboard.png]

Without ``--url`` it starts ``ordergraph demo --open`` on free ports (the simulated plant
sending events on its accelerated clock, the MES slow on one call in ten so the panels have something
to show), opens a few live subscriptions and queries it while it scrapes. It scrapes
``/metrics`` every ``--step`` seconds, evaluates each panel's PromQL exactly as written in
the dashboard (a small evaluator for the functions the dashboard uses: ``rate``,
``sum by``, ``histogram_quantile``, ``/``; ``$__rate_interval`` = ``--rate-interval``),
draws the panels where the dashboard's ``gridPos`` puts them as SVG in an offline HTML
page, and screenshots it with headless Chromium. It is a preview of the dashboard's
queries over real data, not Grafana's own rendering.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "ordergraph-dashboard.json"
Labels = frozenset  # of (name, value)
Scrape = tuple[float, dict[tuple[str, Labels], float]]
Series = dict[Labels, float]


# --- PromQL, the part the dashboard uses -------------------------------------------------


class Expr:
    """A parsed expression, evaluated at one scrape against the scrapes before it."""

    def __init__(self, text: str, rate_interval: float) -> None:
        self.src = text.replace("$__rate_interval", f"{rate_interval:g}s")
        self.pos = 0
        self.tree = self._binary()
        if self.src[self.pos :].strip():
            raise ValueError(f"cannot parse {self.src[self.pos:]!r} in {text!r}")

    # parsing
    def _ws(self) -> None:
        while self.pos < len(self.src) and self.src[self.pos].isspace():
            self.pos += 1

    def _eat(self, token: str) -> bool:
        self._ws()
        if self.src.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def _need(self, token: str) -> None:
        if not self._eat(token):
            raise ValueError(f"expected {token!r} at {self.src[self.pos:]!r}")

    def _binary(self) -> Any:
        left = self._term()
        while self._eat("/"):
            left = ("div", left, self._term())
        return left

    def _name(self) -> str:
        self._ws()
        m = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*").match(self.src, self.pos)
        if not m:
            raise ValueError(f"expected a name at {self.src[self.pos:]!r}")
        self.pos = m.end()
        return m.group()

    def _term(self) -> Any:
        if self._eat("("):
            inner = self._binary()
            self._need(")")
            return inner
        name = self._name()
        if name == "histogram_quantile":
            self._need("(")
            m = re.compile(r"\s*([0-9.]+)\s*,").match(self.src, self.pos)
            assert m, self.src
            self.pos = m.end()
            inner = self._binary()
            self._need(")")
            return ("quantile", float(m.group(1)), inner)
        if name == "sum":
            by: tuple[str, ...] | None = None
            if self._eat("by"):
                self._need("(")
                by = tuple(x.strip() for x in self.src[self.pos : self.src.index(")", self.pos)].split(","))
                self.pos = self.src.index(")", self.pos) + 1
            self._need("(")
            inner = self._binary()
            self._need(")")
            return ("sum", by, inner)
        if name == "rate":
            self._need("(")
            sel = self._selector(self._name())
            self._need("[")
            end = self.src.index("]", self.pos)
            window = float(self.src[self.pos : end].rstrip("s"))
            self.pos = end + 1
            self._need(")")
            return ("rate", sel, window)
        return ("instant", self._selector(name))

    def _selector(self, name: str) -> tuple[str, list[tuple[str, str, str]]]:
        matchers = []
        if self._eat("{"):
            while not self._eat("}"):
                label = self._name()
                op = "=~" if self._eat("=~") else ("=" if self._eat("=") else None)
                assert op, self.src
                self._ws()
                m = re.compile(r'"((?:[^"\\]|\\.)*)"').match(self.src, self.pos)
                assert m, self.src
                self.pos = m.end()
                matchers.append((label, op, m.group(1)))
                self._eat(",")
        return name, matchers

    # evaluation
    def eval(self, scrapes: list[Scrape], i: int) -> Series:
        return self._eval(self.tree, scrapes, i)

    def _select(self, sel: Any, samples: dict[tuple[str, Labels], float]) -> Series:
        name, matchers = sel
        out: Series = {}
        for (n, labels), v in samples.items():
            if n != name:
                continue
            d = dict(labels)
            if all((d.get(k, "") == val) if op == "=" else re.fullmatch(val, d.get(k, "")) for k, op, val in matchers):
                out[labels] = v
        return out

    def _eval(self, node: Any, scrapes: list[Scrape], i: int) -> Series:
        kind = node[0]
        if kind == "instant":
            return self._select(node[1], scrapes[i][1])
        if kind == "rate":
            t, now = scrapes[i][0], self._select(node[1], scrapes[i][1])
            j = i
            while j > 0 and t - scrapes[j - 1][0] <= node[2] + 1e-6:
                j -= 1
            if j == i:
                return {}
            t0, before = scrapes[j][0], self._select(node[1], scrapes[j][1])
            out = {}
            for labels, v in now.items():
                v0 = before.get(labels, 0.0)
                out[labels] = (v - v0 if v >= v0 else v) / (t - t0)
            return out
        if kind == "sum":
            _, by, inner = node
            out: Series = {}
            for labels, v in self._eval(inner, scrapes, i).items():
                key = frozenset((k, val) for k, val in labels if by is not None and k in by)
                out[key] = out.get(key, 0.0) + v
            return out
        if kind == "div":
            a, b = self._eval(node[1], scrapes, i), self._eval(node[2], scrapes, i)
            return {k: a[k] / b[k] for k in a if b.get(k)}
        if kind == "quantile":
            return quantiles(node[1], self._eval(node[2], scrapes, i))
        raise ValueError(kind)


def quantiles(q: float, buckets: Series) -> Series:
    """histogram_quantile: linear interpolation within the bucket, as Prometheus does."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for labels, v in buckets.items():
        d = dict(labels)
        le = float(d.pop("le", "nan"))
        groups.setdefault(frozenset(d.items()), []).append((le, v))
    out: Series = {}
    for labels, bs in groups.items():
        bs.sort()
        total = bs[-1][1] if bs else 0
        if total <= 0:
            continue
        rank = q * total
        prev_le, prev_count = 0.0, 0.0
        for le, count in bs:
            if count >= rank:
                if math.isinf(le):
                    out[labels] = prev_le
                else:
                    out[labels] = prev_le + (le - prev_le) * ((rank - prev_count) / max(count - prev_count, 1e-12))
                break
            prev_le, prev_count = le, count
    return out


def legend(fmt: str, labels: Labels) -> str:
    d = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: d.get(m.group(1), ""), fmt) or fmt


# --- scraping and load -------------------------------------------------------------------


def parse_scrape(text: str) -> dict[tuple[str, Labels], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def subscribe(http: aiohttp.ClientSession, url: str, query: str, stop: asyncio.Event) -> None:
    """One graphql-transport-ws subscription, read until ``stop``."""
    ws_url = url.replace("http", "ws", 1) + "/graphql"
    async with http.ws_connect(ws_url, protocols=["graphql-transport-ws"]) as ws:
        await ws.send_json({"type": "connection_init", "payload": {}})
        await ws.receive_json()
        await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query}})
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                msg = await ws.receive(timeout=0.5)
                if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return


async def query_loop(http: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
    queries = [
        "{ orders(first: 20) { nodes { id stage deliveryRisk customer { name } logistics { status } } } }",
        "{ orders(first: 5, filter: {deliveryRisk: [LATE, AT_RISK]}) { nodes { id predictedDeliveryDate } } }",
    ]
    n = 0
    while not stop.is_set():
        with contextlib.suppress(aiohttp.ClientError):
            async with http.post(f"{url}/graphql", json={"query": queries[n % len(queries)]}) as resp:
                await resp.read()
        n += 1
        await asyncio.sleep(0.05)


async def collect(url: str, seconds: float, step: float, load: bool) -> list[Scrape]:
    scrapes: list[Scrape] = []
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        tasks = []
        if load:
            subs = [
                "subscription { orderChanges { cursor order { id stage } } }",
                "subscription { exceptionsChanged { cursor action } }",
            ]
            tasks = [asyncio.create_task(subscribe(http, url, subs[i % 2], stop)) for i in range(6)]
            tasks += [asyncio.create_task(query_loop(http, url, stop)) for _ in range(2)]
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            async with http.get(f"{url}/metrics") as resp:
                scrapes.append((time.monotonic() - t0, parse_scrape(await resp.text())))
            await asyncio.sleep(step)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return scrapes


# --- drawing -----------------------------------------------------------------------------

COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#b877d9", "#f2495c", "#8ab8ff", "#96d98d", "#ffb357", "#ca95e5"]
COL_W, ROW_H, GAP = 62, 34, 8


def fmt(v: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{v * 100:.0f}%"
    if unit == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "reqps":
        return f"{v:.1f}/s"
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def panel_svg(panel: dict[str, Any], lines: list[tuple[str, list[tuple[float, float]]]], w: int, h: int) -> str:
    unit = panel["fieldConfig"]["defaults"].get("unit", "short")
    head = f'<text x="10" y="20" class="title">{html.escape(panel["title"])}</text>'
    if panel["type"] == "stat":
        pts = lines[0][1] if lines else []
        value = fmt(pts[-1][1], unit) if pts else "No data"
        spark = _polyline(pts, 0, h * 0.55, w, h * 0.45, None, None, "#73bf69", fill=True) if len(pts) > 1 else ""
        return f'{head}{spark}<text x="{w / 2}" y="{h * 0.58}" class="stat">{html.escape(value)}</text>'
    left, top, right, bottom = 56, 30, 8, 22 + 16 * math.ceil(len(lines) / 3)
    pw, ph = w - left - right, h - top - bottom
    ys = [v for _, pts in lines for _, v in pts]
    d = panel["fieldConfig"]["defaults"]
    lo = d.get("min", min(ys, default=0.0))
    hi = d.get("max", max(ys, default=1.0))
    lo = min(lo, 0.0)
    if hi <= lo:
        hi = lo + 1
    xs = [t for _, pts in lines for t, _ in pts]
    x0, x1 = min(xs, default=0), max(xs, default=1)
    out = [head]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        y = top + ph - ph * k / 4
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{html.escape(fmt(v, unit))}</text>')
    for k in range(4):
        t = x0 + (x1 - x0) * k / 3
        x = left + pw * k / 3
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" class="axis" text-anchor="middle">{t - x1:+.0f}s</text>')
    if not lines:
        out.append(f'<text x="{w / 2}" y="{h / 2}" class="axis" text-anchor="middle">No data</text>')
    for n, (name, pts) in enumerate(lines):
        color = COLORS[n % len(COLORS)]
        out.append(_polyline([((t - x0) / max(x1 - x0, 1e-9), v) for t, v in pts], left, top, pw, ph, lo, hi, color, fill=len(lines) == 1))
        lx, ly = 10 + (n % 3) * (w - 20) / 3, top + ph + 30 + 16 * (n // 3)
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="12" height="3" fill="{color}"/><text x="{lx + 16}" y="{ly - 3}" class="legend">{html.escape(name[:34])}</text>')
    return "".join(out)


def _polyline(pts: list[tuple[float, float]], left: float, top: float, pw: float, ph: float, lo: float | None, hi: float | None, color: str, fill: bool) -> str:
    if not pts:
        return ""
    if lo is None or hi is None:  # a stat's sparkline: its own scale, time normalised here
        ts = [t for t, _ in pts]
        vs = [v for _, v in pts]
        lo, hi = min(vs), max(vs) if max(vs) > min(vs) else min(vs) + 1
        pts = [((t - ts[0]) / max(ts[-1] - ts[0], 1e-9), v) for t, v in pts]
    coords = [(left + pw * x, top + ph - ph * (v - lo) / (hi - lo)) for x, v in pts]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    area = f'<polygon points="{coords[0][0]:.1f},{top + ph:.1f} {line} {coords[-1][0]:.1f},{top + ph:.1f}" fill="{color}" opacity="0.12"/>' if fill else ""
    return f'{area}<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>'


def render(dashboard: dict[str, Any], scrapes: list[Scrape], rate_interval: float, source: str) -> str:
    panels_html = []
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        x, y, w, h = g["x"] * COL_W, g["y"] * ROW_H, g["w"] * COL_W - GAP, g["h"] * ROW_H - GAP
        lines = []
        for target in panel["targets"]:
            expr = Expr(target["expr"], rate_interval)
            series: dict[Labels, list[tuple[float, float]]] = {}
            for i in range(len(scrapes)):
                for labels, v in expr.eval(scrapes, i).items():
                    if math.isfinite(v):
                        series.setdefault(labels, []).append((scrapes[i][0], v))
            for labels, pts in sorted(series.items(), key=lambda kv: sorted(kv[0])):
                lines.append((legend(target.get("legendFormat", ""), labels), pts))
        panels_html.append(
            f'<svg class="panel" style="left:{x}px;top:{y + 64}px" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
            f'<rect width="{w}" height="{h}" rx="3" class="bg"/>{panel_svg(panel, lines, w, h)}</svg>'
        )
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"]) * ROW_H + 72
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin:0; background:#111217; font-family: Inter, "DejaVu Sans", Helvetica, Arial, sans-serif; width:{24 * COL_W}px; height:{height}px; position:relative; }}
.top {{ position:absolute; left:0; top:0; right:0; height:52px; color:#ccccdc; padding:0 12px; }}
.top h1 {{ font-size:18px; font-weight:500; margin:14px 0 2px; }} .top p {{ font-size:11px; color:#8e8e9a; margin:0; }}
.panel {{ position:absolute; }} .bg {{ fill:#181b1f; stroke:#2c3235; }}
.title {{ fill:#ccccdc; font-size:13px; font-weight:500; }} .axis {{ fill:#8e8e9a; font-size:10px; }}
.legend {{ fill:#ccccdc; font-size:10px; }} .grid {{ stroke:#2c3235; stroke-width:1; }}
.stat {{ fill:#73bf69; font-size:34px; font-weight:500; text-anchor:middle; }}
</style></head><body><div class="top"><h1>{html.escape(dashboard['title'])} — dashboard preview</h1>
<p>docs/grafana/ordergraph-dashboard.json evaluated by docs/grafana/preview.py over {len(scrapes)} scrapes of {html.escape(source)}/metrics
(rate interval {rate_interval:g}s; not rendered by Grafana)</p></div>{''.join(panels_html)}</body></html>"""


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", f"--screenshot={out}", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )


@contextlib.contextmanager
def demo() -> Any:
    """``ordergraph demo --open`` on free ports, with an MES slow on one call in ten, so the latency panels differ."""
    port, plant = free_port(), free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="ordergraph-demo-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--open", "--no-assets", "--port", str(port), "--plant-port", str(plant),
         "--orders", "600", "--speed", "600", "--fault", "mes=slow,rate=0.1"],
        cwd=HERE.parent.parent, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"ordergraph demo exited ({proc.returncode}); a port taken meanwhile? Run again.")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        time.sleep(2)
        if proc.poll() is not None:
            raise RuntimeError(f"ordergraph demo exited ({proc.returncode}); a port taken meanwhile? Run again.")
        yield url
    except BaseException:
        print(Path(log.name).read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
        os.unlink(log.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running gateway (default: start `ordergraph demo --open` and load it)")
    p.add_argument("--seconds", type=float, default=90.0)
    p.add_argument("--step", type=float, default=2.0, help="seconds between scrapes")
    p.add_argument("--rate-interval", type=float, default=10.0, help="$__rate_interval in seconds")
    p.add_argument("--out", type=Path, default=HERE.parent / "screenshots" / "grafana-dashboard.png")
    p.add_argument("--html", type=Path, help="also keep the HTML page here")
    a = p.parse_args(argv)
    dashboard = json.loads(DASHBOARD.read_text())
    with contextlib.ExitStack() as stack:
        url = a.url or stack.enter_context(demo())
        scrapes = asyncio.run(collect(url, a.seconds, a.step, load=a.url is None))
    page_html = render(dashboard, scrapes, a.rate_interval, "ordergraph demo" if a.url is None else a.url)
    height = max(pn["gridPos"]["y"] + pn["gridPos"]["h"] for pn in dashboard["panels"]) * ROW_H + 72
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(a.html or Path(tmp) / "dashboard.html")
        page.write_text(page_html)
        screenshot(page, a.out, 24 * COL_W, height)
    print(f"wrote {a.out} ({len(scrapes)} scrapes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
