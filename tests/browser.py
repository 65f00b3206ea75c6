"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for browser tests.

Every request to anything but the gateway under test is aborted, as on a plant network
without internet. Screenshots go to ``tests/screenshots/`` (kept out of git; CI keeps them).
"""

from __future__ import annotations

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
