"""GraphiQL in a real browser with the internet blocked: assets, a query, a subscription."""

from __future__ import annotations

import asyncio

import pytest

from gateway.graphiql import assets_present

from .browser import browser_page, require_browser, screenshot
from .events_util import send_changes


@pytest.fixture(autouse=True)
def _needs_browser_and_assets():
    require_browser()
    if not assets_present():
        pytest.skip("GraphiQL assets missing: run `ordergraph assets` (.ci/run does)")


async def _result_text(page) -> str:
    return await page.locator(".result-window .CodeMirror").first.evaluate("el => el.CodeMirror.getValue()")


async def _wait_result(page, needle: str, timeout: float = 15.0) -> str:
    text = ""
    for _ in range(int(timeout / 0.1)):
        text = await _result_text(page)
        if needle in text:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{needle!r} not in GraphiQL's result: {text[:500]}")


async def test_graphiql_offline_query_and_subscription(gateway, gql, plant, http):
    url, _app = gateway
    data = await gql.query("{ orders(first: 1, filter: {stage: [PRODUCTION_RELEASED]}) { nodes { id } } }")
    so = data["orders"]["nodes"][0]["id"]
    async with browser_page(url) as (page, blocked):
        await page.goto(f"{url}/graphql", wait_until="networkidle")
        await page.wait_for_selector(".graphiql-container", timeout=15000)
        assert not blocked, f"GraphiQL tried to reach the internet: {blocked}"
        token = getattr(_app.state, "demo_token", "") or ""
        await page.fill("#token", token)
        await page.dispatch_event("#token", "change")
        await page.wait_for_selector(".graphiql-container", timeout=15000)

        # the first example tab: where is my order (its variable has a default)
        await page.click(".graphiql-execute-button")
        text = await _wait_result(page, '"stage"')
        assert '"10000001"' in text
        await screenshot(page, "graphiql-query")

        # a live subscription in a new tab of the same page
        await page.click(".graphiql-tab-add")
        await asyncio.sleep(0.3)
        await page.locator(".graphiql-query-editor .CodeMirror, .graphiql-editor .CodeMirror").first.evaluate(
            "(el, t) => el.CodeMirror.setValue(t)", "subscription { orderChanges { cursor eventType order { id stage } } }"
        )
        await asyncio.sleep(0.5)  # GraphiQL re-reads the operation after an edit
        await page.click(".graphiql-execute-button")
        await asyncio.sleep(1.0)  # let the WebSocket subscribe
        await send_changes(http, url, plant.world, plant.world.advance_order(so))
        text = await _wait_result(page, "orderChanges")
        assert so in text
        await screenshot(page, "graphiql-subscription")
        assert not blocked, f"GraphiQL tried to reach the internet: {blocked}"
