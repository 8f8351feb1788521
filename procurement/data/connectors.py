"""Prices from outside: a supplier's JSON API and product web pages.

Both fetch everything first and return a validated price table; storing happens afterwards in one
transaction through the same path as file imports, so a failure half-way stores nothing.
HTTP is httpx (timeouts), retries with exponential backoff are tenacity, HTML parsing and CSS
selectors are Beautiful Soup, robots.txt is the standard library's ``urllib.robotparser``.

Network safety (a source's address is configuration, not trusted):

* the secret header's value comes only from an environment variable named ``SUPPLIER_SECRET_*``
  and is sent only to the configured host;
* pagination links and redirects are followed only on the host they started from;
* addresses that resolve to loopback, private, link-local (cloud metadata), shared, reserved or
  multicast ranges are refused unless ``FETCH_ALLOW_PRIVATE_NETWORKS`` is set; the check runs on
  the address actually connected to, so a name that changes its answer cannot slip past;
* each response is capped in size, and each source has an overall deadline;
* errors say what went wrong without addresses, status codes or page text (details are logged
  for operators).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import re
import socket
import time
import urllib.robotparser
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlparse

import httpcore
import httpx
import pandas as pd
from bs4 import BeautifulSoup
from pydantic import BaseModel, Field, field_validator, model_validator
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from procurement.data.importers import FileFormat, ImportValidationError, validate_prices

USER_AGENT = "procurement-price-bot/0.1 (+https://example.invalid/procurement-bot)"
SECRET_PREFIX = "SUPPLIER_SECRET_"
MAX_REDIRECTS = 5
log = logging.getLogger(__name__)


class ConnectorError(RuntimeError):
    """A source could not be read; nothing from it was stored. The message is safe to show."""


class FetchRefused(ConnectorError):
    """A request the rules forbid (address, host, size, deadline); never retried."""


@dataclass(frozen=True)
class FetchLimits:
    """Operator's limits for every source (settings ``FETCH_*``)."""

    allow_private_networks: bool = False
    max_bytes: int = 5_000_000
    deadline_seconds: float = 120.0
    max_pages: int = 100

    @classmethod
    def from_settings(cls) -> FetchLimits:
        from procurement.config import get_settings

        st = get_settings()
        return cls(
            st.fetch_allow_private_networks,
            st.fetch_max_bytes,
            st.fetch_deadline_seconds,
            st.fetch_max_pages,
        )


# --- addresses --------------------------------------------------------------------------------


def _address_allowed(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def _resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """The host's addresses; all must be public unless private networks are allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise FetchRefused("the host name does not resolve") from None
    ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private and not all(_address_allowed(ip) for ip in ips):
        raise FetchRefused(
            "the address is not allowed (loopback, private, link-local or metadata range)"
        )
    return ips


class _CheckedBackend(httpcore.SyncBackend):
    """Connects only to addresses that pass the check, resolved at connect time (TLS still
    verifies the host name: httpcore passes the URL's host as the server name)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            ips = _resolve(host, port, self.allow_private)
        except FetchRefused as exc:
            raise httpcore.ConnectError(str(exc)) from None
        return super().connect_tcp(ips[0], port, timeout, local_address, socket_options)


def make_client(limits: FetchLimits, timeout: float, user_agent: str = USER_AGENT) -> httpx.Client:
    """A client that follows no redirects by itself, ignores proxy settings of the environment
    (the address check must see the real target) and connects only to allowed addresses."""
    transport = httpx.HTTPTransport()
    # httpx has no public hook for the connect step; its pool is replaced by one with the same
    # defaults and the checking network backend.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        network_backend=_CheckedBackend(limits.allow_private_networks),
    )
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )


def _origin(url: str) -> tuple[str, str, int]:
    p = urlparse(url)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise FetchRefused("only http and https addresses are fetched")
    return p.scheme, p.hostname.lower(), p.port or (443 if p.scheme == "https" else 80)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise FetchRefused(f"the fetch took longer than its limit of {self.seconds:g} s")
        return left


@dataclass
class _Response:
    status: int
    headers: httpx.Headers
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _get_once(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    limits: FetchLimits,
    deadline: _Deadline,
    timeout: float,
) -> _Response:
    """One GET, read in chunks: refused beyond ``max_bytes`` or past the deadline."""
    _, host, port = _origin(url)
    _resolve(host, port, limits.allow_private_networks)  # a clear error before connecting
    with client.stream(
        "GET", url, headers=headers, timeout=min(timeout, deadline.remaining())
    ) as r:
        declared = r.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise FetchRefused(f"the response is larger than the limit of {limits.max_bytes} bytes")
        body = bytearray()
        for chunk in r.iter_bytes():
            body += chunk
            if len(body) > limits.max_bytes:
                raise FetchRefused(
                    f"the response is larger than the limit of {limits.max_bytes} bytes"
                )
            deadline.remaining()
        return _Response(r.status_code, r.headers, bytes(body))


