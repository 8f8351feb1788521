"""Many buyers at once, in real browsers: five browser contexts (five users with their own
cookies) use one `streamlit run` process at the same time; two app processes behind the proxy
keep each browser on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from conftest import PASSWORD, require_tool
from test_e2e import _free_port, app_url, need_chromium  # noqa: F401  (app_url is a fixture)

pytestmark = pytest.mark.e2e

# user, product: five sessions at once, each on its own product (other-buyer's company has the
# same SKUs, the admin sees the demo company first)
SESSIONS = [
    ("buyer", "SKU-00002"),
    ("viewer", "SKU-00003"),
    ("admin", "SKU-00004"),
    ("other-buyer", "SKU-00005"),
    ("buyer", "SKU-00006"),
]
COOKIE = "procurement_auth"
# The login cookie is written by a component whose files the browser loads from the app. Under
# load they arrive late; here they always do, by this much, so a cookie write that does not wait
# for the browser fails this test on any machine, not only on a busy one.
LATE_COMPONENT_S = 2.0
# how long a page may take to appear: the other test worker may be driving test_e2e.py's browser
# on the same 2 cores; a generous wait costs time only in a run that fails
TIMEOUT_MS = 120_000
IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
ERRORS = """() => [...document.querySelectorAll(
  '[data-testid="stException"], [data-testid="stAlertContentError"]')].map(e => e.innerText)"""


async def _shown(page, title: str, selector: str, problems: list[str], who: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until the page with ``title`` has finished running and shows ``selector``; note
    any exception or error box on it."""
    await page.wait_for_function(
        """([title, sel]) => !document.querySelector('[data-testid="stStatusWidget"]')
             && [...document.querySelectorAll('h1')].some(h => h.textContent.trim().startsWith(title))
             && (!!document.querySelector(sel) || !!document.querySelector(
                  '[data-testid="stException"], [data-testid="stAlertContentError"]'))""",
        arg=[title, selector],
        timeout=TIMEOUT_MS,
        polling=200,
    )
    await page.wait_for_timeout(500)
    await page.wait_for_function(IDLE, timeout=TIMEOUT_MS)
    problems += [f"{who} on {title}: {e.strip()[:200]}" for e in await page.evaluate(ERRORS)]


async def _has_cookie(context, wanted: bool = True) -> bool:  # type: ignore[no-untyped-def]
    """Whether the login cookie is there (``wanted``: gone) within 30 s."""
    for _ in range(120):
        if any(c["name"] == COOKIE for c in await context.cookies()) == wanted:
            return True
        await asyncio.sleep(0.25)
    return False


async def _after_reload(page) -> bool:  # type: ignore[no-untyped-def]
    """Reload; whether the page is signed in (else it shows the login form)."""
    await page.reload(wait_until="domcontentloaded")
    await page.wait_for_selector(
        "[data-testid='stSidebarNav'], [data-testid='stForm']", timeout=TIMEOUT_MS
    )
    await page.wait_for_function(IDLE, timeout=TIMEOUT_MS)
    return await page.locator("[data-testid='stForm']").count() == 0


async def _late(route) -> None:  # type: ignore[no-untyped-def]
    await asyncio.sleep(LATE_COMPONENT_S)
    await route.continue_()


async def _log_in(page, user: str, problems: list[str], who: str) -> None:  # type: ignore[no-untyped-def]
    """Fill the login form of a loaded page and wait for the Overview."""
    await page.wait_for_selector("[data-testid='stForm']", timeout=TIMEOUT_MS)
    await page.wait_for_function(IDLE, timeout=TIMEOUT_MS)
    await page.wait_for_timeout(500)  # the first run re-renders the form once
    await page.get_by_label("Username").fill(user)
    await page.locator("input[aria-label=Password]").fill(PASSWORD)
    await page.get_by_role("button", name="Login").click()
    await _shown(page, "Overview", "[data-testid='stDataFrame']", problems, who)


