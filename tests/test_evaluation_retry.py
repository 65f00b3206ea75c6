"""A pass over every order (start-up, sweeps) tries a failed page again instead of starting
the whole pass over: at 100,000 orders one source answer slower than its timeout cost a
minute of work. After a few failed attempts the pass still ends, as before."""

from __future__ import annotations

from sources.resilience import SourceError


def _failing(inner, times: int, calls: list[int]):
    """``inner``, raising a source timeout the first ``times`` calls (a source that has no
    last good answer to fall back on, as in the first pass)."""

    async def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= times:
            raise SourceError("erp", "SOURCE_TIMEOUT", "A_SalesOrder: no answer within 5s")
        return await inner(*args, **kwargs)

    return flaky


async def test_a_failed_page_is_tried_again_within_the_pass(gateway, monkeypatch):
    _url, app = gateway
    gw = app.state.gateway
    tracker = gw.exceptions
    tracker.retry_seconds = 0.01
    before = {r.id for r in tracker.open_exceptions()}
    passes = tracker.full_evaluations
    # a page's evaluation fails once, then the order listing fails once
    page_calls: list[int] = []
    monkeypatch.setattr(tracker, "_detect", _failing(tracker._detect, 1, page_calls))
    listing_calls: list[int] = []
    erp = gw.sources.erp
    monkeypatch.setattr(erp, "list_sales_orders", _failing(erp.list_sales_orders, 1, listing_calls))
    tracker.request_full()
    await tracker.settled(30)
    assert tracker.page_retries == 2
    assert tracker.full_evaluations == passes + 1  # one pass, not a second from the start
    assert {r.id for r in tracker.open_exceptions()} == before


async def test_a_page_that_keeps_failing_still_ends_the_pass(gateway, monkeypatch):
    _url, app = gateway
    gw = app.state.gateway
    tracker = gw.exceptions
    tracker.retry_seconds = 0.01
    calls: list[int] = []
    monkeypatch.setattr(tracker, "_detect", _failing(tracker._detect, tracker.page_attempts, calls))
    passes = tracker.full_evaluations
    tracker.request_full()
    await tracker.settled(30)
    # the page was tried page_attempts times, the pass ended, and the next pass finished
    assert tracker.page_retries == tracker.page_attempts - 1
    assert tracker.full_evaluations == passes + 2
