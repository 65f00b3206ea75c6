"""The customer portal and the exceptions board in a real browser, with real tokens."""

from __future__ import annotations

import pytest

from gateway.config import AuthConfig

from .browser import SECRET, browser_page, require_browser, screenshot, secured_gateway, token
from .browser import sign_in as _sign_in
from .browser import wait_for as _wait
from .events_util import send_changes
from .servers import running_gateway


@pytest.fixture(autouse=True)
def _needs_browser():
    require_browser()


@pytest.fixture
async def secured(plant):
    async with secured_gateway(plant) as (url, app):
        yield url, app


async def _orders_by_customer(url: str, http) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    async with http.post(
        f"{url}/graphql",
        json={"query": "{ orders(first: 500) { nodes { id customerId stage } } }"},
        headers={"Authorization": f"Bearer {token('service')}"},
    ) as resp:
        body = await resp.json()
    for node in body["data"]["orders"]["nodes"]:
        out.setdefault(node["customerId"], []).append(node["id"])
    return out


async def test_portal_shows_own_orders_and_updates_live(secured, plant, http):
    url, _app = secured
    by_customer = await _orders_by_customer(url, http)
    # customer A: one with an order that can still move; B: any other customer
    released = [
        so for so in plant.world.orders_in_state("RELEASED") if any(so in ids for ids in by_customer.values())
    ]
    so = released[0]
    a = next(c for c, ids in by_customer.items() if so in ids)
    b = next(c for c in by_customer if c != a)
    async with browser_page(url) as (page, blocked):
        await _sign_in(page, url, "portal", token("customer", a))
        await page.wait_for_selector(f'[data-order="{so}"]', timeout=15000)
        shown = set(await page.eval_on_selector_all("[data-order]", "els => els.map(e => e.dataset.order)"))
        assert shown == set(by_customer[a])
        assert not shown & set(by_customer[b])
        stage_before = await page.get_attribute(f'[data-order="{so}"] .stage', "data-stage")
        await _wait(lambda: page.evaluate("() => document.getElementById('status').textContent === 'live'"), what="live status")
        await screenshot(page, "portal")

        # the plant moves A's order; the page follows without a reload
        await page.evaluate("() => { window.__noReload = true; }")
        for _ in range(3):
            await send_changes(http, url, plant.world, plant.world.advance_order(so))

        async def stage_changed():
            stage = await page.get_attribute(f'[data-order="{so}"] .stage', "data-stage")
            return stage if stage != stage_before else None

        new_stage = await _wait(stage_changed, what="the order's new stage on the page")
        assert new_stage != stage_before
        assert await page.evaluate("() => window.__noReload === true")  # same document: no reload
        shown = set(await page.eval_on_selector_all("[data-order]", "els => els.map(e => e.dataset.order)"))
        assert not shown & set(by_customer[b])
        await screenshot(page, "portal-live")
        assert not blocked


async def test_board_shows_machine_down_and_drops_it_when_up(secured, plant, http):
    url, _app = secured
    # a work centre that is up and has open production on it
    pos = [p for p in plant.world.tables["A_ProductionOrder"].records() if p.status in ("RELEASED", "STARTED", "PARTIALLY_CONFIRMED")]
    up = {w.work_center for w in plant.world.tables["A_WorkCenter"].records() if w.state == "UP"}
    wc = next(p.work_center for p in pos if p.work_center in up)
    exception_id = f"MACHINE_DOWN:mes:{wc}"
    async with browser_page(url) as (page, blocked):
        await _sign_in(page, url, "board", token("service"))
        await page.wait_for_selector("tr.exception, td.empty", timeout=15000)
        await _wait(lambda: page.evaluate("() => document.getElementById('status').textContent === 'live'"), what="live status")
        assert await page.query_selector(f'tr[data-id="{exception_id}"]') is None

        await send_changes(http, url, plant.world, plant.world.work_center_down(wc, 8))
        await page.wait_for_selector(f'tr[data-id="{exception_id}"]', timeout=15000)
        await page.click(f'tr[data-id="{exception_id}"]')
        await page.wait_for_selector("#affected tbody tr", timeout=15000)
        affected = set(await page.eval_on_selector_all("#affected tbody tr", "els => els.map(e => e.dataset.order)"))
        assert affected
        await screenshot(page, "board")

        await send_changes(http, url, plant.world, plant.world.work_center_up(wc))
        await page.wait_for_selector(f'tr[data-id="{exception_id}"]', state="detached", timeout=15000)
        assert not blocked


async def test_portal_gives_the_orders_new_date_and_a_neutral_hold(secured, plant, http):
    url, _app = secured
    q = "{ orders(first: 300) { nodes { id customerId deliveryRisk predictedDeliveryDate exceptions { kind } } } }"
    async with http.post(f"{url}/graphql", json={"query": q}, headers={"Authorization": f"Bearer {token('service')}"}) as resp:
        nodes = (await resp.json())["data"]["orders"]["nodes"]
    late = next(o for o in nodes if o["deliveryRisk"] == "LATE" and o["predictedDeliveryDate"] and o["exceptions"])
    held = next(o for o in nodes if {"CREDIT_BLOCK", "DELIVERY_BLOCK"} & {x["kind"] for x in o["exceptions"]})
    async with browser_page(url) as (page, blocked):
        await _sign_in(page, url, "portal", token("customer", late["customerId"]))
        card = f'[data-order="{late["id"]}"]'
        await page.wait_for_selector(f"{card} .exceptions li", timeout=15000)
        texts = await page.eval_on_selector_all(f"{card} .exceptions li", "els => els.map(e => e.textContent)")
        assert all(f"We now expect to deliver on {late['predictedDeliveryDate']}." in t for t in texts), texts

        await _sign_in(page, url, "portal", token("customer", held["customerId"]))
        card = f'[data-order="{held["id"]}"]'
        await page.wait_for_selector(f"{card} .exceptions li", timeout=15000)
        assert await page.text_content(f"{card} .predicted") == "on hold, awaiting release"
        assert await page.query_selector(f"{card} .step.ON_HOLD") is not None
        assert "credit" not in (await page.text_content("main")).lower()
        await screenshot(page, "portal-hold")
        assert not blocked


