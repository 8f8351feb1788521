"""Many buyers at once: N concurrent sessions log in, open the Overview, a Product page (a
different product each, by a deep link), switch that page to another product in its selector
(as a buyer going through products does), open Recommendations, then reload and must still be
signed in.

    python scripts/benchmark_load.py [--users 1,5,10,20] [--mode browser|hybrid|apptest]
                                     [--think S] [--repeat K] [--dir DIR]

``browser`` (default): one `streamlit run` process and one headless Chromium (Debian's
/usr/bin/chromium through Playwright) with one browser context per user, all at once. Prints per
page the median and worst time, the errors (an exception or error box on a page, a page that did
not render, a login cookie that never arrived, a reload that asked to log in again), the app
process's peak RSS, and the CPU share of the machine used by the app beside the one used by the
browser (with its Playwright driver), so a reader can tell the app's cost from the client's;
and per page the mean time the app itself took to run it (its ``page_render`` timings, from the
start of the page's script to its end), which leaves out the browser and the network.

``--think S``: each user pauses before each step (and before logging in) for a random time
between 0.5 S and 1.5 S, as a buyer reads a page before the next click (Locust's
``between``). Without it (0, the default) every user clicks at the same instant: the worst
case, where N browsers render the same page at once on the same two cores. The pauses are not
part of any page's time.

``hybrid``: one Chromium user, the one timed, goes through the pages ``--repeat`` times (other
products each time) while N - 1 users load the same app over Streamlit's own websocket protocol,
without a browser: each opens the Overview, a Product page by its link, Recommendations in the
same session, and reloads it, again and again until the browser user is done. Their login is
the app's own login cookie, signed with the app's key. On this two-core machine N browsers
would share the app's cores with N renderers; a buyer's browser runs on the buyer's own
computer. So this times what one buyer sees while N - 1 others keep the app busy (the hybrid
load test of k6 and Locust: protocol users for the load, a browser for what a user sees). The
protocol users' own times (request to the end of the page's run) are printed too.

``apptest``: no browser and no server; N threads each run ``streamlit.testing`` AppTest
sessions of the same pages, in this process, against the same cached model and data (a quick
check of the app's own code under concurrency; login is set in the session state, no cookie).

The demo company (200 products x 730 days, trained, forecasts stored) is created in ``--dir`` the
first time (a few minutes) and reused afterwards. Each round uses products no earlier round
opened, so every Product page computes its product's view for the first time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # this checkout's procurement, screenshot.py
PAGES = ("overview", "product", "product switch", "recommendations", "reload")
COOKIE = "procurement_auth"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
FLUSH_WAIT = 11  # seconds: the app stores its latency timings every 10 s


# ---------------------------------------------------------------- data
def session(engine):  # type: ignore[no-untyped-def]
    from sqlalchemy.orm import Session

    return Session(engine, expire_on_commit=False)


def prepare(data_dir: Path, products: int, days: int, users: int) -> str:
    """Seed, train and store forecasts once; create the load users. Returns their password."""
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir}/app.db"
    os.environ["MODEL_DIR"] = f"{data_dir}/models"
    from procurement import auth, demo, retrain
    from procurement.config import get_settings
    from procurement.db import catalog, get_engine, migrate
    from procurement.forecast import store
    from procurement.training import train_global_lgbm_model

    get_settings.cache_clear()
    settings = get_settings()
    engine = get_engine()
    migrate(engine)
    if store.current_version(settings.model_dir, "demo") is None:
        t = time.perf_counter()
        with session(engine) as s, s.begin():
            demo.seed_synthetic(s, "demo", products, days)
        with session(engine) as s, s.begin():
            res = train_global_lgbm_model(s, "demo", settings)
        retrain.refresh_forecasts(engine, settings, "demo", res.version)  # as the sidecar does
        print(
            f"setup: {products} products x {days} days seeded and trained in "
            f"{time.perf_counter() - t:.0f} s",
            flush=True,
        )
    pw_file = data_dir / "load-password"
    if not pw_file.exists():
        pw_file.write_text(auth.new_password())
        pw_file.chmod(0o600)
    password = pw_file.read_text().strip()
    with session(engine) as s, s.begin():
        ten = catalog.get_tenant(s, "demo")
        have = {u.username for u in auth.list_users(s)}
        for i in range(1, users + 1):
            if f"load{i:02d}" not in have:
                auth.create_user(s, f"load{i:02d}", password, "buyer", ten.id)
    return password


# ---------------------------------------------------------------- process accounting (/proc)
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    return kids


def _tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK  # incl. children
    return total


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Meter:
    """Samples the app's RSS (peak) and the CPU used by the app and by the client processes."""

    def __init__(self, app_pids: list[int] | None) -> None:
        self.app_pids = app_pids
        self.peak_rss = 0.0
        self._stop = threading.Event()

    def _split(self) -> tuple[list[int], list[int]]:
        kids = _children()
        app = [q for p in self.app_pids for q in _tree(p, kids)] if self.app_pids else [os.getpid()]
        client = [p for p in _tree(os.getpid(), kids) if p not in app and p != os.getpid()]
        return app, client

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.peak_rss = max(self.peak_rss, _rss_mb(self._split()[0]))

    def __enter__(self) -> Meter:
        app, client = self._split()
        self.peak_rss = _rss_mb(app)
        self._t0 = time.monotonic()
        self._cpu0 = (_cpu_seconds(app), _cpu_seconds(client))
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        app, client = self._split()
        wall = (time.monotonic() - self._t0) * NCPU
        # processes that ended during the round (closed browser contexts) are not counted
        self.app_cpu = 100 * max(0.0, _cpu_seconds(app) - self._cpu0[0]) / wall
        self.client_cpu = 100 * max(0.0, _cpu_seconds(client) - self._cpu0[1]) / wall


