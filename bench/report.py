"""The markdown table of a run, the targets it is checked against, and the README update."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")
README_START = "<!-- bench:results:start -->"
README_END = "<!-- bench:results:end -->"


def _n(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _calls(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "n/a"
    parts = "/".join(str(entry[s]) for s in SYSTEMS)
    return f"{parts} = **{entry['total']}**"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, status) for the issue's targets."""
    out: list[tuple[str, str, str]] = []
    rows = results.get("upstream_calls") or []
    if rows:
        over = [r for r in rows if r["ordergraph"]["total"] > r["ideal"]]
        measured = "; ".join(
            f"{f}: {'/'.join(str(r['ordergraph']['total']) for r in rows if r['fields'] == f)} calls for {'/'.join(str(r['orders']) for r in rows if r['fields'] == f)} orders (ideal {next(r['ideal'] for r in rows if r['fields'] == f)})"
            for f in dict.fromkeys(r["fields"] for r in rows)
        )
        out.append(("upstream calls per level = 1 per source", measured, "met" if not over else f"not met ({len(over)} of {len(rows)} queries over the ideal)"))
    for row in results.get("latency") or []:
        if row["query"].startswith("50"):
            r = row["ordergraph"]["p50_ratio"]
            out.append(("50-order p50 ≤ 1.2 × critical path", f"{r} × ({row['ordergraph']['p50_ms']:.1f} ms vs {row['ideal_ms']:g} ms)", "met" if r <= 1.2 else "not met"))
    for cache, goal, label in (("cold", 1.0, "uncached throughput ≥ peer"), ("warm", 5.0, "event-invalidated cache ≥ 5 × peer")):
        ratios = [(r["workload"], r.get("ratio")) for r in results.get("throughput") or [] if r["cache"] == cache]
        if ratios and all(x is not None for _, x in ratios):
            worst = min(x for _, x in ratios)
            out.append((label, ", ".join(f"{w} {x}×" for w, x in ratios), "met" if worst >= goal else "not met"))
        elif ratios:
            out.append((label, "n/a (no peer)", "n/a"))
    out += cached_peer_targets(results)
    soak = results.get("soak") or {}
    if soak.get("windows"):
        out.append(("soak: RSS growth after warm-up < 10 %", f"{soak['rss_growth_pct']} % over {soak['seconds']:g} s", "met" if (soak["rss_growth_pct"] or 0) < 10 else "not met"))
        flat = soak["backlog_last"] <= max(soak["backlog_first"], 1.0) * 2 and soak["backlog_last"] < 100
        out.append(("soak: event backlog flat", f"median {soak['backlog_first']:g} (first third) → {soak['backlog_last']:g} (last third), max {soak['backlog_max']:g}", "met" if flat else "not met"))
    fresh = results.get("freshness") or {}
    if fresh.get("probes"):
        stale = fresh.get("stale_after_ack")
        out.append(
            (
                "never older than the last accepted event",
                (f"{stale} of {fresh['probes']} reads right after the 202 served older data; " if stale is not None else "")
                + f"source change → fresh read p50 {fresh.get('p50_ms')} ms, max {fresh.get('max_ms')} ms",
                ("met" if stale == 0 and not fresh["never_fresh"] else "not met") if stale is not None else "see note",
            )
        )
    subs = results.get("subscriptions") or []
    if subs:
        row = next((s for s in subs if s["subscribers"] == 1000), subs[0])
        out.append(
            (
                "event-to-client p99 ≤ 100 ms at 1,000 subscribers",
                f"{row['p99_ms']} ms at {row['subscribers']:,} subscribers",
                ("met" if row["p99_ms"] <= 100 else "not met") + ("" if row["subscribers"] == 1000 else " (size differs)"),
            )
        )
        bad = [s for s in subs if not s["equal"]]
        out.append(("delivered = expected messages", ", ".join(f"{s['delivered']:,}/{s['expected']:,}" for s in subs), "met" if not bad else "not met"))
    attack = results.get("attack") or []
    if attack:
        worst = max(r["p99_ratio"] for r in attack)
        out.append(
            (
                "under attack: normal p99 ≤ 2 × unloaded",
                ", ".join(f"{r['workload']} {r['p99_ratio']}×" for r in attack),
                "met" if worst <= 2.0 else "not met",
            )
        )
    return out


