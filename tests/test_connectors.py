"""Supplier API and web page connectors against local HTTP servers started by the tests."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from procurement import ingest
from procurement.auth import Principal
from procurement.data.connectors import (
    ApiSource,
    ConnectorError,
    WebProduct,
    WebSource,
    fetch_api,
    fetch_web,
    parse_price,
)
from procurement.db import catalog, open_session
from procurement.db.models import ImportRun, PriceObservation

SYSTEM = Principal.system()


class Server:
    """A local server whose responses the test scripts: path -> list of (status, body, delay)
    or (status, body, delay, headers); ``drip`` seconds between bytes sends the body slowly."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple]] = {}
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.drip = 0.0
        self.inflight = self.max_inflight = 0  # requests being answered at once, and the most
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                try:
                    self._answer()
                finally:
                    with outer._lock:
                        outer.inflight -= 1

            def _answer(self) -> None:
                outer.hits.append((self.path, dict(self.headers)))
                queue = outer.routes.get(self.path) or [(404, "not found", 0.0)]
                status, body, delay, *rest = queue.pop(0) if len(queue) > 1 else queue[0]
                time.sleep(delay)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (rest[0] if rest else {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    if outer.drip:
                        for b in data:
                            self.wfile.write(bytes([b]))
                            self.wfile.flush()
                            time.sleep(outer.drip)
                    else:
                        self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(autouse=True)
def local_servers_allowed(monkeypatch):
    """The tests' servers listen on 127.0.0.1: the operator's switch for private addresses on."""
    from procurement.config import get_settings

    monkeypatch.setenv("FETCH_ALLOW_PRIVATE_NETWORKS", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _page(items, nxt=None) -> str:
    return json.dumps({"items": items, "next": nxt})


def _api(server: Server, **kw) -> ApiSource:
    return ApiSource(
        name="acme-api", url=server.url + "/prices?page=1", min_interval_seconds=0, **kw
    )


def test_api_follows_pagination(server) -> None:
    server.routes["/prices?page=1"] = [
        (200, _page([{"sku": "A", "date": "2026-01-01", "price": 1.5}], "/prices?page=2"), 0)
    ]
    server.routes["/prices?page=2"] = [
        (200, _page([{"sku": "B", "date": "2026-01-01", "price": 2}]), 0)
    ]
    df = fetch_api(_api(server))
    assert df["sku"].tolist() == ["A", "B"] and df["price"].tolist() == [1.5, 2.0]


def test_api_retries_a_500_then_succeeds(server) -> None:
    server.routes["/prices?page=1"] = [
        (500, "oops", 0),
        (200, _page([{"sku": "A", "date": "2026-01-01", "price": 1}]), 0),
    ]
    assert len(fetch_api(_api(server))) == 1
    assert len([h for h in server.hits if h[0] == "/prices?page=1"]) == 2


def test_api_timeout_is_a_clear_error(server) -> None:
    server.routes["/prices?page=1"] = [(200, _page([]), 2.0)]
    with pytest.raises(ConnectorError, match="page 1"):
        fetch_api(_api(server, timeout_seconds=0.3, max_attempts=2))


def test_api_malformed_json_is_a_clear_error(server) -> None:
    server.routes["/prices?page=1"] = [(200, "{not json", 0)]
    with pytest.raises(ConnectorError, match="not valid JSON"):
        fetch_api(_api(server))


def test_api_sends_the_secret_header_from_the_environment(server, monkeypatch) -> None:
    monkeypatch.setenv("SUPPLIER_SECRET_ACME", "Bearer s3cret")
    server.routes["/prices?page=1"] = [
        (200, _page([{"sku": "A", "date": "2026-01-01", "price": 1}]), 0)
    ]
    fetch_api(_api(server, auth_header="Authorization", secret_env="SUPPLIER_SECRET_ACME"))
    assert server.hits[0][1]["Authorization"] == "Bearer s3cret"


def test_api_rate_limit_spaces_requests(server) -> None:
    server.routes["/prices?page=1"] = [
        (200, _page([{"sku": "A", "date": "2026-01-01", "price": 1}], "/prices?page=2"), 0)
    ]
    server.routes["/prices?page=2"] = [
        (200, _page([{"sku": "B", "date": "2026-01-01", "price": 1}]), 0)
    ]
    t = time.monotonic()
    fetch_api(ApiSource(name="x", url=server.url + "/prices?page=1", min_interval_seconds=0.4))
    assert time.monotonic() - t >= 0.4


def test_failed_api_source_stores_nothing_and_records_the_run(db, server) -> None:
    server.routes["/prices?page=1"] = [
        (200, _page([{"sku": "A", "date": "2026-01-01", "price": 1}], "/prices?page=2"), 0)
    ]
    server.routes["/prices?page=2"] = [(200, "{broken", 0)]
    with open_session(db) as s, s.begin():
        ten = catalog.get_or_create_tenant(s, "acme")
        ingest.add_source(
            s,
            ten.id,
            "acme-api",
            "api",
            {"url": server.url + "/prices?page=1", "min_interval_seconds": 0},
        )
    run = ingest.run_source(db, "acme", "acme-api", SYSTEM)
    assert run.status == "error" and "not valid JSON" in run.error
    with open_session(db) as s:
        assert s.scalar(select(func.count()).select_from(PriceObservation)) == 0
        assert s.scalar(select(func.count()).select_from(ImportRun)) == 1


PAGE = "<html><body><h1>Bolt</h1><span class='price'>R$ 1.234,56</span></body></html>"


def test_web_extracts_prices_respects_robots_and_records_failures(db, server) -> None:
    server.routes["/robots.txt"] = [(200, "User-agent: *\nDisallow: /private/\n", 0)]
    server.routes["/p/1"] = [(200, PAGE, 0)]
    server.routes["/private/2"] = [(200, PAGE, 0)]
    server.routes["/p/3"] = [(200, "<html>no price here</html>", 0)]
    config = {
        "products": [
            {"sku": "BOLT", "url": server.url + "/p/1", "selector": ".price"},
            {"sku": "SECRET", "url": server.url + "/private/2", "selector": ".price"},
            {"sku": "GONE", "url": server.url + "/p/3", "selector": ".price"},
        ],
        "min_interval_seconds": 0,
        "decimal_comma": True,
    }
    with open_session(db) as s, s.begin():
        ten = catalog.get_or_create_tenant(s, "acme")
        ingest.add_source(s, ten.id, "shop", "web", config)
    run = ingest.run_source(db, "acme", "shop", SYSTEM)
    assert run.status == "partial" and run.rows_added == 1 and run.rows_rejected == 2
    assert "SECRET: disallowed by robots.txt" in run.error and "GONE" in run.error
    assert "/private/2" not in [h[0] for h in server.hits]
    assert all("procurement-price-bot" in h[1]["User-Agent"] for h in server.hits)
    with open_session(db) as s:
        assert s.scalar(select(PriceObservation.price)) == pytest.approx(1234.56)


def test_web_source_needs_products() -> None:
    with pytest.raises(ValueError, match="at least one product"):
        ingest._web("x", {"products": []})


@pytest.mark.parametrize(
    ("text", "comma", "value"),
    [
        ("$1,234.56", False, 1234.56),
        ("R$ 1.234,56", True, 1234.56),
        ("12,5 €", True, 12.5),
        ("Price: 7", False, 7.0),
    ],
)
def test_parse_price_formats(text: str, comma: bool, value: float) -> None:
    assert parse_price(text, comma) == pytest.approx(value)


def test_web_unreachable_page_is_recorded_not_raised(server) -> None:
    src = WebSource(
        name="s",
        products=[WebProduct("A", server.url + "/missing", ".price")],
        min_interval_seconds=0,
    )
    res = fetch_web(src)
    assert res.prices.empty and res.failures[0][0] == "A"