# ---------------------------------------------------------------- results
@dataclass
class Round:
    users: int
    times: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PAGES})
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    peak_rss: float = 0.0
    app_cpu: float = 0.0
    client_cpu: float | None = None
    app_render: dict[str, float] = field(default_factory=dict)  # page title -> mean seconds


def render_totals() -> dict[str, tuple[float, float]]:
    """Per page title, the sum and count of the app's own ``page_render`` timings (the page's
    script inside the app process, after the login check; see ``monitoring.timed``), as far as
    the app has flushed them to the database (every 10 s)."""
    from procurement.db import get_engine
    from procurement.db import monitoring as mdb

    with session(get_engine()) as s:
        hist = mdb.latency(s)
    return {
        name.split("|", 1)[1]: (v.get("sum", 0.0), v.get("count", 0.0))
        for name, v in hist.items()
        if name.startswith("page_render|")
    }


def render_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    out = {}
    for page, (total, count) in after.items():
        t0, c0 = before.get(page, (0.0, 0.0))
        if count > c0:
            out[page] = (total - t0) / (count - c0)
    return out


def print_table(rounds: list[Round], client: str, cpu: bool = True) -> None:
    pages = [p for p in PAGES if any(r.times[p] for r in rounds)]
    head = f"{'users':>5} " + " ".join(f"{p + ' med/worst s':>24}" for p in pages)
    head += f" {'errors':>6}"
    if cpu:
        head += f" {'peak RSS MB':>11} {'app CPU':>8} {client + ' CPU':>12}"
    print(head)
    for r in rounds:
        cells = []
        for p in pages:
            v = r.times[p]
            cells.append(f"{statistics.median(v):>11.2f} / {max(v):>8.2f}" if v else f"{'-':>22}")
        line = f"{r.users:>5} " + " ".join(f"{c:>24}" for c in cells) + f" {len(r.errors):>6}"
        if cpu:
            client_cpu = f"{r.client_cpu:>11.0f}%" if r.client_cpu is not None else f"{'-':>12}"
            line += f" {r.peak_rss:>11.0f} {r.app_cpu:>7.0f}% {client_cpu}"
        print(line)
    titles = sorted({t for r in rounds for t in r.app_render})
    if titles and cpu:
        print("app-side page render, mean s (the app's own page_render timings):")
        print(f"{'users':>5} " + " ".join(f"{t:>16}" for t in titles))
        for r in rounds:
            print(
                f"{r.users:>5} "
                + " ".join(
                    f"{r.app_render[t]:>16.2f}" if t in r.app_render else f"{'-':>16}"
                    for t in titles
                )
            )
    for r in rounds:
        for e in r.errors:
            print(f"  N={r.users}: {e}")