def _rivals(results: dict[str, Any]) -> list[str]:
    """The warm runs' rivals besides the uncached peer, in the order they were measured."""
    names: list[str] = []
    for r in results.get("throughput") or []:
        names += [n for n in r.get("ratios") or {} if n != "peer" and n not in names]
    return names


def _ttl_label(name: str) -> str:
    if name.startswith("peer-ttl"):
        return f"peer, {name.removeprefix('peer-ttl')} TTL"
    if name.startswith("ordergraph-rttl"):
        return f"ordergraph, {name.removeprefix('ordergraph-rttl')} response TTL"
    return name.replace("ordergraph-w", "ordergraph --workers ")


def _stale(results: dict[str, Any], workload: str, name: str) -> str:
    t = ((results.get("freshness") or {}).get("by_workload") or {}).get(workload, {}).get(name)
    if not t or not t["probes"]:
        return "n/a"
    return f"{t['stale']}/{t['probes']} ({100 * t['stale'] / t['probes']:.0f} %)"


def _same_ttl_ratio(row: dict[str, Any], name: str) -> str:
    peer = row.get(f"peer-ttl{name.removeprefix('ordergraph-rttl')}", {}).get("requests_per_second")
    mine = row.get(name, {}).get("requests_per_second")
    return f"{mine / peer:.2f}×" if mine and peer else "n/a"


def cached_peer_targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Issue 19's goals against the peer with a response cache."""
    out: list[tuple[str, str, str]] = []
    warm = [r for r in results.get("throughput") or [] if r["cache"] == "warm" and r.get("ratios")]
    ttl60 = next((n for n in _rivals(results) if n == "peer-ttl60s"), None)
    if warm and ttl60 and all(ttl60 in r["ratios"] for r in warm):
        worst = min(r["ratios"][ttl60] for r in warm)
        out.append(("warm ≥ 3 × the peer with a 60 s response cache", ", ".join(f"{r['workload']} {r['ratios'][ttl60]}×" for r in warm), "met" if worst >= 3.0 else "not met"))
    by = (results.get("freshness") or {}).get("by_workload") or {}
    if by and any(len(v) > 1 for v in by.values()):
        og = sum(v.get("ordergraph", {}).get("stale", 0) for v in by.values())
        n = sum(v.get("ordergraph", {}).get("probes", 0) for v in by.values())
        peers = []
        for name in [x for x in _rivals(results) if x.startswith("peer-ttl")]:
            st = sum(v.get(name, {}).get("stale", 0) for v in by.values())
            pn = sum(v.get(name, {}).get("probes", 0) for v in by.values())
            if pn:
                peers.append(f"{_ttl_label(name)} {st}/{pn} ({100 * st / pn:.0f} %)")
        out.append(("0 stale reads after a change and its accepted event", f"ordergraph {og}/{n}" + (f"; {'; '.join(peers)}" if peers else ""), "met" if og == 0 and n else "not met"))
    return out


