"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for browser tests.

Every request to anything but the gateway under test is aborted, as on a plant network
without internet. Screenshots go to ``tests/screenshots/`` (kept out of git; CI keeps them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("ORDERGRAPH_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "screenshots"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    """The browser to drive: ORDERGRAPH_CHROMIUM (default /usr/bin/chromium) when it exists,
    else a ``chromium`` on PATH (when ORDERGRAPH_CHROMIUM is not set)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return None if "ORDERGRAPH_CHROMIUM" in os.environ else shutil.which("chromium")


def require_browser() -> None:
    if _chromium() is None:
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (.ci/run installs it: apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")


@contextlib.asynccontextmanager
async def browser_page(allowed_base_url: str) -> AsyncIterator:
    """A fresh page whose network reaches only ``allowed_base_url``; yields (page, blocked)."""
    from playwright.async_api import async_playwright

    require_browser()
    allowed = urlparse(allowed_base_url).netloc
    blocked: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium(), args=FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})

            async def guard(route):  # type: ignore[no-untyped-def]
                netloc = urlparse(route.request.url).netloc
                if netloc == allowed or route.request.url.startswith(("data:", "blob:")):
                    await route.continue_()
                else:
                    blocked.append(route.request.url)
                    await route.abort()

            await context.route("**/*", guard)
            page = await context.new_page()
            yield page, blocked
        finally:
            await browser.close()


async def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path


# --- shared by the page tests -----------------------------------------------------------

SECRET = "browser-test-secret-of-at-least-32-bytes"  # the page tests' gateways sign with it


def token(role: str, customer: str | None = None, subject: str | None = None) -> str:
    """A token for the page tests' gateways (``SECRET``)."""
    from gateway.auth import mint_token

    return mint_token(SECRET, role=role, customer=customer, subject=subject)


@contextlib.asynccontextmanager
async def secured_gateway(plant, **kwargs):  # type: ignore[no-untyped-def]
    """The gateway under uvicorn in jwt mode (``SECRET``), on the plant's clock, with its
    exceptions evaluated once."""
    from gateway.config import AuthConfig

    from .servers import running_gateway

    auth = AuthConfig(mode="jwt", hs256_secret=SECRET)
    async with running_gateway(plant.url, auth=auth, domain_clock=plant.world.now, **kwargs) as (url, app):
        await app.state.gateway.exceptions.ready.wait()
        yield url, app


async def sign_in(page, url: str, path: str, tok: str) -> None:  # type: ignore[no-untyped-def]
    """Open a page and sign in with ``tok`` in its token field."""
    await page.goto(f"{url}/{path}", wait_until="networkidle")
    await page.fill("#token", tok)
    await page.click("#signin")


async def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll an async predicate until it is truthy (its value), or fail naming ``what``."""
    for _ in range(int(timeout / 0.1)):
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
