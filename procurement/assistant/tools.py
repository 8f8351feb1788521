"""The assistant's tools: what each does, its JSON schema, and the dispatch that runs it.

Every tool runs as the signed-in user through the application layer (``procurement.actions``
and the order actions): it passes the acting ``Principal`` and the company to the action, which
checks role and company itself. A tool has no other way to the data, so a question cannot reach
another company or do more than the role allows, whatever it says: the action refuses and the
refusal is the tool's result. The assistant never approves, sends or cancels an order; the one
tool that writes drafts an order, which then waits on the Orders page.

Results are plain JSON-ready dicts (what the LLM engine sends back to the model, what the
offline engine words), each with the sources of its numbers: product, date range, model version.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from procurement import actions, orders
from procurement.assistant import offline
from procurement.auth import PermissionDenied, Principal
from procurement.config import Settings, get_settings
from procurement.forecast import store

STATUSES = list(orders.STATUSES)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class Source:
    """Where a number came from: the product, the days of data or forecast, the model version."""

    sku: str | None
    name: str
    start: dt.date | None = None
    end: dt.date | None = None
    model_version: str | None = None
    what: str = "prices"  # prices | forecast | stock | orders | catalog

    def to_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "name": self.name,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "model_version": self.model_version,
            "what": self.what,
        }


@dataclass
class ToolResult:
    name: str
    data: dict[str, Any]
    sources: list[Source] = field(default_factory=list)
    error: str | None = None  # a refusal or a bad request, in plain words

    def for_model(self) -> str:
        """The result as the LLM engine sends it back: JSON, sources included."""
        body: dict[str, Any] = {"error": self.error} if self.error else dict(self.data)
        if self.sources:
            body["sources"] = [s.to_dict() for s in self.sources]
        return json.dumps(body, default=_json_default, ensure_ascii=False)


def _json_default(o: Any) -> Any:
    if isinstance(o, dt.date | pd.Timestamp):
        return o.isoformat()[:10]
    if hasattr(o, "item"):
        return o.item()
    return str(o)


class ToolError(ValueError):
    """A request a tool cannot run as asked (unknown product, missing argument)."""


@dataclass
class ToolContext:
    """Who asks, in which company, and a cache of what several tools need."""

    actor: Principal
    session: Session
    tenant: str
    settings: Settings = field(default_factory=get_settings)
    _catalogs: dict[str, pd.DataFrame] = field(default_factory=dict)
    _today: dict[str, dt.date] = field(default_factory=dict)

    def company(self, company: str | None) -> str:
        return (company or self.tenant).strip().lower()

    def catalog(self, company: str | None = None) -> pd.DataFrame:
        slug = self.company(company)
        if slug not in self._catalogs:
            self._catalogs[slug] = actions.catalog(self.actor, session=self.session, tenant=slug)
        return self._catalogs[slug]

    def today(self, company: str | None = None) -> dt.date:
        """The day the company's data is at: the day after its newest price (the first
        forecast day), so "tomorrow" and "next week" mean what the forecasts mean."""
        slug = self.company(company)
        if slug not in self._today:
            status = actions.data_status(self.actor, session=self.session, tenant=slug)
            last = status.get("last")
            self._today[slug] = (
                pd.Timestamp(last).date() + dt.timedelta(days=1) if last else dt.date.today()
            )
        return self._today[slug]

    def product(self, sku: str, company: str | None = None) -> pd.Series:
        cat = self.catalog(company)
        hit = cat[cat["sku"].astype(str).str.lower() == str(sku).strip().lower()]
        if hit.empty:
            found, _ = offline.find_sku(offline.fold(str(sku)), cat)
            if found is None:
                raise ToolError(f"no product {sku!r} in this company's catalog")
            hit = cat[cat["sku"] == found]
        return hit.iloc[0]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[..., ToolResult]
    writes: bool = False  # runs in a savepoint of the conversation's transaction

    def schema(self) -> dict[str, Any]:
        """The OpenAI-compatible function definition."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