async def test_portal_manages_own_notification_endpoints_and_notices_page_lists_them(plant, http):
    """A customer adds an email endpoint and a webhook in the portal, narrows what one gets,
    removes one; the internal /notices page lists notices and the demo's mailbox."""
    from gateway.outbox import Decision
    from gateway.smtp_sink import SmtpSink

    sink = await SmtpSink().start()
    auth = AuthConfig(mode="jwt", hs256_secret=SECRET)
    notices = {"smtp_host": "127.0.0.1", "smtp_port": sink.port, "debounce_seconds": 0.0, "allow_http_webhooks": True}
    try:
        async with running_gateway(
            plant.url, auth=auth, domain_clock=plant.world.now, notices=notices, mailbox=sink
        ) as (url, app):
            by_customer = await _orders_by_customer(url, http)
            a = sorted(by_customer)[0]
            engine = app.state.gateway.notices
            async with browser_page(url) as (page, blocked):
                await _sign_in(page, url, "portal", token("customer", a))
                await page.wait_for_selector("#notifications .row select")
                await page.select_option("#notifications select >> nth=0", "EMAIL")
                await page.fill("#notifications input[placeholder]", "orders@portal-test.example")
                await page.click("#notifications button:text('Add')")
                await page.wait_for_selector("#notifications .endpoint:has-text('orders@portal-test.example')")
                await page.select_option("#notifications select >> nth=0", "WEBHOOK")
                await page.fill("#notifications input[placeholder]", "http://127.0.0.1:9/hook")
                await page.click("#notifications button:text('Add')")
                await page.wait_for_selector("#notifications .message:has-text('whsec_')")
                stored = await engine.outbox.endpoints(a)
                assert sorted(e.channel for e in stored) == ["email", "webhook"]
                # Only delivered notices by email: untick the other kinds one by one.
                email_row = "#notifications .endpoint:has-text('orders@portal-test.example')"
                left = ["DELIVERY_DELAYED", "BACK_ON_TRACK", "SHIPPED", "DELIVERED"]
                for kind in ("DELIVERY_DELAYED", "BACK_ON_TRACK", "SHIPPED"):
                    await page.uncheck(f"{email_row} input[value={kind}]")
                    left.remove(kind)
                    # Saved, and the card drawn again from what was saved, before the next click.
                    await _wait(lambda: _has_kinds(engine, a, tuple(left)), what=f"kinds {left} saved")
                    # Every box as saved: a list read before the save must not be drawn over it.
                    await page.wait_for_function(
                        """([target, left]) => {
                            const row = [...document.querySelectorAll('#notifications .endpoint')].find((r) => r.textContent.includes(target));
                            const boxes = row ? [...row.querySelectorAll('input[type=checkbox]')] : [];
                            return boxes.length === 4 && boxes.every((b) => b.checked === left.includes(b.value)); }""",
                        arg=["orders@portal-test.example", left],
                        timeout=15000,
                    )
                assert await _kinds_of(engine, a, "email") == ("DELIVERED",)
                await page.click("#notifications .endpoint:has-text('127.0.0.1:9') button:text('Remove')")
                await page.wait_for_selector("#notifications .message:has-text('Removed')")
                assert [e.channel for e in await engine.outbox.endpoints(a)] == ["email"]

                # A DELIVERED notice goes to the email; the internal page shows it and the mail.
                so = by_customer[a][0]
                import time

                await engine.outbox.record(
                    [Decision(so, a, {"delivered": True}, [{"kind": "DELIVERED", "tracking": [["UPS", "1ZPORTAL"]]}], {"language": "de"})],
                    time.time(), 0.0, lambda old, new: old + new,
                )  # fmt: skip
                engine.wake()
                await _wait(lambda: _async_true(len(sink.messages) == 1), what="the email")
                await _sign_in(page, url, "notices", token("integrator"))
                await page.wait_for_selector(f"#rows tr:has-text('{so}')")
                await page.wait_for_selector("#mail details:has-text('orders@portal-test.example')")
                assert "1ZPORTAL" in sink.messages[0].body("plain")
                await screenshot(page, "notices")
                assert not blocked
    finally:
        await sink.close()


async def _kinds_of(engine, customer: str, channel: str):
    for e in await engine.outbox.endpoints(customer):
        if e.channel == channel and e.kinds:
            return e.kinds
    return None


async def _has_kinds(engine, customer: str, kinds: tuple) -> bool:
    return await _kinds_of(engine, customer, "email") == kinds


async def _async_true(value):
    return value