# ---------------------------------------------------------------- browser mode
RENDERED = """([title, sel]) => {
  if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
  if (document.querySelector('[data-testid="stException"], [data-testid="stAlertContentError"]'))
    return true;  // an error counts as rendered; it is reported
  const h1 = document.querySelector('h1');
  return !!h1 && h1.textContent.trim().startsWith(title) && !!document.querySelector(sel);
}"""
ERRORS = """() => [...document.querySelectorAll(
  '[data-testid="stException"], [data-testid="stAlertContentError"]')].map(e => e.innerText)"""


async def _rendered(page, title: str, selector: str, timeout_ms: int) -> float:  # type: ignore[no-untyped-def]
    """Wait until the page shows ``title`` and ``selector`` and the script has finished; return
    the perf_counter() when it was first seen so. Raises on an error on the page or a timeout."""
    await page.wait_for_function(RENDERED, arg=[title, selector], timeout=timeout_ms, polling=100)
    seen = time.perf_counter()
    await page.wait_for_timeout(300)  # still idle (no rerun right after)?
    await page.wait_for_function(RENDERED, arg=[title, selector], timeout=timeout_ms, polling=100)
    errs = await page.evaluate(ERRORS)
    if errs:
        raise RuntimeError(f"{title}: " + " | ".join(e.strip().splitlines()[0] for e in errs))
    return seen


async def login(page, base: str, user: str, password: str, timeout_ms: int) -> float:  # type: ignore[no-untyped-def]
    """Log in through the form; returns the seconds from the click to the rendered Overview."""
    await page.goto(base + "/", wait_until="domcontentloaded", timeout=timeout_ms)
    await page.wait_for_selector("[data-testid='stForm']", timeout=timeout_ms)
    await page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )
    await page.wait_for_timeout(1000)  # the first run re-renders the form once
    await page.get_by_label("Username").fill(user, timeout=timeout_ms)
    await page.locator("input[aria-label=Password]").fill(password, timeout=timeout_ms)
    t = time.perf_counter()
    await page.get_by_role("button", name="Login").click(timeout=timeout_ms)
    await page.wait_for_selector("[data-testid='stSidebarNav']", timeout=timeout_ms)
    return await _rendered(page, "Overview", "[data-testid='stDataFrame']", timeout_ms) - t


def failure(user: str, step: str, exc: Exception) -> str:
    """One line for the error list: who, at which step, what."""
    lines = str(exc).strip().splitlines()
    return f"{user} at {step}: {type(exc).__name__}: {lines[0][:160] if lines else ''}"


async def has_cookie(context, within_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while True:
        if any(c["name"] == COOKIE for c in await context.cookies()):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.25)


async def signed_in_after_reload(page, timeout_ms: int) -> bool:  # type: ignore[no-untyped-def]
    await page.reload(wait_until="domcontentloaded", timeout=timeout_ms)
    await page.wait_for_selector(
        "[data-testid='stSidebarNav'], [data-testid='stForm']", timeout=timeout_ms
    )
    await page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )
    return await page.locator("[data-testid='stForm']").count() == 0


@dataclass
class Think:
    """A user's pause before each step: uniform in [0.5, 1.5] x ``seconds`` (0: no pause)."""

    seconds: float
    seed: int

    def __post_init__(self) -> None:
        import random

        self.rng = random.Random(self.seed)

    async def pause(self) -> None:
        if self.seconds > 0:
            await asyncio.sleep(self.seconds * self.rng.uniform(0.5, 1.5))


async def one_user(
    browser,
    base: str,
    user: str,
    password: str,
    sku: str,
    other: str,
    r: Round,  # type: ignore[no-untyped-def]
    timeout_ms: int,
    think: Think,
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    step = "login"
    try:
        await think.pause()
        r.times["overview"].append(await login(page, base, user, password, timeout_ms))
        step = "cookie"
        if not await has_cookie(context, 30):
            r.errors.append(f"{user}: no login cookie 30 s after the Overview rendered")
            return
        step = "product"
        await think.pause()
        t = time.perf_counter()
        await page.goto(
            f"{base}/product?sku={sku}", wait_until="domcontentloaded", timeout=timeout_ms
        )
        seen = await _rendered(page, "Product", "[data-testid='stVegaLiteChart']", timeout_ms)
        r.times["product"].append(seen - t)
        step = "product switch"
        await think.pause()
        # the page's own selector: a rerun of the page in the loaded app, not a new page load
        box = page.locator("input[aria-label=Product]")
        await box.click(timeout=timeout_ms)
        await page.keyboard.type(other)
        t = time.perf_counter()
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"**sku={other}", timeout=timeout_ms)
        seen = await _rendered(page, "Product", "[data-testid='stVegaLiteChart']", timeout_ms)
        r.times["product switch"].append(seen - t)
        step = "recommendations"
        await think.pause()
        t = time.perf_counter()
        await page.locator("[data-testid='stSidebarNav'] a", has_text="Recommendations").click(
            timeout=timeout_ms
        )
        seen = await _rendered(page, "Recommendations", "[data-testid='stDataFrame']", timeout_ms)
        r.times["recommendations"].append(seen - t)
        step = "reload"
        await think.pause()
        t = time.perf_counter()
        if not await signed_in_after_reload(page, timeout_ms):
            r.errors.append(f"{user}: asked to log in again after a reload")
            return
        seen = await _rendered(page, "Recommendations", "[data-testid='stDataFrame']", timeout_ms)
        r.times["reload"].append(seen - t)
    except Exception as exc:  # reported, the other users go on
        r.errors.append(failure(user, step, exc))
    finally:
        await context.close()


