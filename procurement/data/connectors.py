"""Prices from outside: a supplier's JSON API and product web pages.

Both fetch everything first and return a validated price table; storing happens afterwards in one
transaction through the same path as file imports, so a failure half-way stores nothing.
HTTP is httpx (timeouts), retries with exponential backoff are tenacity, HTML parsing and CSS
selectors are Beautiful Soup, robots.txt is the standard library's ``urllib.robotparser``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
import urllib.robotparser
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlparse

import httpx
import pandas as pd
from bs4 import BeautifulSoup
from pydantic import BaseModel, Field
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from procurement.data.importers import validate_prices

USER_AGENT = "procurement-price-bot/0.1 (+https://example.invalid/procurement-bot)"


class ConnectorError(RuntimeError):
    """A source could not be read; nothing from it was stored."""


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


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):  # timeouts, refused connections
        return True
    return isinstance(exc, httpx.HTTPStatusError) and (
        exc.response.status_code >= 500 or exc.response.status_code == 429
    )


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
    secret_env: str | None = None  # environment variable holding the header's value
    timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(4, ge=1)
    min_interval_seconds: float = Field(0.2, ge=0)
    max_pages: int = Field(1000, ge=1)


def _dig(obj: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def fetch_api(source: ApiSource, client: httpx.Client | None = None) -> pd.DataFrame:
    """All pages of the source as a validated ``sku,date,price`` table."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if source.auth_header:
        secret = os.environ.get(source.secret_env or "")
        if not secret:
            raise ConnectorError(
                f"{source.name}: environment variable {source.secret_env!r} is not set"
            )
        headers[source.auth_header] = secret
    own = client is None
    client = client or httpx.Client(timeout=source.timeout_seconds, headers=headers)
    limiter = RateLimiter(source.min_interval_seconds)

    @retry(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(source.max_attempts),
        wait=wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )
    def get(url: str) -> httpx.Response:
        limiter.wait()
        r = client.get(url, headers=headers)
        r.raise_for_status()
        return r

    rows: list[dict[str, Any]] = []
    url: str | None = source.url
    try:
        for page in range(1, source.max_pages + 1):
            if url is None:
                break
            try:
                resp = get(url)
            except httpx.HTTPError as exc:
                raise ConnectorError(f"{source.name}: page {page} ({url}) failed: {exc}") from exc
            try:
                body = resp.json()
            except ValueError as exc:
                raise ConnectorError(f"{source.name}: page {page} is not valid JSON") from exc
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
            url = urljoin(url, nxt) if nxt else None
    finally:
        if own:
            client.close()
    if not rows:
        raise ConnectorError(f"{source.name}: no prices returned")
    df = pd.DataFrame(rows).astype(str).replace({"None": ""})
    return validate_prices(df, source=source.name)


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
    """'$1,234.56' -> 1234.56; with ``decimal_comma`` 'R$ 1.234,56' -> 1234.56."""
    m = _NUMBER.search(text.replace("\xa0", " "))
    if not m:
        raise ValueError(f"no number in {text!r}")
    num = m.group(0).replace(" ", "").strip(".,")
    num = num.replace(".", "").replace(",", ".") if decimal_comma else num.replace(",", "")
    return float(num)


def fetch_web(
    source: WebSource, client: httpx.Client | None = None, today: dt.date | None = None
) -> WebResult:
    """Each product page's price, honouring robots.txt; a failing page is recorded and skipped."""
    own = client is None
    client = client or httpx.Client(
        timeout=source.timeout_seconds,
        headers={"User-Agent": source.user_agent},
        follow_redirects=True,
    )
    limiter = RateLimiter(source.min_interval_seconds)
    robots: dict[str, urllib.robotparser.RobotFileParser] = {}
    rows, failures = [], []
    try:
        for p in source.products:
            host = "{0.scheme}://{0.netloc}".format(urlparse(p.url))
            if host not in robots:
                rp = urllib.robotparser.RobotFileParser()
                try:
                    r = client.get(host + "/robots.txt")
                    rp.parse(r.text.splitlines() if r.status_code == 200 else [])
                except httpx.HTTPError:
                    rp.parse([])  # no robots.txt reachable: allowed, as crawlers treat it
                robots[host] = rp
            if not robots[host].can_fetch(source.user_agent, p.url):
                failures.append((p.sku, "disallowed by robots.txt"))
                continue
            try:
                limiter.wait()
                r = client.get(p.url)
                r.raise_for_status()
                el = BeautifulSoup(r.text, "html.parser").select_one(p.selector)
                if el is None:
                    raise ValueError(f"selector {p.selector!r} matched nothing")
                price = parse_price(el.get_text(" ", strip=True), source.decimal_comma)
                rows.append(
                    {"sku": p.sku, "date": str(today or dt.date.today()), "price": str(price)}
                )
            except (httpx.HTTPError, ValueError) as exc:
                failures.append((p.sku, str(exc)[:300]))
    finally:
        if own:
            client.close()
    prices = (
        validate_prices(pd.DataFrame(rows), source=source.name)
        if rows
        else pd.DataFrame(columns=["sku", "date", "price"])
    )
    return WebResult(prices, failures)
