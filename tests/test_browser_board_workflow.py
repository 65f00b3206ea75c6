"""The exceptions board acting on an exception in a real browser (Playwright + Debian's
Chromium), with real tokens, against the gateway under uvicorn and the simulated plant."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.auth import mint_token
from gateway.config import AuthConfig

from .browser import browser_page, require_browser, screenshot
from .browser import wait_for as _wait
from .servers import running_gateway

SECRET = "board-workflow-secret-of-at-least-32-bytes"


@pytest.fixture(autouse=True)
def _needs_browser():
    require_browser()




async def test_board_acknowledges_takes_snoozes_and_resolves_an_exception(plant, http, tmp_path):
    auth = AuthConfig(mode="jwt", hs256_secret=SECRET)
    tok = mint_token(SECRET, role="service", subject="dana")
    async with running_gateway(plant.url, auth=auth, journal_path=str(tmp_path / "journal.sqlite")) as (url, app):
        gateway = app.state.gateway
        await gateway.exceptions.settled(60)
        async with browser_page(url) as (page, blocked):
            await page.goto(f"{url}/board", wait_until="networkidle")
            await page.fill("#token", tok)
            await page.click("#signin")
            await page.wait_for_selector("tr.exception", timeout=15000)
            await _wait(lambda: page.evaluate("() => document.getElementById('status').textContent === 'live'"), what="live")
            eid = await page.eval_on_selector("tr.exception", "e => e.dataset.id")
            row = f'tr[data-id="{eid}"]'
            assert await page.text_content(f"{row} td.ack") == "not yet"
            assert await page.text_content(f"{row} td.owner") == "—"
            assert (await page.text_content(f"{row} td.age")).endswith(("min", "d"))

            await page.click(row)
            await page.click("#do-ack")
            await page.wait_for_function(f"() => document.querySelector('{row} td.ack').textContent.startsWith('dana')")
            await page.click("#do-take")
            await page.wait_for_function(f"() => document.querySelector('{row} td.owner').textContent === 'dana'")
            await page.fill("#comment-text", "spare spindle ordered")
            await page.click("#do-comment")
            await page.wait_for_selector('#trail li[data-action="COMMENTED"]', timeout=15000)

            # Mine lists it; Unassigned does not.
            await page.click('#tabs button[data-tab="mine"]')
            await page.wait_for_function(f"() => document.querySelectorAll('tr.exception').length === 1 && !!document.querySelector('{row}')")
            await page.click('#tabs button[data-tab="unassigned"]')
            await page.wait_for_function(f"() => !document.querySelector('{row}')")

            # Snoozed: gone from Active, listed under Snoozed.
            await page.click('#tabs button[data-tab="mine"]')
            await page.wait_for_selector(row)
            await page.click(row)
            await page.wait_for_selector("#do-snooze")
            await page.click("#do-snooze")
            await page.wait_for_function(f"() => document.querySelector('{row}') && document.querySelector('{row}').dataset.status === 'SNOOZED'")
            await page.click('#tabs button[data-tab="active"]')
            await page.wait_for_function(f"() => document.querySelectorAll('tr.exception').length > 0 && !document.querySelector('{row}')")
            await page.click('#tabs button[data-tab="snoozed"]')
            await page.wait_for_selector(row)
            assert (await page.text_content(f"{row} td.ack")).startswith("snoozed until")
            await screenshot(page, "board-workflow")

            # Escalate the first affected order for 24 h: the exception counts one level higher.
            await page.click(row)
            await page.wait_for_selector("#affected tbody tr .do-escalate")
            order = await page.eval_on_selector("#affected tbody tr", "e => e.dataset.order")
            await page.fill("#escalate-reason", "line stop at the customer")
            await page.click(f'#affected tr[data-order="{order}"] .do-escalate')
            await page.wait_for_selector(f'#affected tr[data-order="{order}"] .do-withdraw', timeout=15000)
            escalation = (await gateway.workflow.escalations())[order]
            assert escalation.reason == "line stop at the customer" and escalation.escalated_by == "dana"
            assert dt.timedelta(hours=23) < escalation.expires_at - escalation.escalated_at <= dt.timedelta(hours=24)
            await screenshot(page, "board-workflow-detail")

            await page.fill("#resolve-reason", "spindle replaced")
            await page.click("#do-resolve")
            await page.wait_for_selector("#do-reopen", timeout=15000)
            assert not blocked

        # What the page did is what the store holds, in order, by the token's subject.
        trail = await gateway.workflow.trail(eid)
        assert [(e.action.value, e.actor) for e in trail] == [
            ("ACKNOWLEDGED", "dana"),
            ("ASSIGNED", "dana"),
            ("COMMENTED", "dana"),
            ("SNOOZED", "dana"),
            ("RESOLVED", "dana"),
        ]
        assert trail[-1].text == "spindle replaced"
