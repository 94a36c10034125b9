"""Headless Chromium (the system's /usr/bin/chromium, driven by Playwright) for the report and the review app."""

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
def open_page(url: str, width: int = 1280, height: int = 900, local: tuple[str, ...] = ("file:", "data:")) -> Iterator:
    """A loaded page of ``url``; ``page.errors`` lists console errors, page errors and
    failed requests (but those the page cancels itself). Every request to anywhere but
    ``local`` prefixes is blocked (offline) and listed there too."""
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
            page.on(  # (a request the page itself cancels, e.g. a prefetch when it reloads, is no failure)
                "requestfailed",
                lambda r: None if r.failure == "net::ERR_ABORTED" else page.errors.append(f"request failed: {r.url}"),
            )
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(local)
                    else (page.errors.append(f"network request: {route.request.url}"), route.abort())
                ),
            )
            page.goto(url, wait_until="load")
            yield page
        finally:
            browser.close()


def open_report(path: Path, width: int = 1280, height: int = 900) -> contextlib.AbstractContextManager:
    """A loaded page of the HTML file ``path``, offline (see :func:`open_page`)."""
    return open_page(Path(path).resolve().as_uri(), width, height)