async def browser_round(
    base: str,
    n: int,
    password: str,
    first_sku: int,
    app_pids: list[int],
    timeout_ms: int,
    products: int,
    think: float = 0.0,
) -> Round:
    from playwright.async_api import async_playwright
    from screenshot import CHROMIUM_ARGS, chromium_path

    r = Round(n)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        with Meter(app_pids) as m:
            t = time.perf_counter()
            await asyncio.gather(
                *(
                    one_user(
                        browser,
                        base,
                        f"load{i + 1:02d}",
                        password,
                        f"SKU-{first_sku + i:05d}",
                        # and one from the catalog's other half, that no round opens first
                        f"SKU-{(first_sku + i - 1 + products // 2) % products + 1:05d}",
                        r,
                        timeout_ms,
                        Think(think, seed=first_sku + i),
                    )
                    for i in range(n)
                )
            )
            r.wall = time.perf_counter() - t
        await browser.close()
    r.peak_rss, r.app_cpu, r.client_cpu = m.peak_rss, m.app_cpu, m.client_cpu
    return r


# ---------------------------------------------------------------- hybrid mode
TITLES = {"": "Overview", "product": "Product", "recommendations": "Recommendations"}


def login_cookie(user: str) -> str:
    """The app's login cookie for ``user``, as its login would write it (signed with its key)."""
    import jwt

    from procurement import auth
    from procurement.config import get_settings

    exp = time.time() + 3600
    return jwt.encode({"username": user, "exp_date": exp}, auth.cookie_key(get_settings()), "HS256")


class ProtocolUser:
    """A buyer's session over Streamlit's websocket protocol, without a browser: it asks for a
    page as the browser's frontend does (a ``rerun_script`` message) and reads the app's answer
    until the page's run has finished."""

    def __init__(self, port: int, user: str) -> None:
        self.url = f"ws://127.0.0.1:{port}/_stcore/stream"
        self.origin = f"http://127.0.0.1:{port}"
        self.user, self.cookie = user, login_cookie(user)
        self.ws: Any = None

    async def open(self, page: str, query: str = "") -> float:
        """A new session (a page load or a reload) on ``page``; returns the seconds to its end."""
        import websockets

        await self.close()
        t = time.perf_counter()
        self.ws = await websockets.connect(
            self.url,
            subprotocols=["streamlit"],  # type: ignore[list-item]  # a str subtype, in typing
            additional_headers={"Cookie": f"{COOKIE}={self.cookie}", "Origin": self.origin},
            max_size=None,
        )
        return await self._run(page, query, t)

    async def goto(self, page: str, query: str = "") -> float:
        """Another page in the same session (a click in the sidebar)."""
        return await self._run(page, query, time.perf_counter())

    async def _run(self, page: str, query: str, t: float) -> float:
        from streamlit.proto.Alert_pb2 import Alert
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        assert self.ws is not None
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = page
        msg.rerun_script.context_info.timezone = "UTC"
        await self.ws.send(msg.SerializeToString())
        titled, errors = False, []
        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(await self.ws.recv())
            kind = fwd.WhichOneof("type")
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                el = fwd.delta.new_element
                what = el.WhichOneof("type")
                if what == "heading" and el.heading.body == TITLES[page]:
                    titled = True
                elif what == "exception":
                    errors.append(el.exception.message)
                elif what == "alert" and el.alert.format == Alert.ERROR:
                    errors.append(el.alert.body)
            elif kind == "script_finished":
                if fwd.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                    break
                if fwd.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                    errors.append("the page did not compile")
                    break
        took = time.perf_counter() - t
        if errors:
            first = (errors[0].strip().splitlines() or ["(no message)"])[0]
            raise RuntimeError(f"{TITLES[page]}: {first[:120]}")
        if not titled:
            raise RuntimeError(f"{TITLES[page]}: the page did not show its title")
        return took

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None