def _get(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    limits: FetchLimits,
    deadline: _Deadline,
    timeout: float,
    may_follow: Callable[[str], bool] | None = None,
) -> tuple[str, _Response]:
    """GET following at most ``MAX_REDIRECTS`` redirects on the same host, each only if
    ``may_follow`` (robots.txt) allows it; (final URL, response)."""
    origin = _origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        resp = _get_once(client, url, headers, limits, deadline, timeout)
        if resp.status not in (301, 302, 303, 307, 308) or "location" not in resp.headers:
            return url, resp
        nxt = urljoin(url, resp.headers["location"])
        if _origin(nxt) != origin:
            log.warning("redirect from %s to %s not followed: another host", url, nxt)
            raise FetchRefused("a redirect leads to another host (not followed)")
        if may_follow is not None and not may_follow(nxt):
            raise FetchRefused("disallowed by robots.txt")
        url = nxt
    raise FetchRefused("too many redirects")


class _HttpStatus(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, FetchRefused):
        return False
    if isinstance(exc, httpx.TransportError):  # timeouts, refused connections
        return not (isinstance(exc, httpx.ConnectError) and "not allowed" in str(exc))
    return isinstance(exc, _HttpStatus) and (exc.status >= 500 or exc.status == 429)


def _reason(exc: BaseException) -> str:
    """What went wrong, in words safe to show to anyone: no address, status code or content."""
    if isinstance(exc, ConnectorError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "the server did not answer in time"
    if isinstance(exc, httpx.ConnectError) and "not allowed" in str(exc):
        return "the address is not allowed (loopback, private, link-local or metadata range)"
    if isinstance(exc, httpx.TransportError):
        return "could not connect or the connection broke"
    if isinstance(exc, _HttpStatus):
        return "the server answered with an error"
    return "the request failed"


# --- supplier JSON API ------------------------------------------------------------------------


class ApiSource(BaseModel):
    """A supplier's HTTP JSON price list."""

    name: str
    url: str
    items_path: str = "items"  # dotted path to the list of records in each page
    sku_field: str = "sku"
    date_field: str = "date"
    price_field: str = "price"
    next_path: str | None = "next"  # dotted path to the next page's URL; None: single page
    auth_header: str | None = None  # e.g. "Authorization"
    secret_env: str | None = None  # SUPPLIER_SECRET_...: environment variable with its value
    timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(4, ge=1)
    min_interval_seconds: float = Field(0.2, ge=0)
    max_pages: int = Field(100, ge=1)
    decimal: str | None = None  # when prices come as text: "." or ","; None: from the values

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        _origin(v)
        return v

    @field_validator("secret_env")
    @classmethod
    def _secret_prefix(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(f"{SECRET_PREFIX}[A-Z0-9_]+", v):
            raise ValueError(
                f"secret_env must name an environment variable starting with {SECRET_PREFIX} "
                "(upper-case letters, digits, _)"
            )
        return v

    @model_validator(mode="after")
    def _header_needs_secret(self) -> ApiSource:
        if bool(self.auth_header) != bool(self.secret_env):
            raise ValueError("auth_header and secret_env go together")
        return self


class RateLimiter:
    """At most one request every ``min_interval`` seconds."""

    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self._last = 0.0

    def wait(self) -> None:
        delay = self._last + self.min_interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._last = time.monotonic()


def _dig(obj: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def fetch_api(
    source: ApiSource, client: httpx.Client | None = None, limits: FetchLimits | None = None
) -> pd.DataFrame:
    """All pages of the source as a validated ``sku,date,price`` table."""
    limits = limits or FetchLimits.from_settings()
    deadline = _Deadline(limits.deadline_seconds)
    origin = _origin(source.url)
    headers = {"Accept": "application/json"}
    if source.auth_header and source.secret_env:
        secret = os.environ.get(source.secret_env)
        if not secret:
            raise ConnectorError(
                f"{source.name}: environment variable {source.secret_env} is not set"
            )
        headers[source.auth_header] = secret
    own = client is None
    client = client or make_client(limits, source.timeout_seconds)
    limiter = RateLimiter(source.min_interval_seconds)

    @retry(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(source.max_attempts),
        wait=wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    def get(url: str) -> _Response:
        if _origin(url) != origin:  # the secret goes only to the configured host
            raise FetchRefused("the next page is on another host (not followed)")
        limiter.wait()
        _, resp = _get(client, url, headers, limits, deadline, source.timeout_seconds)
        if resp.status >= 400:
            log.warning("%s: %s answered %s", source.name, url, resp.status)
            raise _HttpStatus(resp.status)
        return resp

    rows: list[dict[str, Any]] = []
    url: str | None = source.url
    try:
        for page in range(1, min(source.max_pages, limits.max_pages) + 2):
            if url is None:
                break
            if page > min(source.max_pages, limits.max_pages):
                raise ConnectorError(f"{source.name}: more than {page - 1} pages")
            try:
                resp = get(url)
            except (httpx.HTTPError, _HttpStatus, ConnectorError) as exc:
                log.warning("%s: page %s (%s) failed: %r", source.name, page, url, exc)
                raise ConnectorError(f"{source.name}: page {page} failed: {_reason(exc)}") from None
            try:
                body = json.loads(resp.body)
            except ValueError:
                raise ConnectorError(f"{source.name}: page {page} is not valid JSON") from None
            items = _dig(body, source.items_path)
            if not isinstance(items, list):
                raise ConnectorError(
                    f"{source.name}: page {page} has no list at '{source.items_path}'"
                )
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise ConnectorError(f"{source.name}: page {page}, item {i} is not an object")
                rows.append(
                    {
                        "sku": item.get(source.sku_field),
                        "date": item.get(source.date_field),
                        "price": item.get(source.price_field),
                    }
                )
            nxt = _dig(body, source.next_path) if source.next_path else None
            url = urljoin(url, nxt) if isinstance(nxt, str) and nxt else None
    finally:
        if own:
            client.close()
    if not rows:
        raise ConnectorError(f"{source.name}: no prices returned")
    df = pd.DataFrame(rows, dtype=object)
    df = df.where(df.notna(), "")
    df["sku"] = df["sku"].astype(str)
    return validate_prices(df, source=source.name, fmt=FileFormat(decimal=source.decimal))


# --- product web pages ------------------------------------------------------------------------


@dataclass
class WebProduct:
    sku: str
    url: str
    selector: str  # CSS selector of the element holding the price


@dataclass
class WebSource:
    name: str
    products: list[WebProduct]
    min_interval_seconds: float = 1.0
    timeout_seconds: float = 10.0
    user_agent: str = USER_AGENT
    decimal_comma: bool = False


@dataclass
class WebResult:
    prices: pd.DataFrame
    failures: list[tuple[str, str]] = field(default_factory=list)  # (sku, reason)


_NUMBER = re.compile(r"-?\d[\d.,\s]*")


def parse_price(text: str, decimal_comma: bool = False) -> float:
    """'$1,234.56' -> 1234.56; with ``decimal_comma`` 'R$ 1.234,56' -> 1234.56. The first
    number in the element's text, read strictly in the page's format."""
    m = _NUMBER.search(text.replace("\xa0", " "))
    if not m:
        raise ValueError("no number in the price element")
    num = m.group(0).replace(" ", "").strip(".,")
    one = pd.DataFrame({"sku": ["x"], "date": ["2000-01-01"], "price": [num]})
    try:
        return float(
            validate_prices(one, fmt=FileFormat(decimal="," if decimal_comma else "."))[
                "price"
            ].iloc[0]
        )
    except ImportValidationError:
        raise ValueError("the price element holds no price in the page's format") from None


def fetch_web(
    source: WebSource,
    client: httpx.Client | None = None,
    today: dt.date | None = None,
    limits: FetchLimits | None = None,
) -> WebResult:
    """Each product page's price, honouring robots.txt of every host it reads (redirects stay
    on the product's host); a failing page is recorded, without its content, and skipped."""
    limits = limits or FetchLimits.from_settings()
    deadline = _Deadline(limits.deadline_seconds)
    own = client is None
    client = client or make_client(limits, source.timeout_seconds, source.user_agent)
    limiter = RateLimiter(source.min_interval_seconds)
    robots: dict[tuple[str, str, int], urllib.robotparser.RobotFileParser] = {}
    rows, failures = [], []

    def allowed(url: str) -> bool:
        origin = _origin(url)
        if origin not in robots:
            rp = urllib.robotparser.RobotFileParser()
            scheme, host, port = origin
            try:
                _, r = _get(
                    client,
                    f"{scheme}://{host}:{port}/robots.txt",
                    {},
                    limits,
                    deadline,
                    source.timeout_seconds,
                )
                rp.parse(r.text().splitlines() if r.status == 200 else [])
            except httpx.HTTPError:
                rp.parse([])  # no robots.txt reachable: allowed, as crawlers treat it
            robots[origin] = rp
        return robots[origin].can_fetch(source.user_agent, url)

    try:
        for p in source.products:
            try:
                deadline.remaining()
                if not allowed(p.url):
                    failures.append((p.sku, "disallowed by robots.txt"))
                    continue
                limiter.wait()
                final, r = _get(
                    client, p.url, {}, limits, deadline, source.timeout_seconds, allowed
                )
                if r.status >= 400:
                    log.warning("%s: %s answered %s", source.name, final, r.status)
                    raise _HttpStatus(r.status)
                el = BeautifulSoup(r.text(), "html.parser").select_one(p.selector)
                if el is None:
                    raise ValueError("the price element was not found on the page")
                price = parse_price(el.get_text(" ", strip=True), source.decimal_comma)
                rows.append(
                    {"sku": p.sku, "date": str(today or dt.date.today()), "price": str(price)}
                )
            except ValueError as exc:
                failures.append((p.sku, str(exc)))
            except (httpx.HTTPError, _HttpStatus, ConnectorError) as exc:
                log.warning("%s: %s failed: %r", source.name, p.url, exc)
                failures.append((p.sku, _reason(exc)))
    finally:
        if own:
            client.close()
    prices = (
        validate_prices(pd.DataFrame(rows), source=source.name)
        if rows
        else pd.DataFrame(columns=["sku", "date", "price"])
    )
    return WebResult(prices, failures)
