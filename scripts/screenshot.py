"""Screenshot app pages in headless Chromium (Debian's /usr/bin/chromium) with Playwright.

python scripts/screenshot.py http://localhost:8501/product?sku=SKU-00003 out.png [selector]
"""

from __future__ import annotations

import shutil
import sys

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _wait_idle(page, timeout_ms: int) -> None:  # type: ignore[no-untyped-def]
    """Wait until Streamlit has finished running the script (its status widget is gone)."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )


def screenshot(
    url: str,
    out: str,
    selector: str = "[data-testid='stMain']",
    timeout_ms: int = 60_000,
    login: tuple[str, str] | None = None,
) -> None:
    """Open ``url`` (logging in through the form first when ``login`` is given), wait for
    ``selector`` and for Streamlit to finish running, and save a full-page PNG."""
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # log in on the root page: other pages do not exist for a visitor who is not logged in
        page.goto(
            url.split("?")[0].rsplit("/", 1)[0] + "/" if login else url,
            wait_until="domcontentloaded",
        )
        if login:
            page.wait_for_selector("[data-testid='stForm']", timeout=timeout_ms)
            _wait_idle(page, timeout_ms)
            page.wait_for_timeout(1500)  # the first run re-renders the form once
            page.get_by_label("Username").fill(login[0])
            page.locator("input[aria-label=Password]").fill(login[1])
            page.get_by_role("button", name="Login").click()
            page.wait_for_selector("[data-testid='stSidebarNav']", timeout=timeout_ms)
            _wait_idle(page, timeout_ms)
            page.wait_for_timeout(
                2000
            )  # the login cookie is written by a component, asynchronously
            page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector(selector, timeout=timeout_ms)
        _wait_idle(page, timeout_ms)
        page.wait_for_timeout(1500)
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    # python scripts/screenshot.py URL OUT.png [SELECTOR] [USER PASSWORD]
    extra = sys.argv[3:]
    screenshot(
        sys.argv[1],
        sys.argv[2],
        extra[0] if extra else "[data-testid='stMain']",
        login=(extra[1], extra[2]) if len(extra) >= 3 else None,
    )