async def protocol_user(
    port: int, user: str, skus: list[str], r: Round, think: Think, done: asyncio.Event
) -> None:
    """Goes through the pages, again and again, until ``done``."""
    u, step, i = ProtocolUser(port, user), "overview", 0
    try:
        while not done.is_set():
            sku = skus[i % len(skus)]
            i += 1
            for step, page, query, new in (
                ("overview", "", "", True),
                ("product", "product", f"sku={sku}", True),
                ("recommendations", "recommendations", "", False),
                ("reload", "recommendations", "", True),
            ):
                await think.pause()
                if done.is_set():
                    return
                took = await (u.open(page, query) if new else u.goto(page, query))
                r.times[step].append(took)
    except Exception as exc:  # reported, the other users go on
        r.errors.append(failure(user, step, exc))
    finally:
        await u.close()


async def hybrid_round(
    base: str,
    port: int,
    n: int,
    password: str,
    first_sku: int,
    app_pids: list[int],
    timeout_ms: int,
    products: int,
    think: float,
    repeat: int,
) -> tuple[Round, Round]:
    """One browser user goes through its pages ``repeat`` times while ``n - 1`` protocol users
    load the app. Returns the browser user's round and the protocol users' round."""
    from playwright.async_api import async_playwright
    from screenshot import CHROMIUM_ARGS, chromium_path

    r, load = Round(n), Round(n)
    done = asyncio.Event()
    # the protocol users look at the catalog's other half: the browser's products stay unseen
    half = products // 2
    others = [f"SKU-{half + 1 + (k % (products - half)):05d}" for k in range(products)]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        with Meter(app_pids) as m:
            t = time.perf_counter()
            loaders = [
                asyncio.create_task(
                    protocol_user(
                        port,
                        f"load{i + 2:02d}",
                        others[(first_sku + 7 * i) % len(others) :] + others,
                        load,
                        Think(think, seed=1000 + first_sku + i),
                        done,
                    )
                )
                for i in range(n - 1)
            ]
            try:
                for k in range(repeat):
                    await one_user(
                        browser,
                        base,
                        "load01",
                        password,
                        f"SKU-{first_sku + 2 * k:05d}",
                        f"SKU-{first_sku + 2 * k + 1:05d}",
                        r,
                        timeout_ms,
                        Think(think, seed=first_sku + k),
                    )
            finally:
                done.set()
                await asyncio.gather(*loaders)
            r.wall = time.perf_counter() - t
        await browser.close()
    r.peak_rss, r.app_cpu, r.client_cpu = m.peak_rss, m.app_cpu, m.client_cpu
    return r, load


def start_app(data_dir: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{data_dir}/app.db",
        "MODEL_DIR": f"{data_dir}/models",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_healthy(proc, port)
    return proc


def _wait_healthy(proc: subprocess.Popen, port: int) -> None:
    import urllib.request

    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"nothing healthy on port {port}")


NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "templates" / "default.conf.template"


def nginx_conf(listen: str, servers: list[str], prefix: Path, reveal: bool = False) -> str:
    """The deployment's proxy configuration (``deploy/nginx``) for processes on this machine,
    in a main configuration that keeps nginx's files under ``prefix``. ``reveal``: every
    response says which replica answered (``X-Replica``; for tests, not in the deployment)."""
    http = (
        NGINX_TEMPLATE.read_text()
        .replace("${APP_SERVERS}", " ".join(f"server {s};" for s in servers))
        .replace("${LISTEN}", listen)
    )
    if reveal:
        cookie = "        add_header Set-Cookie"
        http = http.replace(
            cookie, "        add_header X-Replica $upstream_addr always;\n" + cookie
        )
    temp = "\n".join(
        f"    {k}_temp_path {prefix / k};"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        f"events {{ worker_connections 4096; }}\n"
        f"http {{\n    access_log off;\n{temp}\n{http}\n}}\n"
    )


