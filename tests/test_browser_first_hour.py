"""The pages a new user opens in the first hour, in a real browser (Playwright, headless
Debian Chromium) against the gateway under uvicorn and the simulated plant: GraphiQL's
links and tabs, the board's detail, the portal's words and its phone width, plant time."""

from __future__ import annotations

import urllib.parse

import pytest

from gateway.graphiql import assets_present

from .browser import browser_page, require_browser, screenshot, secured_gateway, token
from .browser import sign_in as _sign_in
from .browser import wait_for as _wait
from .events_util import send_changes


@pytest.fixture(autouse=True)
def _needs_browser():
    require_browser()


@pytest.fixture
async def secured(plant):
    async with secured_gateway(plant) as (url, app):
        yield url, app


async def _gql(http, url: str, query: str, tok: str) -> dict:
    async with http.post(f"{url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {tok}"}) as resp:
        body = await resp.json()
    assert "errors" not in body, body
    return body["data"]


# --- GraphiQL -----------------------------------------------------------------------------


async def _editor_text(page) -> str:
    return await page.locator(".graphiql-query-editor .CodeMirror").first.evaluate("el => el.CodeMirror.getValue()")


async def test_graphiql_opens_each_linked_query_and_has_an_order_changes_tab(secured):
    if not assets_present():
        pytest.skip("GraphiQL assets missing: run `ordergraph assets` (.ci/run does)")
    url, _app = secured
    first = "query First { plantTime }"
    second = "query Second { orders(first: 2) { nodes { id stage } } }"
    async with browser_page(url) as (page, blocked):
        await page.goto(f"{url}/graphql?query={urllib.parse.quote(first)}", wait_until="networkidle")
        await page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=15000)
        assert await _editor_text(page) == first
        titles = await page.eval_on_selector_all(".graphiql-tab", "els => els.map(e => e.textContent)")
        assert any("OrderChanges" in t for t in titles), titles
        # A second link in the same browser: GraphiQL has stored its tabs by now.
        await page.wait_for_function("() => Object.keys(localStorage).some(k => k.includes('tabState'))")
        await page.goto(f"{url}/graphql?query={urllib.parse.quote(second)}", wait_until="networkidle")
        await page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=15000)
        assert await _editor_text(page) == second
        # The tab that says how to authenticate a WebSocket shows connection_init's shape.
        await page.click(".graphiql-tab:has-text('OrderChanges')")
        assert '"connection_init", "payload": {"Authorization": "Bearer <token>"}' in await _editor_text(page)
        assert not blocked


# --- the exceptions board -------------------------------------------------------------------


async def test_board_detail_opens_in_view_and_shows_plant_time(secured, plant, http):
    url, _app = secured
    pos = [p for p in plant.world.tables["A_ProductionOrder"].records() if p.status in ("RELEASED", "STARTED", "PARTIALLY_CONFIRMED")]
    up = {w.work_center for w in plant.world.tables["A_WorkCenter"].records() if w.state == "UP"}
    wc = next(p.work_center for p in pos if p.work_center in up)
    exception_id = f"MACHINE_DOWN:mes:{wc}"
    async with browser_page(url) as (page, blocked):
        await page.set_viewport_size({"width": 1200, "height": 500})  # a short window: a long list
        await _sign_in(page, url, "board", token("service"))
        await send_changes(http, url, plant.world, plant.world.work_center_down(wc, 8))
        row = f'tr[data-id="{exception_id}"]'
        await page.wait_for_selector(row, timeout=15000)
        # Scroll to the end of the list, then open the one exception from there.
        await page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        await page.click(row)
        await page.wait_for_selector("#affected tbody tr", timeout=15000)
        top = await page.evaluate("() => document.getElementById('detail').getBoundingClientRect().top")
        height = await page.evaluate("() => window.innerHeight")
        assert 0 <= top < height, (top, height)
        clock = await page.text_content("#clock")
        assert clock.startswith("plant time "), clock
        await screenshot(page, "board-detail")
        await page.click("#detail .close")
        assert await page.is_hidden("#detail")
        assert not blocked


# --- the customer portal ------------------------------------------------------------------


async def test_portal_words_done_steps_single_texts_and_phone_width(secured, plant, http):
    url, _app = secured
    world = plant.world
    moving = sorted(world.orders_in_state("IN_TRANSIT"))
    so = moving[0]
    customer = world.get("A_SalesOrder", so).sold_to_party
    mine = await _gql(
        http, url,
        "{ orders(first: 200) { nodes { id milestones { kind status actual } exceptions { customerDescription }"
        " logistics { shipments { status } } } } }",
        token("customer", customer),
    )
    nodes = {o["id"]: o for o in mine["orders"]["nodes"]}
    assert so in nodes
    async with browser_page(url) as (page, blocked):
        await page.set_viewport_size({"width": 390, "height": 844})
        await _sign_in(page, url, "portal", token("customer", customer))
        card = f'[data-order="{so}"]'
        await page.wait_for_selector(f"{card} .tracking", timeout=15000)
        await _wait(lambda: page.evaluate("() => document.getElementById('status').textContent === 'live'"), what="live")
        # Carrier status in words: InTransit reads "in transit".
        tracking = await page.text_content(f"{card} .tracking")
        assert "in transit" in tracking and "intransit" not in tracking.lower(), tracking
        # A step the records say is done is never "planned".
        done = await page.eval_on_selector_all(".step.DONE", "els => els.map(e => e.textContent)")
        assert done and not [t for t in done if "planned" in t], done
        # Each exception text once per order, as many distinct texts as the API gave.
        for order_id, order in nodes.items():
            texts = await page.eval_on_selector_all(
                f'[data-order="{order_id}"] .exceptions li', "els => els.map(e => e.textContent)"
            )
            assert len(texts) == len(set(texts)) == len({x["customerDescription"] for x in order["exceptions"]})
        # At 390 px every card fits the screen: nothing cut off, no sideways scrolling.
        widths = await page.evaluate(
            "() => ({ page: document.documentElement.scrollWidth, view: window.innerWidth,"
            " right: Math.max(...[...document.querySelectorAll('.card')].map(c => c.getBoundingClientRect().right)) })"
        )
        assert widths["page"] <= widths["view"] and widths["right"] <= widths["view"], widths
        clock = await page.text_content("#clock")
        assert clock.startswith("plant time "), clock
        await screenshot(page, "portal-390")
        assert not blocked