_COMPANY = {
    "type": "string",
    "description": "company short name; leave out for the user's own company",
}
_SKU = {"type": "string", "description": "the product's sku, e.g. SKU-00042 (find_product first)"}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**props, "company": _COMPANY},
        "required": required,
        "additionalProperties": False,
    }


def _f(x: Any, nd: int = 4) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, nd) if math.isfinite(v) else None


def _day(x: Any) -> dt.date | None:
    if x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x):
        return None
    return pd.Timestamp(x).date()


def _name(row: pd.Series) -> str:
    return str(row.get("name") or row["sku"])


# --- the tools ---------------------------------------------------------------------------------


def find_product(
    ctx: ToolContext, query: str, limit: int = 5, company: str | None = None
) -> ToolResult:
    cat = ctx.catalog(company)
    q = offline.fold(query)
    m = offline.match_products(q, cat, limit=max(1, min(int(limit), 20)))
    rows = cat[cat["sku"].isin(m.skus)].set_index("sku").reindex(m.skus).reset_index()
    found = [
        {
            "sku": r.sku,
            "name": r.name,
            "category": r.category,
            "supplier": r.supplier,
            "unit": r.unit,
        }
        for r in rows.itertuples(index=False)
    ]
    return ToolResult(
        "find_product",
        {"query": query, "matches": found, "category": m.category},
        [Source(None, "catalog", what="catalog")] if found else [],
    )


def price_history(
    ctx: ToolContext, sku: str, days: int = 90, company: str | None = None
) -> ToolResult:
    row = ctx.product(sku, company)
    days = max(1, min(int(days), 3650))
    h = actions.price_history(
        ctx.actor, session=ctx.session, tenant=ctx.company(company), sku=row["sku"], days=days
    )
    if h.empty:
        raise ToolError(f"{row['sku']} has no prices yet")
    p = h["price"].astype(float)
    first, last = h["date"].iloc[0].date(), h["date"].iloc[-1].date()
    data = {
        "sku": row["sku"],
        "name": _name(row),
        "unit": row.get("unit"),
        "currency": row.get("currency"),
        "from": first,
        "to": last,
        "observations": len(h),
        "latest_price": _f(p.iloc[-1]),
        "latest_date": last,
        "first_price": _f(p.iloc[0]),
        "change_pct": _f(100 * (p.iloc[-1] / p.iloc[0] - 1), 2) if p.iloc[0] else None,
        "mean": _f(p.mean()),
        "min": _f(p.min()),
        "min_date": h.loc[p.idxmin(), "date"].date(),
        "max": _f(p.max()),
        "max_date": h.loc[p.idxmax(), "date"].date(),
    }
    return ToolResult("price_history", data, [Source(row["sku"], _name(row), first, last)])


def _advice(ctx: ToolContext, sku: str, company: str | None) -> tuple[pd.Series, Any]:
    row = ctx.product(sku, company)
    adv = actions.product_advice(
        ctx.actor, session=ctx.session, tenant=ctx.company(company), sku=row["sku"]
    )
    return row, adv


def _lo_hi(fc: pd.DataFrame, level: int) -> tuple[str, str]:
    for lo, hi in ((f"lo_{level}", f"hi_{level}"), (f"lo{level}", f"hi{level}")):
        if lo in fc.columns:
            return lo, hi
    return "y_pred", "y_pred"