def nginx_path() -> str | None:
    """Debian's nginx (in /usr/sbin, which a user's PATH may not hold), or None."""
    import shutil

    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if Path(found).exists() else None


def start_proxy(
    nginx: str, prefix: Path, port: int, app_ports: list[int], reveal: bool = False
) -> subprocess.Popen:
    """nginx on ``port`` in front of the app processes on ``app_ports`` (``nginx_conf``), its
    files and error log under ``prefix``."""
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    servers = [f"127.0.0.1:{p}" for p in app_ports]
    conf.write_text(nginx_conf(f"127.0.0.1:{port}", servers, prefix, reveal))
    proxy = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_healthy(proxy, port)
    return proxy


def start_replicas(data_dir: Path, port: int, replicas: int) -> list[subprocess.Popen]:
    """One app process on ``port``, or ``replicas`` of them behind nginx on ``port`` (the proxy
    is the list's last process)."""
    if replicas <= 1:
        return [start_app(data_dir, port)]
    import secrets

    nginx = nginx_path()
    if nginx is None:
        sys.exit("nginx is not installed (apt-get install -y nginx)")
    # one secret for Streamlit's XSRF cookie in every replica, as in docker-compose.yml
    env = {"STREAMLIT_SERVER_COOKIE_SECRET": secrets.token_urlsafe(32)}
    ports = [port + 1 + i for i in range(replicas)]
    procs = [start_app(data_dir, p, env) for p in ports]
    return [*procs, start_proxy(nginx, data_dir / "nginx", port, ports)]


