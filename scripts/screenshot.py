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


def screenshot(
    url: str, out: str, selector: str = "[data-testid='stMain']", timeout_ms: int = 60_000
) -> None:
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector(selector, timeout=timeout_ms)
        # let Streamlit finish running the script: the status widget disappears when idle
        page.wait_for_function(
            "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
        )
        page.wait_for_timeout(1500)
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    screenshot(sys.argv[1], sys.argv[2], *(sys.argv[3:4]))
