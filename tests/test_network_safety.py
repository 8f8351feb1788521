"""Data sources cannot be turned against the network or the secrets: each test's servers run on
127.0.0.1 with the operator's private-address switch on, except where the switch is the test."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from test_connectors import Server

from procurement import ingest
from procurement.auth import Principal
from procurement.data.connectors import (
    ApiSource,
    ConnectorError,
    FetchLimits,
    WebProduct,
    WebSource,
    fetch_api,
    fetch_web,
    make_client,
)
from procurement.db import catalog, open_session, sources

LOCAL = FetchLimits(allow_private_networks=True)
ITEM = {"sku": "A", "date": "2026-01-01", "price": 1.5}


@pytest.fixture(autouse=True)
def local_servers_allowed(monkeypatch):
    from procurement.config import get_settings

    monkeypatch.setenv("FETCH_ALLOW_PRIVATE_NETWORKS", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def servers():
    a, b = Server(), Server()
    yield a, b
    a.close()
    b.close()


def _page(items, nxt=None) -> str:
    return json.dumps({"items": items, "next": nxt})


def _api(url: str, **kw) -> ApiSource:
    return ApiSource(name="acme", url=url, min_interval_seconds=0, max_attempts=1, **kw)


@pytest.mark.parametrize("env", ["DATABASE_URL", "COOKIE_KEY", "ADMIN_PASSWORD", "HOME"])
def test_the_secret_comes_only_from_a_supplier_secret_variable(env: str) -> None:
    """Issue: with secret_env DATABASE_URL the database password was sent to a server."""
    with pytest.raises(ValueError, match="must name an environment variable starting with"):
        ApiSource(name="x", url="https://s.example/p", auth_header="X-Key", secret_env=env)
    with pytest.raises(ValueError, match="SUPPLIER_SECRET_"):
        ingest.add_source(
            None,  # type: ignore[arg-type]  # refused before the database is touched
            1,
            "x",
            "api",
            {"url": "https://s.example/p", "auth_header": "X-Key", "secret_env": env},
        )


def test_the_secret_is_never_sent_to_a_next_link_on_another_host(servers, monkeypatch) -> None:
    """Issue: a next link to a second local server received the secret header."""
    a, b = servers
    monkeypatch.setenv("SUPPLIER_SECRET_ACME", "s3cret")
    a.routes["/p1"] = [(200, _page([ITEM], b.url + "/p2"), 0)]
    b.routes["/p2"] = [(200, _page([ITEM]), 0)]
    src = _api(a.url + "/p1", auth_header="X-Key", secret_env="SUPPLIER_SECRET_ACME")
    with pytest.raises(ConnectorError, match="page 2 failed: the next page is on another host"):
        fetch_api(src, limits=LOCAL)
    assert a.hits[0][1]["X-Key"] == "s3cret"
    assert b.hits == []


def test_an_api_redirect_to_another_host_is_not_followed(servers, monkeypatch) -> None:
    a, b = servers
    monkeypatch.setenv("SUPPLIER_SECRET_ACME", "s3cret")
    a.routes["/p1"] = [(302, "", 0, {"Location": b.url + "/steal"})]
    src = _api(a.url + "/p1", auth_header="X-Key", secret_env="SUPPLIER_SECRET_ACME")
    with pytest.raises(ConnectorError, match="a redirect leads to another host"):
        fetch_api(src, limits=LOCAL)
    assert b.hits == []


def test_pagination_and_redirects_on_the_same_host_are_followed(servers, monkeypatch) -> None:
    a, _ = servers
    monkeypatch.setenv("SUPPLIER_SECRET_ACME", "s3cret")
    a.routes["/p1"] = [(301, "", 0, {"Location": "/p1b"})]
    a.routes["/p1b"] = [(200, _page([ITEM], "/p2"), 0)]
    a.routes["/p2"] = [(200, _page([{**ITEM, "sku": "B"}]), 0)]
    src = _api(a.url + "/p1", auth_header="X-Key", secret_env="SUPPLIER_SECRET_ACME")
    assert fetch_api(src, limits=LOCAL)["sku"].tolist() == ["A", "B"]
    assert [h[1]["X-Key"] for h in a.hits] == ["s3cret"] * 3


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.1", "169.254.169.254", "[::1]"]
)
def test_private_loopback_and_metadata_addresses_are_refused_by_default(host: str) -> None:
    src = _api(f"http://{host}:9/prices")
    t = time.monotonic()
    with pytest.raises(ConnectorError, match="the address is not allowed"):
        fetch_api(src, limits=FetchLimits())
    assert time.monotonic() - t < 2  # refused before any connection attempt


def test_a_local_server_is_not_reached_without_the_switch(servers) -> None:
    a, _ = servers
    a.routes["/p1"] = [(200, _page([ITEM]), 0)]
    with pytest.raises(ConnectorError, match="the address is not allowed"):
        fetch_api(_api(a.url + "/p1"), limits=FetchLimits(allow_private_networks=False))
    assert a.hits == []
    # the connect step itself checks the address too (a name that changes its answer)
    with make_client(FetchLimits(), 2) as client, pytest.raises(httpx.ConnectError, match="not"):
        client.get(a.url + "/p1")
    assert a.hits == []


def test_a_response_above_the_size_limit_is_refused(servers) -> None:
    a, _ = servers
    a.routes["/p1"] = [(200, _page([ITEM] * 2000), 0)]
    with pytest.raises(ConnectorError, match="larger than the limit of 10000 bytes"):
        fetch_api(_api(a.url + "/p1"), limits=FetchLimits(True, max_bytes=10_000))


def test_a_slow_drip_server_is_cut_off_at_the_deadline(servers) -> None:
    """Issue: a server sending one byte a second held a 2 s timeout fetch for 8 s."""
    a, _ = servers
    a.drip = 0.25
    a.routes["/p1"] = [(200, _page([ITEM]), 0)]  # ~70 bytes: 17 s at this pace
    t = time.monotonic()
    with pytest.raises(ConnectorError, match=r"took longer than its limit of 1\.5 s"):
        fetch_api(
            _api(a.url + "/p1", timeout_seconds=2),
            limits=FetchLimits(True, deadline_seconds=1.5),
        )
    assert time.monotonic() - t < 2.5


def test_the_number_of_pages_is_capped(servers) -> None:
    a, _ = servers
    a.routes["/p"] = [(200, _page([ITEM], "/p"), 0)]
    with pytest.raises(ConnectorError, match="more than 3 pages"):
        fetch_api(_api(a.url + "/p"), limits=FetchLimits(True, max_pages=3))


def test_a_web_redirect_to_another_host_is_not_followed_and_robots_is_checked_per_host(
    servers,
) -> None:
    a, b = servers
    a.routes["/robots.txt"] = [(200, "User-agent: *\nDisallow: /private/\n", 0)]
    a.routes["/p/1"] = [(302, "", 0, {"Location": b.url + "/p/1"})]
    a.routes["/p/2"] = [(302, "", 0, {"Location": "/private/2"})]
    b.routes["/p/1"] = [(200, "<span class='price'>9</span>", 0)]
    src = WebSource(
        name="shop",
        products=[
            WebProduct("AWAY", a.url + "/p/1", ".price"),
            WebProduct("HIDDEN", a.url + "/p/2", ".price"),
        ],
        min_interval_seconds=0,
    )
    res = fetch_web(src, limits=LOCAL)
    assert res.failures == [
        ("AWAY", "a redirect leads to another host (not followed)"),
        ("HIDDEN", "disallowed by robots.txt"),
    ]
    assert b.hits == [] and "/private/2" not in [h[0] for h in a.hits]


SECRET_TEXT = "internal admin panel: password hunter2"


def test_stored_errors_hold_no_page_text_urls_or_status_codes(db, servers) -> None:
    """Issue: the web connector stored the page it found in the error shown to viewers."""
    a, _ = servers
    a.routes["/p/1"] = [(500, SECRET_TEXT, 0)]
    a.routes["/p/2"] = [(200, f"<span class='price'>1.2.3 {SECRET_TEXT}</span>", 0)]
    a.routes["/p/3"] = [(200, f"<b>{SECRET_TEXT}</b>", 0)]
    a.routes["/api"] = [(404, SECRET_TEXT, 0)]
    products = [{"sku": f"P{i}", "url": f"{a.url}/p/{i}", "selector": ".price"} for i in (1, 2, 3)]
    with open_session(db) as s, s.begin():
        ten = catalog.get_or_create_tenant(s, "acme")
        ingest.add_source(
            s, ten.id, "shop", "web", {"products": products, "min_interval_seconds": 0}
        )
        ingest.add_source(s, ten.id, "api", "api", {"url": a.url + "/api", "max_attempts": 1})
    web = ingest.run_source(db, "acme", "shop", Principal.system())
    api = ingest.run_source(db, "acme", "api", Principal.system())
    assert web.error == (
        "P1: the server answered with an error; "
        "P2: the price element holds no price in the page's format; "
        "P3: the price element was not found on the page"
    )
    assert api.error == "api: page 1 failed: the server answered with an error"
    port = a.url.rsplit(":", 1)[1]
    for err in (web.error, api.error):
        assert "hunter2" not in err and port not in err and "500" not in err and "404" not in err


def test_one_slow_source_does_not_hold_the_others(db, servers) -> None:
    a, b = servers
    a.routes["/slow"] = [(200, _page([ITEM]), 1.5)]
    b.routes["/fast"] = [(200, _page([{**ITEM, "sku": "B"}]), 0)]
    with open_session(db) as s, s.begin():
        ten = catalog.get_or_create_tenant(s, "acme")
        ingest.add_source(s, ten.id, "slow", "api", {"url": a.url + "/slow"})
        ingest.add_source(s, ten.id, "fast", "api", {"url": b.url + "/fast"})
        ingest.add_source(s, ten.id, "slow2", "api", {"url": a.url + "/slow"})
    assert ingest.run_all(db, concurrency=3) == 3
    # both slow fetches were being answered at the same time: neither waited for the other
    assert a.max_inflight == 2
    with open_session(db) as s:
        runs = sources.list_import_runs(s, catalog.get_tenant(s, "acme").id)
    assert sorted(r.status for r in runs) == ["ok"] * 3
    assert runs[-1].source == "api:fast"  # finished first