def run_browser(
    args: argparse.Namespace, data_dir: Path, password: str, loads: list[Round] | None = None
) -> list[Round]:
    """The browser or hybrid rounds; in hybrid mode the protocol users' rounds go to ``loads``."""
    from screenshot import chromium_path

    if chromium_path() is None:
        sys.exit("chromium is not installed (apt-get install -y chromium)")
    procs = start_replicas(data_dir, args.port, args.replicas)
    pids = [p.pid for p in procs]
    base = f"http://127.0.0.1:{args.port}"
    timeout_ms = int(args.timeout * 1000)
    rounds = []
    try:
        # warm-up: the first user loads the model and the company's advice into the caches
        warm = asyncio.run(
            browser_round(base, 1, password, args.products, pids, timeout_ms, args.products)
        )
        print(
            f"warm-up (model load, first advice): {warm.wall:.1f} s, errors: {warm.errors}",
            flush=True,
        )
        sku = 1
        for n in args.users:
            time.sleep(FLUSH_WAIT)  # the warm-up's or last round's timings are stored
            before = render_totals()
            if loads is None:
                r = asyncio.run(
                    browser_round(
                        base, n, password, sku, pids, timeout_ms, args.products, args.think
                    )
                )
                sku += n
            else:
                r, load = asyncio.run(
                    hybrid_round(
                        base,
                        args.port,
                        n,
                        password,
                        sku,
                        pids,
                        timeout_ms,
                        args.products,
                        args.think,
                        args.repeat,
                    )
                )
                loads.append(load)
                sku += 2 * args.repeat
            time.sleep(FLUSH_WAIT)
            r.app_render = render_means(before, render_totals())
            rounds.append(r)
            extra = f", protocol users: {len(loads[-1].errors)} errors" if loads else ""
            print(f"N={n}: {r.wall:.1f} s, {len(r.errors)} errors{extra}", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rounds


# ---------------------------------------------------------------- apptest mode
def run_apptest(args: argparse.Namespace, data_dir: Path) -> list[Round]:
    import streamlit.logger
    from streamlit.testing.v1 import AppTest

    # AppTest in threads: Streamlit warns on every call that there is no browser session
    streamlit.logger.set_log_level("error")

    from procurement import auth
    from procurement.db import catalog, get_engine

    with session(get_engine()) as s:
        tenant_id = catalog.get_tenant(s, "demo").id
    app = str(ROOT / "streamlit_app.py")

    # AppTest is not made for threads: at 20 it can tear down its runtime or session state under
    # another thread's run. Such errors come from the test harness, not from the app.
    HARNESS = ("Runtime hasn't been created", "$$ID-", "$$STREAMLIT_INTERNAL_KEY")

    def user_flow(i: int, sku: str, r: Round) -> None:
        user = f"load{i + 1:02d}"
        step = "overview"
        try:
            at = AppTest.from_file(app, default_timeout=600)
            at.session_state["authentication_status"] = True
            at.session_state["username"] = user
            at.session_state["name"] = user
            at.session_state["principal"] = auth.Principal(user, "buyer", tenant_id)
            for step, page in (
                ("overview", None),
                ("product", "pages/product.py"),
                ("recommendations", "pages/recommendations.py"),
            ):
                if page:
                    at.switch_page(page)
                if step == "product":
                    at.query_params["sku"] = sku
                t = time.perf_counter()
                at.run()
                took = time.perf_counter() - t
                if at.exception or at.error:
                    msgs = [e.message for e in at.exception] + [e.value for e in at.error]
                    raise RuntimeError(str(msgs[0]))
                if not any(t.value == step.capitalize() for t in at.title):
                    r.errors.append(f"{user} at {step}: the page did not render its title")
                    return
                r.times[step].append(took)
        except Exception as exc:
            msg = f"{type(exc).__name__}: {str(exc)[:160]}"
            if any(h in msg for h in HARNESS):
                msg = "AppTest harness, not the app: " + msg
            r.errors.append(f"{user} at {step}: {msg}")

    def one_round(n: int, first_sku: int) -> Round:
        r = Round(n)
        threads = [
            threading.Thread(target=user_flow, args=(i, f"SKU-{first_sku + i:05d}", r))
            for i in range(n)
        ]
        with Meter(None) as m:
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            r.wall = time.perf_counter() - t
        r.peak_rss, r.app_cpu = m.peak_rss, m.app_cpu
        return r

    warm = one_round(1, args.products)
    print(
        f"warm-up (model load, first advice): {warm.wall:.1f} s, errors: {warm.errors}", flush=True
    )
    rounds, sku = [], 1
    for n in args.users:
        rounds.append(one_round(n, sku))
        sku += n
        print(f"N={n}: {rounds[-1].wall:.1f} s, {len(rounds[-1].errors)} errors", flush=True)
    return rounds


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--users", default="1,5,10,20", type=lambda s: [int(x) for x in s.split(",") if x.strip()]
    )
    p.add_argument("--mode", choices=["browser", "hybrid", "apptest"], default="browser")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="hybrid mode: times the browser user goes through the pages in a round",
    )
    p.add_argument(
        "--dir",
        default=str(Path(tempfile.gettempdir()) / "procurement-load"),
        help="seeded database and model, created once and reused",
    )
    p.add_argument("--products", type=int, default=200)
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--port", type=int, default=8599)
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="app processes behind nginx (deploy/nginx) on --port, each on the next port",
    )
    p.add_argument("--timeout", type=float, default=180, help="seconds a page may take")
    p.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean seconds a user pauses before each step (browser and hybrid modes; 0: none)",
    )
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the app server on a kill too
    if args.mode == "hybrid" and 4 * args.repeat * len(args.users) + 2 > args.products:
        p.error("the browser user needs new products in every round: use more --products")
    if args.mode != "hybrid" and 2 * sum(args.users) + 2 > args.products:
        p.error("every user of every round needs its own product: use more --products")
    data_dir = Path(args.dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    password = prepare(data_dir, args.products, args.days, max(args.users))
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[:3]} on {NCPU} cores", flush=True)
    if args.mode in ("browser", "hybrid"):
        print(
            f"think time: {args.think:g} s on average before each step"
            if args.think
            else "think time: none, every user clicks at the same instant",
            flush=True,
        )
    loads: list[Round] | None = [] if args.mode == "hybrid" else None
    if args.mode in ("browser", "hybrid"):
        rounds = run_browser(args, data_dir, password, loads)
    else:
        rounds = run_apptest(args, data_dir)
    with open("/proc/loadavg") as f:
        print(f"load average after: {f.read().split()[:3]}", flush=True)
    if loads is not None:
        print(f"the browser user ({args.repeat} times through the pages) while N - 1 others load:")
    print_table(rounds, "-" if args.mode == "apptest" else "browser")
    if loads:
        print("the N - 1 protocol users (request to the end of the page's run, no browser):")
        print_table(loads[1:] if loads[0].users == 1 else loads, "-", cpu=False)
    return 1 if any(r.errors for r in rounds + (loads or [])) else 0


if __name__ == "__main__":
    sys.exit(main())