def forecast(
    ctx: ToolContext,
    sku: str,
    start: str | None = None,
    end: str | None = None,
    company: str | None = None,
) -> ToolResult:
    row, adv = _advice(ctx, sku, company)
    fc = adv.forecast.copy()
    fc["date"] = pd.to_datetime(fc["date"])
    lo, hi = _lo_hi(fc, 80)
    rec = adv.rec
    first_day, last_day = fc["date"].min().date(), fc["date"].max().date()
    window = fc
    if start or end:
        a = pd.Timestamp(start or first_day)
        b = pd.Timestamp(end or start or last_day)
        window = fc[(fc["date"] >= a) & (fc["date"] <= b)]
    data: dict[str, Any] = {
        "sku": row["sku"],
        "name": _name(row),
        "unit": row.get("unit"),
        "today": first_day,
        "forecast_from": first_day,
        "forecast_to": last_day,
        "buy_now": bool(rec["buy_now"]),
        "buy_date": _day(rec["buy_date"]),
        "price_today": _f(rec["first_price"]),
        "price_on_buy_date": _f(rec["buy_price"]),
        "saving_pct": _f(rec.get("saving_pct"), 2),
        "confidence": _f(min(float(rec.get("confidence", 0.0)), 0.99), 3),
        "reason": str(rec.get("reason", "")),
        "stock_runs_out_first": bool(rec.get("stockout", False)),
        "trend_pct": _f(rec.get("trend_pct"), 2),
        "backtest_record": adv.record,
        "promotions": adv.promotions,
        "model_version": adv.version,
        "data_end": adv.data_end,
    }
    if start or end:
        if window.empty:
            data["window"] = None
            data["window_note"] = (
                f"the forecast covers {first_day} to {last_day} only; the day asked is outside it"
            )
        else:
            cheapest = window.loc[window["y_pred"].idxmin()]
            data["window"] = {
                "from": window["date"].min().date(),
                "to": window["date"].max().date(),
                "lowest": _f(cheapest["y_pred"]),
                "lowest_date": cheapest["date"].date(),
                "lo_80": _f(cheapest[lo]),
                "hi_80": _f(cheapest[hi]),
                "change_vs_today_pct": _f(
                    100 * (float(cheapest["y_pred"]) / float(rec["first_price"]) - 1), 2
                )
                if float(rec["first_price"])
                else None,
            }
    src = Source(row["sku"], _name(row), first_day, last_day, adv.version, "forecast")
    return ToolResult("forecast", data, [src])


IMPLAUSIBLY_LOW = 0.5  # of the lowest price of the last 180 days


def price_check(
    ctx: ToolContext, sku: str, price: float | None = None, company: str | None = None
) -> ToolResult:
    row, adv = _advice(ctx, sku, company)
    h = actions.price_history(
        ctx.actor, session=ctx.session, tenant=ctx.company(company), sku=row["sku"], days=180
    )
    if h.empty:
        raise ToolError(f"{row['sku']} has no prices yet")
    p = h["price"].astype(float)
    latest = float(p.iloc[-1])
    asked = float(price) if price is not None else latest
    if not math.isfinite(asked) or asked <= 0:
        raise ToolError("the price must be a positive number")
    fc = adv.forecast
    low = fc.loc[fc["y_pred"].idxmin()]
    share_below = float((p < asked).mean())
    rec = adv.rec
    waits = not bool(rec["buy_now"])
    if asked < IMPLAUSIBLY_LOW * float(p.min()):
        # a quote at a fraction of every price paid is more likely a typo, another unit or
        # another product than a bargain: "a good price" would be the wrong answer
        verdict = "implausible"
    elif share_below >= 0.75:
        # above most prices paid: that is the first thing to say, even where the forecast
        # also says to wait (the answer adds the wait)
        verdict = "high"
    elif waits and asked > float(rec["buy_price"]):
        verdict = "wait"
    elif share_below <= 0.35:
        verdict = "good"
    else:
        verdict = "fair"
    first, last = h["date"].iloc[0].date(), h["date"].iloc[-1].date()
    data = {
        "sku": row["sku"],
        "name": _name(row),
        "unit": row.get("unit"),
        "price": _f(asked),
        "latest_price": _f(latest),
        "latest_date": last,
        "history_from": first,
        "history_to": last,
        "share_of_days_cheaper": round(share_below, 3),
        "median_180d": _f(p.median()),
        "min_180d": _f(p.min()),
        "max_180d": _f(p.max()),
        "forecast_lowest": _f(low["y_pred"]),
        "forecast_lowest_date": pd.Timestamp(low["date"]).date(),
        "buy_now": not waits,
        "buy_date": _day(rec["buy_date"]),
        "saving_pct": _f(rec.get("saving_pct"), 2),
        "confidence": _f(min(float(rec.get("confidence", 0.0)), 0.99), 3),
        "verdict": verdict,
        "model_version": adv.version,
    }
    fc_dates = pd.to_datetime(fc["date"])
    return ToolResult(
        "price_check",
        data,
        [
            Source(row["sku"], _name(row), first, last),
            Source(
                row["sku"],
                _name(row),
                fc_dates.min().date(),
                fc_dates.max().date(),
                adv.version,
                "forecast",
            ),
        ],
    )