async def _one_user(browser, base: str, user: str, sku: str) -> list[str]:  # type: ignore[no-untyped-def]
    who = f"{user} ({sku})"
    problems: list[str] = []
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.route("**/component/extra_streamlit_components.CookieManager*/**", _late)
    page = await context.new_page()
    step = "login"
    try:
        await page.goto(base + "/", wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        await _log_in(page, user, problems, who)

        step = "waiting for the login cookie"
        if not await _has_cookie(context):
            return [*problems, f"{who}: no login cookie 30 s after the Overview rendered"]

        step = "Product"
        # a deep link is a new page load: it is signed in by the cookie alone
        await page.goto(f"{base}/product?sku={sku}", wait_until="domcontentloaded")
        await _shown(page, "Product", "[data-testid='stVegaLiteChart']", problems, who)
        chosen = await page.locator(
            "[data-testid='stMain'] [data-testid='stSelectbox']"
        ).first.evaluate(
            "e => e.innerText + ' ' + [...e.querySelectorAll('input')].map(i => i.value).join(' ')"
        )
        if sku not in chosen:
            problems.append(f"{who}: the Product page shows {chosen!r}")

        step = "Recommendations"
        await page.locator("[data-testid='stSidebarNav'] a", has_text="Recommendations").click()
        await _shown(page, "Recommendations", "[data-testid='stDataFrame']", problems, who)

        step = "reload"
        if not await _after_reload(page):
            return [*problems, f"{who}: asked to log in again after a reload"]
        problems += [
            f"{who} after the reload: {e.strip()[:200]}" for e in await page.evaluate(ERRORS)
        ]

        step = "logout"  # the cookie is deleted by the same component: that must stick too
        await page.get_by_role("button", name="Log out").click()
        await page.wait_for_selector("[data-testid='stForm']", timeout=TIMEOUT_MS)
        if not await _has_cookie(context, wanted=False):
            problems.append(f"{who}: the login cookie is still there 30 s after logging out")
        elif await _after_reload(page):
            problems.append(f"{who}: signed in again by a reload after logging out")
    except Exception as exc:  # a timeout: say which user and where, and let the others finish
        problems.append(f"{who} at {step}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        await context.close()
    return problems


async def _all_at_once(base: str, exe: str) -> list[list[str]]:
    from playwright.async_api import async_playwright
    from screenshot import CHROMIUM_ARGS  # scripts/, on the path through test_e2e

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(*(_one_user(browser, base, u, s) for u, s in SESSIONS))
        finally:
            await browser.close()


def test_five_users_at_once_see_their_pages_without_errors_and_stay_signed_in(app_url) -> None:  # noqa: F811
    """Each logs in, gets the login cookie, opens the Overview, a Product page (its own product,
    by a deep link signed in by the cookie) and Recommendations, and is still signed in after a
    reload: no exception and no error on any page. Then each logs out, and after a reload it
    sees the login form."""
    results = asyncio.run(_all_at_once(app_url, need_chromium()))
    problems = [p for r in results for p in r]
    assert not problems, "\n".join(problems)


def test_the_load_benchmarks_protocol_users_get_pages_only_with_a_valid_login_cookie(
    app_url,  # noqa: F811
) -> None:
    """``scripts/benchmark_load.py --mode hybrid`` loads the app with sessions over Streamlit's
    websocket protocol, signed in by the app's own login cookie: they get the pages a buyer
    gets (title, no error), in several sessions at once, and a forged cookie gets none."""
    import benchmark_load as bl  # scripts/, on the path through test_e2e

    port = int(app_url.rsplit(":", 1)[1])

    async def flow(user: str, sku: str) -> list[float]:
        u = bl.ProtocolUser(port, user)
        try:
            return [
                await u.open("", ""),
                await u.open("product", f"sku={sku}"),
                await u.goto("recommendations"),
            ]
        finally:
            await u.close()

    async def forged() -> str:
        u = bl.ProtocolUser(port, "buyer")
        u.cookie = bl.login_cookie("buyer")[:-4] + "AAAA"  # the signature no longer matches
        try:
            await u.open("product", "sku=SKU-00002")
        except RuntimeError as exc:
            return str(exc)
        finally:
            await u.close()
        return "signed in"

    async def both() -> tuple[list[list[float]], str]:
        times = await asyncio.gather(flow("buyer", "SKU-00007"), flow("viewer", "SKU-00008"))
        return times, await forged()

    times, refused = asyncio.run(both())
    assert all(len(t) == 3 and all(s > 0 for s in t) for t in times)
    assert refused == "Product: the page did not show its title"


@pytest.fixture
def replicas_url(app_env, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Two app processes behind nginx with the deployment's configuration (deploy/nginx), each
    response saying which replica answered."""
    import benchmark_load as bl  # scripts/, on the path through test_e2e

    need_chromium()
    nginx = bl.nginx_path() or require_tool("nginx", "nginx")
    env = {**app_env, "STREAMLIT_SERVER_COOKIE_SECRET": "test-only-" + "s" * 32}
    ports = [_free_port() for _ in range(3)]
    procs = []
    try:
        procs = [bl.start_app(tmp_path, p, env) for p in ports[1:]]
        procs.append(bl.start_proxy(nginx, tmp_path / "nginx", ports[0], ports[1:], reveal=True))
        yield f"http://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


async def _on_each_replica(base: str, exe: str) -> dict[str, list[str]]:
    """Browsers until each replica has one (at most 20); each logs in, uploads a price file on
    the Data page, reloads and downloads the recommendations. Returns per replica the replicas
    that answered its browser."""
    from playwright.async_api import async_playwright
    from screenshot import CHROMIUM_ARGS  # scripts/, on the path through test_e2e

    prices = "sku,date,price\nSKU-00001,2026-01-05,10.5\nSKU-00002,2026-01-05,11.25\n"
    seen: dict[str, list[str]] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            for _ in range(20):
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = await context.new_page()
                first = await page.goto(base + "/", wait_until="domcontentloaded")
                assert first is not None
                replica = first.headers["x-replica"]
                if replica in seen:
                    await context.close()
                    continue
                answered: list[str] = []
                page.on(
                    "response",
                    lambda r, a=answered: (
                        a.append(r.headers["x-replica"])  # type: ignore[misc]
                        if "x-replica" in r.headers
                        else None
                    ),
                )
                problems: list[str] = []
                await _log_in(page, "buyer", problems, replica)
                assert await _has_cookie(context)
                await page.goto(base + "/data", wait_until="domcontentloaded")
                await page.wait_for_selector("input[type=file]", state="attached")
                # the file goes to the replica of the session (a PUT to Streamlit's upload
                # endpoint, checked against its XSRF cookie): anywhere else it is refused
                await page.locator("input[type=file]").set_input_files(
                    files=[{"name": "p.csv", "mimeType": "text/csv", "buffer": prices.encode()}]
                )
                await page.wait_for_selector("text=valid rows for 2 products", timeout=TIMEOUT_MS)
                assert await _after_reload(page), f"{replica}: the reload asked to log in"
                # a download is a file the session's replica holds (Streamlit's media files)
                await page.goto(base + "/recommendations", wait_until="domcontentloaded")
                await _shown(
                    page, "Recommendations", "[data-testid='stDataFrame']", problems, replica
                )
                async with page.expect_download(timeout=TIMEOUT_MS) as download:
                    await page.get_by_role("button", name="Download CSV").click()
                saved = await (await download.value).path()
                assert saved.read_text().startswith("sku,"), saved.read_text()[:80]
                assert not problems, problems
                seen[replica] = answered
                await context.close()
                if len(seen) == 2:
                    break
        finally:
            await browser.close()
    return seen


def test_two_app_replicas_behind_the_proxy_keep_each_browser_on_its_own(replicas_url) -> None:
    """docker-compose runs the app as two replicas behind nginx: a browser's requests all go to
    the replica its first one reached, so its login, uploads, reloads and downloads work on
    either."""
    seen = asyncio.run(_on_each_replica(replicas_url, need_chromium()))
    assert len(seen) == 2, f"every browser went to {list(seen)}"
    for replica, answered in seen.items():
        assert answered and set(answered) == {replica}, (replica, set(answered))
