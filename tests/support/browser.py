"""Headless Chromium (the system's /usr/bin/chromium, driven by Playwright) for report tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def open_report(path: Path, width: int = 1280, height: int = 900) -> Iterator:
    """A loaded page of ``path``; ``page.errors`` lists console errors, page errors and
    failed requests. Every request that leaves the file system is blocked (offline)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors = []
            page.on(
                "console", lambda m: page.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None
            )
            page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: page.errors.append(f"request failed: {r.url}"))
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(("file:", "data:"))
                    else (page.errors.append(f"network request: {route.request.url}"), route.abort())
                ),
            )
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            yield page
        finally:
            browser.close()