def stock_status(ctx: ToolContext, sku: str, company: str | None = None) -> ToolResult:
    row = ctx.product(sku, company)
    on_hand = _f(row.get("on_hand"))
    daily = _f(row.get("daily_demand")) or 0.0
    lead = int(row["lead_time_days"]) if pd.notna(row.get("lead_time_days")) else None
    cover = on_hand / daily if on_hand is not None and daily > 0 else None
    lead_demand = daily * lead if lead is not None else None
    if on_hand is None:
        status = "unknown"
    elif lead_demand is not None and on_hand <= lead_demand:
        status = "reorder_now"
    elif cover is not None and lead is not None and cover - lead <= 7:
        status = "reorder_soon"
    else:
        status = "ok"
    today = ctx.today(company)
    data = {
        "sku": row["sku"],
        "name": _name(row),
        "unit": row.get("unit"),
        "on_hand": on_hand,
        "daily_demand": _f(daily, 3),
        "lead_time_days": lead,
        "days_of_cover": _f(cover, 1),
        "runs_out_on": today + dt.timedelta(days=int(cover)) if cover is not None else None,
        "lead_time_demand": _f(lead_demand, 1),
        "status": status,
        "demand_window": "average of the last 28 days of sales",
    }
    return ToolResult(
        "stock_status",
        data,
        [Source(row["sku"], _name(row), today - dt.timedelta(days=28), today, None, "stock")],
    )


def draft_order(
    ctx: ToolContext,
    sku: str,
    quantity: float,
    note: str = "",
    order_date: str | None = None,
    company: str | None = None,
) -> ToolResult:
    row = ctx.product(sku, company)
    try:
        qty = float(quantity)
    except (TypeError, ValueError):
        raise ToolError("the quantity must be a number") from None
    day = dt.date.fromisoformat(order_date) if order_date else None
    order = orders.draft_order(
        ctx.actor,
        session=ctx.session,
        tenant=ctx.company(company),
        sku=str(row["sku"]),
        quantity=qty,
        note=note or "drafted by the assistant",
        order_date=day,
    )
    line = order.lines[0]
    data = {
        "order_id": order.id,
        "status": order.status,
        "sku": row["sku"],
        "name": _name(row),
        "supplier": row.get("supplier"),
        "order_date": order.order_date,
        "delivery_date": line.delivery_date,
        "quantity": _f(line.quantity),
        "quantity_asked": _f(qty),
        "unit": row.get("unit"),
        "unit_price": _f(line.unit_price),
        "total": _f(line.quantity * line.unit_price, 2),
        "currency": order.currency,
        "reason": line.reason,
        "next_step": "a buyer or administrator approves it on the Orders page",
    }
    price_day = ctx.today(company) - dt.timedelta(days=1)
    return ToolResult(
        "draft_order", data, [Source(row["sku"], _name(row), price_day, price_day, None, "prices")]
    )


def list_orders(
    ctx: ToolContext, status: str | None = None, company: str | None = None
) -> ToolResult:
    if status is not None and status not in STATUSES:
        raise ToolError(f"status must be one of {', '.join(STATUSES)}")
    df = actions.list_orders(
        ctx.actor,
        session=ctx.session,
        tenant=ctx.company(company),
        statuses=[status] if status else None,
    )
    rows = [
        {
            "id": int(r.id),
            "supplier": r.supplier,
            "order_date": _day(r.order_date),
            "status": r.status,
            "lines": int(r.lines),
            "total": _f(r.total, 2),
            "currency": r.currency,
        }
        for r in df.head(20).itertuples(index=False)
    ]
    return ToolResult(
        "list_orders",
        {"status": status, "count": len(df), "orders": rows, "shown": len(rows)},
        [Source(None, "purchase orders", what="orders")],
    )