def cached_peer_table(results: dict[str, Any]) -> list[str]:
    """Section 3b: warm ordergraph against the peer with yoga's response cache, and --workers."""
    rows = [r for r in results.get("throughput") or [] if r["cache"] == "warm" and r.get("ratios")]
    rivals = _rivals(results)
    if not rows or not rivals:
        return []
    ttls = [n for n in rivals if n.startswith("peer-ttl")]
    cols = ["ordergraph", *[n for n in rivals if n.startswith("ordergraph")], *ttls, "peer"]
    head = " | ".join(f"{_ttl_label(n) if n != 'peer' else 'uncached peer'} req/s" for n in cols)
    same = [n for n in rivals if n.startswith("ordergraph-rttl") and f"peer-ttl{n.removeprefix('ordergraph-rttl')}" in rivals]
    ratio_head = " | ".join([f"ordergraph / {_ttl_label(n)}" for n in ttls] + [f"{_ttl_label(n)} / peer, same TTL" for n in same])
    stale_head = " | ".join(f"stale: {_ttl_label(n) if n != 'peer' else 'uncached peer'}" for n in ["ordergraph", *[n for n in rivals if n.startswith("ordergraph")], *ttls, "peer"])
    lines = [
        "**3b. Against the cache a team would add** (warm runs, the same rounds as above: every server in turn; "
        "`peer, N s TTL` = the peer with `@graphql-yoga/plugin-response-cache`, one shared cache, entries kept N s; "
        "stale = reads of a changed order right after the gateway's 202 for the change's events that still served the "
        "old state, counted while each workload ran; in parentheses: cores used, and CPU time per request = cores ÷ req/s)",
        "",
        f"| workload | c | {head} | {ratio_head} | {stale_head} |",
        "| --- | ---: |" + " ---: |" * (len(cols) + len(ttls) + len(same)) + " ---: |" * (len(cols)),
    ]
    for r in rows:
        def cell(out: dict[str, Any]) -> str:
            rps, cpu = out.get("requests_per_second"), out.get("server_cpu")
            per = f", {1000 * cpu / rps:.2f} ms" if rps and cpu is not None else ""
            return f"{_n(rps)} ({_n(cpu, 2)}{per})"

        cells = [cell(r.get(n, {})) for n in cols]
        ratios = [f"**{_n(r['ratios'].get(n), 2)}×**" for n in ttls]
        ratios += [_same_ttl_ratio(r, n) for n in same]
        stale = [_stale(results, r["workload"], n) for n in ["ordergraph", *[n for n in rivals if n.startswith("ordergraph")], *ttls, "peer"]]
        lines.append(f"| {r['workload']} | {r['concurrency']} | " + " | ".join(cells + ratios + stale) + " |")
    lines.append("")
    return lines