def best_buys(
    ctx: ToolContext, category: str | None = None, limit: int = 5, company: str | None = None
) -> ToolResult:
    recs = actions.advice(ctx.actor, session=ctx.session, tenant=ctx.company(company))
    version = str(recs["version"].iloc[0]) if "version" in recs.columns and len(recs) else None
    view = recs
    if category:
        cats = {offline.fold(str(c)): c for c in recs["category"].dropna().unique()}
        key = offline.fold(category)
        key = offline.SYNONYMS.get(key, key)
        near = cats.get(key) or next(
            (c for k, c in cats.items() if k.rstrip("s") == key.rstrip("s")), None
        )
        if near is None:
            raise ToolError(
                f"no category {category!r}; the categories are {', '.join(sorted(map(str, cats.values())))}"
            )
        view = recs[recs["category"] == near]
        category = str(near)
    else:
        view = recs[~recs["buy_now"].astype(bool)]
    view = view.sort_values("saving_pct", ascending=False).head(max(1, min(int(limit), 20)))
    today = ctx.today(company)
    rows = [
        {
            "sku": r.sku,
            "name": r.name,
            "category": r.category,
            "buy_now": bool(r.buy_now),
            "buy_date": _day(r.buy_date),
            "price_today": _f(r.first_price),
            "price_on_buy_date": _f(r.buy_price),
            "saving_pct": _f(r.saving_pct, 2),
            "confidence": _f(min(float(r.confidence), 0.99), 3),
        }
        for r in view.itertuples(index=False)
    ]
    end = today + dt.timedelta(days=ctx.settings.horizon - 1)
    data = {
        "category": category,
        "products_cheaper_later": int((~recs["buy_now"].astype(bool)).sum()),
        "products": len(recs),
        "items": rows,
        "forecast_from": today,
        "forecast_to": end,
        "model_version": version,
    }
    srcs = [Source(r["sku"], r["name"], today, end, version, "forecast") for r in rows]
    return ToolResult("best_buys", data, srcs)


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in [
        Tool(
            "find_product",
            "Find products of the company's catalog by name, category or sku (fuzzy: "
            "misspellings and Portuguese category names work). Returns skus.",
            _obj(
                {
                    "query": {"type": "string", "description": "words or sku to look for"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                },
                ["query"],
            ),
            find_product,
        ),
        Tool(
            "price_history",
            "Summary of one product's recent prices: latest, lowest, highest, mean, change, "
            "over the last `days` days.",
            _obj(
                {"sku": _SKU, "days": {"type": "integer", "minimum": 1, "maximum": 3650}},
                ["sku"],
            ),
            price_history,
        ),
        Tool(
            "forecast",
            "One product's price forecast over the horizon and the best day to buy, with the "
            "confidence, the expected saving, the product's backtest record and the model "
            "version. With start/end (ISO dates), also the lowest forecast in that window.",
            _obj(
                {
                    "sku": _SKU,
                    "start": {"type": "string", "format": "date"},
                    "end": {"type": "string", "format": "date"},
                },
                ["sku"],
            ),
            forecast,
        ),
        Tool(
            "price_check",
            "Is a price good for a product? Compares `price` (default: the latest price) with "
            "the last 180 days and with the forecast; verdict 'implausible' when it is under "
            "half the lowest price paid (more likely a typo, another unit or product).",
            _obj({"sku": _SKU, "price": {"type": "number", "exclusiveMinimum": 0}}, ["sku"]),
            price_check,
        ),
        Tool(
            "stock_status",
            "Stock on hand, recent daily demand, lead time, days of cover and whether to "
            "reorder, for one product.",
            _obj({"sku": _SKU}, ["sku"]),
            stock_status,
        ),
        Tool(
            "draft_order",
            "Create a DRAFT purchase order for one product with its supplier. It is never "
            "approved or sent: it waits for a buyer on the Orders page. Needs the role to "
            "order.",
            _obj(
                {
                    "sku": _SKU,
                    "quantity": {"type": "number", "exclusiveMinimum": 0},
                    "note": {"type": "string"},
                    "order_date": {"type": "string", "format": "date"},
                },
                ["sku", "quantity"],
            ),
            draft_order,
            writes=True,
        ),
        Tool(
            "list_orders",
            "The company's purchase orders, optionally of one status.",
            _obj({"status": {"type": "string", "enum": STATUSES}}, []),
            list_orders,
        ),
        Tool(
            "best_buys",
            "Products whose price is forecast to be lower later, largest saving first; with a "
            "category, every product of that category with its best buy day.",
            _obj(
                {
                    "category": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                },
                [],
            ),
            best_buys,
        ),
    ]
}


def schemas() -> list[dict[str, Any]]:
    return [t.schema() for t in TOOLS.values()]


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _check(tool: Tool, args: Any) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise ToolError("arguments must be a JSON object")
    props = tool.parameters["properties"]
    unknown = sorted(set(args) - set(props))
    if unknown:
        raise ToolError(f"unknown argument(s): {', '.join(unknown)}")
    missing = [k for k in tool.parameters["required"] if args.get(k) in (None, "")]
    if missing:
        raise ToolError(f"missing argument(s): {', '.join(missing)}")
    out = {}
    for k, v in args.items():
        if v is None:
            continue
        want = props[k]["type"]
        if isinstance(v, bool) and want != "boolean":
            raise ToolError(f"{k} must be a {want}")
        if want == "integer" and isinstance(v, float) and v.is_integer():
            v = int(v)
        if want in ("number", "integer") and isinstance(v, str):
            try:
                v = offline.parse_number(v)
                v = int(v) if want == "integer" and float(v).is_integer() else v
            except ValueError:
                raise ToolError(f"{k} must be a {want}") from None
        if not isinstance(v, _TYPES[want]):
            raise ToolError(f"{k} must be a {want}")
        if "enum" in props[k] and v not in props[k]["enum"]:
            raise ToolError(f"{k} must be one of {', '.join(props[k]['enum'])}")
        if props[k].get("format") == "date":
            try:
                dt.date.fromisoformat(str(v))
            except ValueError:
                raise ToolError(f"{k} must be a date like 2026-07-01") from None
        out[k] = v
    return out


def dispatch(ctx: ToolContext, name: str, arguments: Any) -> ToolResult:
    """Run tool ``name`` with ``arguments`` as the context's user. A refusal (role, company),
    an unknown product or a bad argument comes back as the result's ``error``, never raised:
    the engine tells the user (or the model) what was refused and why."""
    tool = TOOLS.get(name)
    if tool is None:
        return ToolResult(name, {}, error=f"there is no tool {name!r}")
    try:
        args = _check(tool, arguments)
        if not tool.writes:
            return tool.run(ctx, **args)
        # a savepoint: a refused or failed write leaves the conversation's transaction usable.
        # Only around writes: on SQLite a savepoint takes the database's one write lock until
        # the turn ends (``db._sqlite_savepoint``), and a turn with a language model can last
        # seconds, while a read needs no lock at all
        with ctx.session.begin_nested():
            return tool.run(ctx, **args)
    except PermissionDenied as exc:
        return ToolResult(name, {}, error=f"not allowed: {exc}")
    except ValueError as exc:
        msg = str(exc)
        if msg.startswith("unknown company") and not ctx.actor.is_global_admin:
            # the same answer as for a company that exists: no probing for names
            msg = f"not allowed: {ctx.actor.username} has no access to that company"
        return ToolResult(name, {}, error=msg)
    except LookupError as exc:
        return ToolResult(name, {}, error=str(exc).strip("'\""))
    except store.ModelStoreError as exc:
        return ToolResult(name, {}, error=f"the company's model cannot be used: {exc}")