def scaleout_table(results: dict[str, Any]) -> list[str]:
    """Redis commands per event and per request of `serve --workers N` (bench/scaleout.py)."""
    so = results.get("scaleout")
    if not so:
        return []
    lines = [
        f"**8. Scale-out cost** (`serve --workers {so['workers']}` on one Redis; commands naming the replicas' key prefix, "
        f"counted with MONITOR; idle: {so['idle_commands_per_second']} commands/s of polling and leases, subtracted)",
        "",
        "| phase | units | seconds | commands | per unit | round trips per unit | by command (per unit; lua: = inside a script) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in so["phases"]:
        by = ", ".join(f"{k} {v:g}" for k, v in sorted((p.get("per_unit_by_command") or {}).items(), key=lambda kv: -kv[1]))
        if p["units"] is None:
            by = ", ".join(f"{k} {v}" for k, v in sorted(p["commands"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {p['phase']} | {_n(p['units'])} | {p['seconds']} | {p['total']:,} | {_n(p.get('per_unit'), 2)} | {_n(p.get('round_trips_per_unit'), 2)} | {by} |")
    lines.append("")
    return lines


def soak_table(results: dict[str, Any]) -> list[str]:
    """The soak's windows and its three figures (bench/soak.py)."""
    s = results.get("soak")
    if not s or not s.get("windows"):
        return []
    workloads = list(s["p99_drift"])
    lines = [
        f"**9. Soak** ({s['seconds']:g} s at twice the demo's load: {s['event_rate']:g} plant changes/s, "
        f"{s['query_rate_per_workload']:g} req/s on each workload (open loop), {s['connected']:,} of {s['subscribers']:,} subscribers connected; "
        f"{s.get('latency_ms', '?')} ms per source call; "
        f"{s['window_s']:g}-second windows)",
        "",
        "| t | RSS | backlog | gateway cpu | " + " | ".join(f"{w} p50 / p99" for w in workloads) + " |",
        "| ---: | ---: | ---: | ---: |" + " ---: |" * len(workloads),
    ]
    for r in s["samples"]:
        cells = [f"{r[w]['p50_ms']:.0f} / {r[w]['p99_ms']:.0f} ms" for w in workloads]
        lines.append(f"| {r['t_s']:g} s | {r['rss_bytes'] / 2**20:.1f} MiB | {_n(r['backlog'], 0)} | {r['gateway_cpu']:.2f} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nRSS after warm-up {s['rss_warm_bytes'] / 2**20:.1f} MiB → end {s['rss_end_bytes'] / 2**20:.1f} MiB (**{s['rss_growth_pct']} %**); "
        f"backlog median first third {s['backlog_first']:g}, last third {s['backlog_last']:g}, max {s['backlog_max']:g}; p99 drift (last third / first third): "
        + ", ".join(f"{w} **{d}×** ({s['p99_first_ms'][w]:.0f} → {s['p99_last_ms'][w]:.0f} ms)" for w, d in s["p99_drift"].items())
        + f"; {sum(s['requests'].values()):,} requests, {s['errors']} errors; {s['messages']:,} messages to subscribers."
    )
    lines.append("")
    return lines


def markdown(results: dict[str, Any], *, profiles: bool = True) -> str:
    """The run's results as markdown tables (with the profile summaries unless told not to)."""
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    settings = meta.get("settings", {})
    lines = [
        f"### ordergraph benchmark — {meta.get('date', '?')} ({meta.get('size', '?')} run)",
        "",
        f"- machine: `{m.get('uname', '?')}`; {m.get('nproc', '?')} cores; {int(m.get('memory_bytes', 0)) / 2**30:.1f} GiB; Python {m.get('python', '?')}; Node {m.get('node') or 'n/a'}; {m.get('wrk') or 'no wrk'}",
        f"- load average at start / end: {meta.get('loadavg_start', '?')} / {meta.get('loadavg_end', '?')} (a shared machine: others' work shows here, ratios are measured side by side)",
        f"- plant: {settings.get('orders', '?')} orders, {settings.get('latency_ms', '?')} ms per source call; load generator: {meta.get('load_generator', '?')}; peer: {meta.get('peer', '?')}; auth: {meta.get('auth', '?')}",
        f"- ordergraph: {meta.get('ordergraph', 'one process')}",
        "",
    ]
    rows = results.get("upstream_calls") or []
    if rows:
        lines += [
            "**1. Upstream calls per query** (cold cache; `orders(first: N)`; erp/mes/wms/qms/tms = total)",
            "",
            "| orders | fields | ideal | ordergraph | peer |",
            "| ---: | --- | ---: | --- | --- |",
        ]
        for r in rows:
            lines.append(f"| {r['orders']} | {r['fields']} | {r['ideal']} | {_calls(r.get('ordergraph'))} | {_calls(r.get('peer'))} |")
        for name in ("ordergraph", "peer"):
            if all(name in r for r in rows):
                # Flat: never more calls than one per source and level, whatever the size.
                over = [r for r in rows if r[name]["total"] > r["ideal"]]
                verdict = "flat: never more than one call per source and level" if not over else (
                    "NOT flat: " + ", ".join(f"{r['orders']} orders ({r['fields']}) {r[name]['total']} calls" for r in over)
                )
                lines.append(f"\n{name}: {verdict}.")
        lines.append("")
    rows = results.get("latency") or []
    if rows:
        ideal = rows[0]["ideal_ms"]
        lines += [
            f"**2. Latency vs the critical path** (concurrency 1, cold cache, rounds alternating; ideal = 3 levels × {settings.get('latency_ms', '?')} ms = {ideal:g} ms)",
            "",
            "| query | ordergraph p50 | p99 | p50 / ideal | p99 / ideal | peer p50 | p99 | p50 / ideal | p99 / ideal |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            og, pe = r.get("ordergraph", {}), r.get("peer", {})
            lines.append(
                f"| {r['query']} | {_n(og.get('p50_ms'))} ms | {_n(og.get('p99_ms'))} ms | {_n(og.get('p50_ratio'), 2)} | {_n(og.get('p99_ratio'), 2)} "
                f"| {_n(pe.get('p50_ms'))} ms | {_n(pe.get('p99_ms'))} ms | {_n(pe.get('p50_ratio'), 2)} | {_n(pe.get('p99_ratio'), 2)} |"
            )
        lines.append("")
    rows = results.get("throughput") or []
    if rows:
        lines += [
            "**3. Throughput** (closed loop at a fixed number of connections c; ordergraph and the peer alternate in rounds; "
            "p50/p99 are medians over the rounds; cpu = cores used by the server under test)",
            "",
            "| workload | cache | c | ordergraph req/s | p50 | p99 | cpu | peer req/s | p50 | p99 | cpu | ordergraph / peer |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            og, pe = r.get("ordergraph", {}), r.get("peer", {})
            lines.append(
                f"| {r['workload']} | {r['cache']} | {r['concurrency']} | {_n(og.get('requests_per_second'))} | {_n(og.get('p50_ms'))} ms | {_n(og.get('p99_ms'))} ms | {_n(og.get('server_cpu'), 2)} "
                f"| {_n(pe.get('requests_per_second'))} | {_n(pe.get('p50_ms'))} ms | {_n(pe.get('p99_ms'))} ms | {_n(pe.get('server_cpu'), 2)} | **{_n(r.get('ratio'), 2)}×** |"
            )
        every = ("ordergraph", "peer", *_rivals(results))
        errors = sum(r.get(k, {}).get("errors", 0) for r in rows for k in every)
        lg = max((r.get(k, {}).get("loadgen_cpu", 0) for r in rows for k in every), default=0)
        plant = max((r.get(k, {}).get("plant_cpu", 0) for r in rows for k in every), default=0)
        lines.append(f"\nErrors (HTTP or GraphQL) over all runs: {errors}. Load generator used at most {lg:.2f} cores, the plant at most {plant:.2f}.")
        fresh = results.get("freshness") or {}
        drv = fresh.get("driver") or {}
        if drv:
            lines.append(
                f"Warm runs: the plant sent {drv.get('events_sent', 0):,} signed events ({drv.get('changes_per_second', 0)} changes/s, "
                f"{drv.get('duplicates', 0)} duplicates, {drv.get('reordered', 0)} reordered, {drv.get('notifications', 0)} notification-only)."
            )
        if fresh.get("probes"):
            lines.append(
                f"Freshness probe: {fresh['probes']} orders changed at the source during the warm runs; ordergraph served the new state "
                f"p50 {fresh.get('p50_ms')} ms / p99 {fresh.get('p99_ms')} ms / max {fresh.get('max_ms')} ms after the change "
                f"(emitter → 202 → invalidation); {fresh['never_fresh']} not within {fresh['timeout_s']:g} s."
                + (
                    f" Read right after the gateway's 202 for the change's events: {fresh['stale_after_ack']} of {fresh['probes']} served older data."
                    if "stale_after_ack" in fresh
                    else ""
                )
            )
        lines.append("")
        lines += cached_peer_table(results)
    rows = results.get("subscriptions") or []
    if rows:
        lines += [
            "**4. Subscriptions** (graphql-transport-ws, `orderChanges(customer)`, one subscription per connection; events injected as signed CloudEvents)",
            "",
            "| subscribers | client processes | connect | events (rate) | expected | delivered | equal | event→client p50 | p99 | max | memory / connection | gateway cpu |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lines.append(
                f"| {r['subscribers']:,} | {r['client_processes']} | {r['connect_seconds']} s | {r['events']} ({r['event_rate']:g}/s) | {r['expected']:,} | {r['delivered']:,} "
                f"| {'yes' if r['equal'] else '**no**'} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['max_ms']} ms | {r['bytes_per_connection'] / 1024:.1f} KiB | {r['gateway_cpu']:.2f} |"
            )
        older = sum(r.get("older_changes", 0) for r in rows)
        if older:
            lines.append(f"\nNot counted: {older:,} messages about changes older than the injection (source events the gateway was still applying).")
        lines.append("")
    rows = results.get("tracing") or []
    if rows:
        lines += [
            "**7. Tracing overhead** (two gateways side by side, identical but for `[telemetry] traces`; traced: every "
            "request sampled and exported over OTLP/HTTP to a sink; rounds alternating)",
            "",
            "| workload | cache | c | off req/s | p99 | on req/s | p99 | on / off | OTLP exports |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            off, on = r["off"], r["on"]
            lines.append(
                f"| {r['workload']} | {r['cache']} | {r['concurrency']} | {_n(off['requests_per_second'])} | {_n(off['p99_ms'])} ms "
                f"| {_n(on['requests_per_second'])} | {_n(on['p99_ms'])} ms | **{_n(r['ratio'], 3)}** | {r['exports']} |"
            )
        lines.append("")
    rows = results.get("ingestion") or []
    if rows:
        lines += [
            "**5. Event ingestion** (signed CloudEvents accepted with 202: validated, HMAC-checked, journaled in SQLite with synchronous=FULL)",
            "",
            "| events per request | concurrent senders | events/s accepted | requests | refused | errors | gateway cpu |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lines.append(f"| {r['batch']} | {r['concurrency']} | {_n(r['events_per_second'])} | {r['requests']:,} | {r['refused']} | {r['errors']} | {r['gateway_cpu']:.2f} |")
        lines.append("")
    rows = results.get("attack") or []
    if rows:
        lines += [
            "**6. Under attack** (warm caches; one hostile customer token sends new, expensive documents at its rate limit, "
            "50/s, while the normal workloads run anonymously; rounds alternate unloaded and attacked; p50/p99 are medians over the rounds)",
            "",
            "| workload | c | unloaded req/s | p50 | p99 | attacked req/s | p50 | p99 | p50 ratio | p99 ratio | document worker cpu | hostile requests: answers |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in rows:
            u, a, h = r["unloaded"], r["attacked"], r["hostile"]
            answers = ", ".join(f"{n:,} × {k}" for k, n in sorted(h["statuses"].items())) + (f", {h['errors']} failed" if h["errors"] else "")
            lines.append(
                f"| {r['workload']} | {r['concurrency']} | {_n(u['requests_per_second'])} | {_n(u['p50_ms'])} ms | {_n(u['p99_ms'])} ms "
                f"| {_n(a['requests_per_second'])} | {_n(a['p50_ms'])} ms | {_n(a['p99_ms'])} ms | **{r['p50_ratio']}×** | **{r['p99_ratio']}×** "
                f"| {_n(r.get('document_worker_cpu'), 3)} | {h['sent']:,} sent: {answers} |"
            )
        errors = sum(r[k]["errors"] for r in rows for k in ("unloaded", "attacked"))
        lines.append(f"\nErrors of the normal workloads (HTTP or GraphQL): {errors}.")
        lines.append("")
    lines += scaleout_table(results) + soak_table(results)
    tg = targets(results)
    if tg:
        lines += ["**Targets**", "", "| target | measured | status |", "| --- | --- | --- |"]
        lines += [f"| {t} | {m_} | {s} |" for t, m_, s in tg]
        lines.append("")
    for label, summary in (results.get("profiles") or {}).items() if profiles else ():
        lines += [f"**Profile: {label}** (py-spy, gateway process, unmeasured extra run)", "", summary]
    for note in results.get("notes") or []:
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def update_readme(path: Path, table: str) -> None:
    """Replace the results block of ``path`` with ``table``."""
    text = path.read_text()
    block = f"{README_START}\n{table}{README_END}"
    if README_START in text and README_END in text:
        text = re.sub(re.escape(README_START) + r".*?" + re.escape(README_END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    path.write_text(text)
