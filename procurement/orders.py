"""Purchase orders: how much, when and from whom, ready to approve.

``propose_lines`` is a pure function of DataFrames: for each product it takes the demand
forecast, stock on hand and on order, the supplier's terms and the price forecast, and returns
the order line to place, if one is due within the forecast horizon:

* **when**: the cheapest forecast day (by the price advice of ``recommend``) whose delivery still
  arrives before stock falls below the safety stock. A product whose stock would fall below it
  before a later delivery can arrive is ordered today, whatever discount waiting might bring,
  and its line says so;
* **how much**: the demand from the order day until the next order cycle after delivery, plus
  the safety stock, less what is in stock and on order then; rounded up to the pack size and
  raised to the minimum quantity and the minimum order value.

The actions below (propose, edit, approve, reject, send, receive, export, import terms) take the
acting ``Principal`` and a keyword-only ``session``, check role and company themselves, and
raise ordinary exceptions; the page, the CLI and the scheduler all call them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from procurement import demand as demand_mod
from procurement.auth import PermissionDenied, Principal, authorized_tenant
from procurement.buying import advice_policy, calendars, on_working_days
from procurement.config import Settings, get_settings
from procurement.data.importers import (
    MAX_ERRORS_REPORTED,
    ImportValidationError,
    RowError,
    _csv_strings,
    _label,
)
from procurement.db import catalog, history
from procurement.db import orders as q
from procurement.db.models import PurchaseOrder, PurchaseOrderEvent, PurchaseOrderLine
from procurement.recommend import Policy, price_text, recommend, shown_percent

log = logging.getLogger(__name__)

STATUSES = ("draft", "approved", "sent", "received", "cancelled")
# status -> the statuses an order may move to from it
TRANSITIONS = {
    "draft": ("approved", "cancelled"),
    "approved": ("sent", "received", "cancelled"),
    "sent": ("received", "cancelled"),
    "received": (),
    "cancelled": (),
}


class ApprovalLimitExceeded(PermissionDenied):
    """The order's total is above the acting role's approval limit: an administrator approves."""


class OrderStateError(ValueError):
    """The order is not in a status that allows the action (e.g. editing an approved order)."""


@dataclass(frozen=True)
class OrderPolicy:
    """What the proposal needs besides data: the price advice's bar, the default service level
    and how many days past delivery an order covers."""

    price: Policy = field(default_factory=Policy)
    service_level: float = 0.95
    order_cycle_days: int = 14

    @classmethod
    def from_settings(cls, settings: Settings, model: Any = None) -> OrderPolicy:
        """The settings' service level and order cycle, and the price advice ``model`` learned
        (the one the Recommendations page gives), else the settings' thresholds."""
        return cls(
            advice_policy(model, settings.min_confidence, settings.min_saving_pct),
            settings.service_level,
            settings.order_cycle_days,
        )


# --- the proposal (pure) -----------------------------------------------------------------------


def _day(d: pd.Timestamp) -> str:
    return f"{d:%a %d %b}"


def _round_quantity(need: float, pack: float, min_qty: float, min_value: float, price: float):
    """(quantity, note): ``need`` rounded up to whole packs, then raised to the minimum
    quantity and to the minimum order value at ``price``, each in whole packs."""
    pack = pack if pack > 0 else 1.0

    def packs(x: float) -> float:
        return math.ceil(x / pack - 1e-9) * pack

    qty = packs(max(need, 0.0))
    note = f"rounded up to packs of {pack:g}" if qty > need + 1e-9 and pack != 1 else ""
    if qty < min_qty - 1e-9:
        qty, note = packs(min_qty), f"raised to the minimum order of {min_qty:g}"
    if price > 0 and qty * price < min_value - 1e-9:
        qty, note = packs(min_value / price), f"raised to the minimum order value of {min_value:g}"
    return float(qty), note


def propose_lines(
    forecast: pd.DataFrame,
    demand: demand_mod.DemandForecast,
    items: pd.DataFrame,
    policy: OrderPolicy | None = None,
    working_days: Mapping[str, tuple[int, ...]] | None = None,
) -> pd.DataFrame:
    """Order lines due within the forecast horizon.

    ``forecast``: the price forecast (sku, date, y_pred, and p_cheaper, expected_saving when the
    model gives them); its first date is today. ``items``: one row per sku with supplier,
    currency, on_hand, on_order, lead_time_days, pack_size, min_qty, min_value, service_level
    (missing: the policy's). Returns one row per line: sku, supplier, currency, order_date,
    delivery_date, quantity, unit_price, price_today, saving_pct, confidence, waits (for a
    cheaper day), stockout_date (without an order), safety_stock, reorder_point, reason.
    ``working_days``: per sku, the weekdays its supplier takes orders (``buying.calendars``);
    with daily prices an order is then dated today or on one of them (a sku not named: Monday
    to Friday). None: any day (the order backtest, as measured).
    """
    policy = policy or OrderPolicy()
    fc = forecast.sort_values(["sku", "date"]).reset_index(drop=True)
    fc["date"] = pd.to_datetime(fc["date"])
    today = fc["date"].min()
    horizon = int(fc.groupby("sku").size().max()) if len(fc) else 0
    it = items.set_index("sku")
    it = it[it.index.isin(fc["sku"].unique())]
    lead = it["lead_time_days"].fillna(0).astype(int)
    level = it["service_level"].astype(float).fillna(policy.service_level)
    sigma = demand.sigma.reindex(it.index).fillna(0.0)
    ss = demand_mod.safety_stock(sigma, lead, level)
    paths = {
        sku: g["quantity"].to_numpy(float)
        for sku, g in demand.daily[demand.daily["date"] >= today].groupby("sku")
    }
    rows: dict[str, dict[str, Any]] = {}
    for sku, r in it.iterrows():
        path = paths.get(sku, np.zeros(horizon))
        if path.sum() <= 0:
            continue  # nothing is expected to sell: nothing to order
        on_hand = float(r["on_hand"]) if pd.notna(r["on_hand"]) else 0.0
        position = on_hand + float(r.get("on_order", 0.0) or 0.0)
        below = demand_mod.days_until_below(position, float(ss[sku]), path)
        if below is None:
            continue
        latest = below - int(lead[sku])
        if latest > horizon - 1:
            continue  # not due within the horizon: a later refresh proposes it
        rows[str(sku)] = {
            "latest": latest,
            "position": position,
            "path": path,
            "runs_out": demand_mod.days_until_below(on_hand, 0.0, path),
        }
    cols = [
        "sku",
        "supplier",
        "currency",
        "order_date",
        "delivery_date",
        "quantity",
        "unit_price",
        "price_today",
        "saving_pct",
        "confidence",
        "waits",
        "stockout_date",
        "safety_stock",
        "reorder_point",
        "reason",
        "target_price",
        "last_order_date",
    ]
    if not rows:
        return pd.DataFrame(columns=cols)
    due = list(rows)
    max_wait = pd.Series({s: float(max(rows[s]["latest"], 0)) for s in due})
    due_fc = fc[fc["sku"].isin(due)]
    open_days: dict[str, list[int]] = {}  # the days (from today) an order may be dated on
    if working_days is not None:
        due_fc = on_working_days(due_fc, working_days)
        offsets = (due_fc["date"] - today).dt.days
        open_days = offsets.groupby(due_fc["sku"]).agg(list).to_dict()
    recs = recommend(due_fc, policy.price, max_wait=max_wait).set_index("sku")
    free = recommend(due_fc, policy.price).set_index("sku")  # without the stock's limit
    pred = due_fc.set_index(["sku", "date"])["y_pred"]
    out = []
    for sku in due:
        rec, r, info = recs.loc[sku], it.loc[sku], rows[sku]
        wait = int((pd.Timestamp(rec["buy_date"]) - today).days)
        latest = info["latest"]
        if latest > 0 and working_days is not None:  # the last day it can wait and order on
            latest = max((d for d in open_days.get(sku, []) if d <= latest), default=0)
        rise = 0.0
        if wait == 0 and latest > 0:
            # no reliable saving from waiting: order today only if the price is forecast to
            # rise by the day it must be ordered, else on that day (less stock held, same price)
            ahead = pred.get((sku, today + pd.Timedelta(latest, "D")))
            first = float(rec["first_price"])
            if ahead is not None and abs(first) > 0:
                rise = 100 * (float(ahead) - first) / abs(first)
            wait = 0 if rise >= max(policy.price.of(sku).min_saving_pct, 1e-9) else latest
        order_date = today + pd.Timedelta(wait, "D")
        lt = int(lead[sku])
        path = info["path"]
        rate = float(path.mean())

        def demand_over(a: int, b: int, path: np.ndarray = path, rate: float = rate) -> float:
            """Forecast demand on days a..b-1 (past the path at its mean rate)."""
            inside = float(path[max(a, 0) : max(min(b, len(path)), 0)].sum())
            return inside + max(b - max(a, len(path)), 0) * rate

        at_order = info["position"] - demand_over(0, wait)
        need = demand_over(wait, wait + lt + policy.order_cycle_days) + float(ss[sku]) - at_order
        price = float(rec["buy_price"])
        qty, qty_note = _round_quantity(
            need,
            float(r.get("pack_size", 1.0) or 1.0),
            float(r.get("min_qty", 0.0) or 0.0),
            float(r.get("min_value", 0.0) or 0.0),
            price,
        )
        waits_for_target = (
            not bool(rec["buy_now"]) and latest >= 0 and pd.notna(rec.get("target_price"))
        )
        target = float(rec["target_price"]) if waits_for_target else np.nan
        last_day = pd.Timestamp(rec["last_buy_date"]) if waits_for_target else pd.NaT
        runs_out = info["runs_out"]
        stock_text = (
            f"stock lasts {runs_out} days" if runs_out is not None else "no stock-out expected"
        )
        parts = [f"{stock_text}, lead time {lt}"]
        when = "order today" if wait == 0 else f"order {_day(order_date)}"
        if latest < 0:
            parts.append("stock falls below safety stock before a delivery can arrive: order today")
        elif not bool(rec["buy_now"]):
            likely = (
                f"{rec['saving_pct']:.1f}% below today, "
                f"{int(shown_percent(float(rec['confidence'])))}% likely"
            )
            if waits_for_target:
                # the advice's target: a dip that comes early or late is not let go
                parts.append(
                    f"order once it costs {price_text(target)} or less, expected "
                    f"{_day(order_date)}, at the latest {_day(last_day)}: {likely}"
                )
            else:
                parts.append(f"price forecast lowest {_day(order_date)}, {likely}")
        elif not bool(free.loc[sku, "buy_now"]):
            f = free.loc[sku]
            parts.append(
                f"waiting until {_day(pd.Timestamp(f['buy_date']))} would save "
                f"{f['saving_pct']:.1f}%, but stock runs out first: {when}"
            )
        elif wait == 0 and latest > 0:
            parts.append(
                f"price forecast to rise {rise:.1f}% by {_day(today + pd.Timedelta(latest, 'D'))}: {when}"
            )
        else:
            parts.append(f"no reliable saving from waiting: {when}, when it is due")
        if qty_note:
            parts.append(qty_note)
        reason = "; ".join(parts)
        out.append(
            {
                "sku": sku,
                "supplier": r.get("supplier"),
                "currency": r.get("currency") or "USD",
                "order_date": order_date,
                "delivery_date": order_date + pd.Timedelta(lt, "D"),
                "quantity": qty,
                "unit_price": round(price, 4),
                "price_today": float(rec["first_price"]),
                "saving_pct": float(rec["saving_pct"]),
                "confidence": float(rec["confidence"]),
                "waits": wait > 0,
                "stockout_date": (
                    today + pd.Timedelta(runs_out, "D") if runs_out is not None else pd.NaT
                ),
                "safety_stock": float(ss[sku]),
                "reorder_point": rate * lt + float(ss[sku]),
                "reason": reason[0].upper() + reason[1:] + ".",
                # where the line waits for a target price: order on the first day it costs that
                # or less, on the last day at the latest
                "target_price": target,
                "last_order_date": last_day,
            }
        )
    return pd.DataFrame(out, columns=cols)


# --- actions -----------------------------------------------------------------------------------


def _items(session: Session, tenant_id: int) -> pd.DataFrame:
    """Catalog, stock, on-order quantities and supplier terms, one row per sku."""
    products = catalog.load_products(session, tenant_id)
    terms = q.load_terms(session, tenant_id)
    # the terms of the product's own supplier (a product has one supplier in the catalog)
    terms = terms.merge(products[["sku", "supplier"]], on=["sku", "supplier"], how="inner")
    items = products.merge(
        terms.rename(columns={"lead_time_days": "terms_lead"}), on=["sku", "supplier"], how="left"
    )
    lead = pd.to_numeric(items["terms_lead"], errors="coerce")
    items["lead_time_days"] = lead.fillna(
        pd.to_numeric(items["lead_time_days"], errors="coerce")
    ).fillna(7)
    items["on_order"] = items["sku"].map(q.on_order(session, tenant_id)).fillna(0.0)
    for col, default in (("pack_size", 1.0), ("min_qty", 0.0), ("min_value", 0.0)):
        items[col] = items[col].astype(float).fillna(default)
    return items.drop(columns=["terms_lead"])


def propose_orders(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    model: Any = None,
    settings: Settings | None = None,
) -> list[PurchaseOrder]:
    """Replace the company's unedited drafts with fresh proposals from its current model (or
    ``model``): demand forecast, stock, terms and price advice. Approved, sent, received,
    cancelled and edited orders are left alone; products on open or edited orders count their
    quantity as on order / are skipped."""
    settings = settings or get_settings()
    ten = authorized_tenant(session, tenant, actor, "orders")
    fc = None
    if model is None:
        from procurement.db import forecasts
        from procurement.forecast import store

        stored = store.load_shared(
            settings.model_dir, tenant, store.load_version_name(settings.model_dir, tenant)
        )
        model = stored.model
        # the forecasts the sidecar stored for this version: the same ones the pages show
        fc = forecasts.load_forecast(session, ten.id, stored.version)
    if fc is None:
        fc = model.predict()
    today = pd.to_datetime(fc["date"]).min()
    items = _items(session, ten.id)
    kept = q.kept_draft_skus(session, ten.id)
    items = items[~items["sku"].isin(kept)]
    sales = history.load_sales(session, ten.id, since=(today - pd.Timedelta(730, "D")).date())
    dem = demand_mod.forecast_demand(
        sales, today - pd.Timedelta(1, "D"), model.horizon, skus=list(items["sku"])
    )
    lines = propose_lines(
        fc, dem, items, OrderPolicy.from_settings(settings, model), working_days=calendars(items)
    )
    orders = q.replace_drafts(session, ten.id, lines, actor.username)
    log.info(
        "%s: %d draft orders with %d lines proposed by %s (demand %s)",
        tenant,
        len(orders),
        len(lines),
        actor.username,
        dem.metrics.get("method", "recent mean"),
    )
    return orders


def list_orders(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    statuses: list[str] | None = None,
    supplier: str | None = None,
) -> pd.DataFrame:
    ten = authorized_tenant(session, tenant, actor, "view")
    return q.list_orders(session, ten.id, statuses, supplier)


@dataclass(frozen=True)
class OrderView:
    id: int
    supplier: str
    order_date: dt.date
    status: str
    currency: str
    total: float
    lines: pd.DataFrame
    history: pd.DataFrame
    needs_admin: bool  # above the buyer's approval limit


def approval_limit(actor_role: str, settings: Settings | None = None) -> float | None:
    """The largest order total a role may approve (in the order's currency); None: no limit
    (a role not listed, as the administrators)."""
    return (settings or get_settings()).approval_limits.get(actor_role)


def get_order(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    order_id: int,
    settings: Settings | None = None,
) -> OrderView:
    settings = settings or get_settings()
    ten = authorized_tenant(session, tenant, actor, "view")
    order = q.get_order(session, ten.id, order_id)
    total = q.order_total(order)
    buyer_limit = approval_limit("buyer", settings)
    return OrderView(
        order.id,
        q.supplier_name(session, order),
        order.order_date,
        order.status,
        order.currency,
        total,
        q.order_lines(session, order),
        q.order_events(order),
        buyer_limit is not None and total > buyer_limit,
    )


def _order_for(
    actor: Principal, session: Session, tenant: str, order_id: int, to: str | None
) -> PurchaseOrder:
    ten = authorized_tenant(session, tenant, actor, "orders")
    order = q.get_order(session, ten.id, order_id)
    if to is not None and to not in TRANSITIONS[order.status]:
        raise OrderStateError(f"order {order_id} is {order.status}; it cannot become {to}")
    return order


def edit_line(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    order_id: int,
    line_id: int,
    quantity: float,
) -> None:
    """Change a draft line's quantity (0 removes the line); the draft is then kept by refreshes."""
    order = _order_for(actor, session, tenant, order_id, None)
    if order.status != "draft":
        raise OrderStateError(f"order {order_id} is {order.status}; only drafts can be edited")
    if not (quantity >= 0 and math.isfinite(quantity)):
        raise ValueError("quantity must be a number >= 0")
    line = next((li for li in order.lines if li.id == line_id), None)
    if line is None:
        raise q.NoSuchOrder(f"order {order_id} has no line {line_id}")
    if quantity == 0:
        order.lines.remove(line)
    else:
        line.quantity = float(quantity)
    order.edited_by = actor.username[:100]
    session.flush()


def set_order_date(
    actor: Principal, *, session: Session, tenant: str, order_id: int, order_date: dt.date
) -> None:
    """Move a draft to another order day; delivery dates move with it."""
    order = _order_for(actor, session, tenant, order_id, None)
    if order.status != "draft":
        raise OrderStateError(f"order {order_id} is {order.status}; only drafts can be edited")
    shift = order_date - order.order_date
    order.order_date = order_date
    for line in order.lines:
        if line.delivery_date is not None:
            line.delivery_date = line.delivery_date + shift
    order.edited_by = actor.username[:100]
    session.flush()


def approve(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    order_id: int,
    settings: Settings | None = None,
) -> None:
    """Approve a draft. Above the actor's role's approval limit only an administrator may."""
    settings = settings or get_settings()
    order = _order_for(actor, session, tenant, order_id, "approved")
    if not order.lines:
        raise OrderStateError(f"order {order_id} has no lines")
    total = q.order_total(order)
    limit = approval_limit(actor.role, settings)
    if limit is not None and total > limit:
        raise ApprovalLimitExceeded(
            f"order {order_id} totals {total:,.2f} {order.currency}, above the {actor.role}'s "
            f"approval limit of {limit:,.2f}: an administrator must approve it"
        )
    q.add_event(order, "approved", actor.username, f"total {total:,.2f} {order.currency}")
    session.flush()


def reject(
    actor: Principal, *, session: Session, tenant: str, order_id: int, note: str = ""
) -> None:
    """Reject a draft, or cancel an approved or sent order."""
    order = _order_for(actor, session, tenant, order_id, "cancelled")
    q.add_event(order, "cancelled", actor.username, note or "rejected")
    session.flush()


def mark_sent(actor: Principal, *, session: Session, tenant: str, order_id: int) -> None:
    order = _order_for(actor, session, tenant, order_id, "sent")
    q.add_event(order, "sent", actor.username)
    session.flush()


def receive(actor: Principal, *, session: Session, tenant: str, order_id: int) -> None:
    """The goods arrived: the order's quantities are added to stock on hand."""
    order = _order_for(actor, session, tenant, order_id, "received")
    ten = authorized_tenant(session, tenant, actor, "orders")
    q.receive_stock(session, ten.id, order)
    q.add_event(order, "received", actor.username, "stock on hand updated")
    session.flush()


# --- export ------------------------------------------------------------------------------------


def export_csv(actor: Principal, *, session: Session, tenant: str, order_id: int) -> bytes:
    """One order's lines as CSV (UTF-8), with the order's number, supplier, date and status."""
    view = get_order(actor, session=session, tenant=tenant, order_id=order_id)
    lines = view.lines.drop(columns=["line_id"]).assign(
        order_id=view.id,
        supplier=view.supplier,
        order_date=view.order_date,
        status=view.status,
        currency=view.currency,
    )
    cols = [
        "order_id",
        "supplier",
        "order_date",
        "status",
        "sku",
        "name",
        "unit",
        "quantity",
        "unit_price",
        "amount",
        "currency",
        "delivery_date",
        "reason",
    ]
    return lines[cols].to_csv(index=False).encode("utf-8")


def export_pdf(actor: Principal, *, session: Session, tenant: str, order_id: int) -> bytes:
    """One order as a printable PDF: header, a table of lines, the total and the history."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    view = get_order(actor, session=session, tenant=tenant, order_id=order_id)
    ten = catalog.get_tenant(session, tenant)

    def text(s: object) -> str:  # the core fonts are Latin-1
        return str(s).encode("latin-1", "replace").decode("latin-1")

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 9, text(f"Purchase order {view.id}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("helvetica", "", 10)
    for line in (
        f"Buyer: {ten.name if ten else tenant}",
        f"Supplier: {view.supplier}",
        f"Order date: {view.order_date:%Y-%m-%d}    Status: {view.status}",
    ):
        pdf.cell(0, 6, text(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    widths = (30, 70, 22, 25, 25, 30, 28)
    head = ("SKU", "Product", "Quantity", "Unit", "Unit price", "Amount", "Delivery")
    pdf.set_font("helvetica", "B", 9)
    for w, h in zip(widths, head, strict=True):
        pdf.cell(w, 7, h, border=1)
    pdf.ln()
    pdf.set_font("helvetica", "", 9)
    for r in view.lines.itertuples(index=False):
        cells = (
            r.sku,
            str(r.name)[:45],
            f"{r.quantity:,.0f}" if float(r.quantity).is_integer() else f"{r.quantity:,.2f}",
            r.unit,
            f"{r.unit_price:,.2f}",
            f"{r.amount:,.2f}",
            f"{r.delivery_date:%Y-%m-%d}" if r.delivery_date else "",
        )
        for w, c in zip(widths, cells, strict=True):
            pdf.cell(w, 6, text(c), border=1)
        pdf.ln()
        pdf.set_font("helvetica", "I", 8)
        pdf.multi_cell(sum(widths), 5, text(f"    {r.reason}"), new_x=XPos.LMARGIN)
        pdf.set_font("helvetica", "", 9)
    pdf.set_font("helvetica", "B", 10)
    pdf.cell(
        0, 8, text(f"Total: {view.total:,.2f} {view.currency}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.set_font("helvetica", "", 8)
    for e in view.history.itertuples(index=False):
        pdf.cell(
            0,
            5,
            text(f"{e.at:%Y-%m-%d %H:%M} {e.status} by {e.by} {e.note}"),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    return bytes(pdf.output())


# --- supplier terms ----------------------------------------------------------------------------


def read_terms_csv(src: str | Path | IO[bytes] | bytes, source: str | None = None) -> pd.DataFrame:
    """``sku,supplier[,pack_size,min_qty,min_value,lead_time_days,service_level]``; every bad
    value is reported with its line and field."""
    label = _label(src, source)
    df = _csv_strings(src, label, ("sku", "supplier"))
    df["sku"] = df["sku"].str.strip()
    df["supplier"] = df["supplier"].str.strip()
    errors: list[RowError] = []
    out = pd.DataFrame({"sku": df["sku"], "supplier": df["supplier"]})
    rules = {
        "pack_size": (1.0, lambda v: v > 0, "a number > 0"),
        "min_qty": (0.0, lambda v: v >= 0, "a number >= 0"),
        "min_value": (0.0, lambda v: v >= 0, "a number >= 0"),
        "lead_time_days": (np.nan, lambda v: v >= 0 and float(v).is_integer(), "whole days >= 0"),
        "service_level": (np.nan, lambda v: 0.5 < v < 1, "a share between 0.5 and 1, e.g. 0.95"),
    }
    for col, (default, ok, what) in rules.items():
        raw = df[col].str.strip() if col in df.columns else pd.Series("", index=df.index)
        values = pd.to_numeric(raw.where(raw != "", None), errors="coerce")
        for i in range(len(df)):
            if raw.iloc[i] and not (np.isfinite(values.iloc[i]) and ok(values.iloc[i])):
                errors.append(RowError(i + 2, col, f"{raw.iloc[i]!r} is not {what}"))
        out[col] = values.fillna(default)
    for col in ("sku", "supplier"):
        errors += [
            RowError(int(i) + 2, col, "is blank")
            for i in np.flatnonzero((out[col] == "").to_numpy())
        ]
    dup = out.duplicated(["sku", "supplier"])
    errors += [
        RowError(int(i) + 2, "sku", f"{out['sku'].iloc[i]} with {out['supplier'].iloc[i]} twice")
        for i in np.flatnonzero(dup.to_numpy())
    ]
    if errors:
        errors.sort(key=lambda e: e.line or 0)
        raise ImportValidationError(errors[:MAX_ERRORS_REPORTED], label)
    return out


def import_terms(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    src: str | Path | IO[bytes] | bytes,
    source: str | None = None,
) -> int:
    """Store supplier terms from a CSV (like the catalog: nothing is stored on any error;
    unknown skus are refused with their line)."""
    ten = authorized_tenant(session, tenant, actor, "import")
    label = _label(src, source)
    df = read_terms_csv(src, label)
    known = set(q.product_ids(session, ten.id))
    unknown = [
        RowError(i + 2, "sku", f"{sku} is not in the catalog")
        for i, sku in enumerate(df["sku"])
        if sku not in known
    ]
    if unknown:
        raise ImportValidationError(unknown[:MAX_ERRORS_REPORTED], label)
    n = q.store_terms(session, ten.id, df)
    history.record_import(
        session, ten.id, f"terms:{label}", history.UpsertCounts(updated=n), actor=actor.username
    )
    return n


def terms_table(actor: Principal, *, session: Session, tenant: str) -> pd.DataFrame:
    ten = authorized_tenant(session, tenant, actor, "view")
    return q.load_terms(session, ten.id)


def csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


# --- backtest of the ordering policy -----------------------------------------------------------


@dataclass
class _Sku:
    on_hand: float
    pipeline: list[tuple[pd.Timestamp, float]]
    stockout_days: int = 0
    unmet_value: float = 0.0  # demand not met, bought at that day's price
    spent: float = 0.0
    bought: float = 0.0
    at_mean: float = 0.0  # the same quantities at the period's mean price
    orders: int = 0

    @property
    def position(self) -> float:
        return self.on_hand + sum(qty for _, qty in self.pipeline)


def backtest_orders(
    prices: pd.DataFrame,
    sales: pd.DataFrame,
    items: pd.DataFrame,
    forecaster: Any,
    start: Any,
    days: int,
    *,
    policy: OrderPolicy | None = None,
    refit_every: int = 7,
    horizon: int = 14,
    progress: Any = None,
) -> dict[str, Any]:
    """Replay ordering day by day over ``days`` days of history from ``start``, twice: with the
    proposals (order on the planned day) and with the baseline that orders when the stock
    position reaches the reorder point, at that day's price. Both use the same demand forecast,
    safety stock and order-up-to quantity, so they differ only in the day they order.

    ``forecaster(cutoff)`` returns the price forecast made with data up to ``cutoff`` (its first
    date the day after), or that forecast and the advice policy its model learned, which then
    sets the price advice as it would in the app (the ``policy``'s otherwise); forecasts and
    demand are refreshed every ``refit_every`` days. Each day
    goods due arrive, orders are placed at the day's actual price, then the day's actual sales
    are taken from stock; a day a product cannot meet them is a stock-out day. Cost is the value
    of the goods used up: the stock at the start at the first day's price, plus the money spent,
    less the stock left (and on order) at the end at the last day's price, so that ending the
    replay with more or less stock is neither a gain nor a loss by itself; demand a stock-out
    left unmet is added at that day's price, so both serve the same demand."""
    policy = policy or OrderPolicy()
    start = pd.Timestamp(start)
    px = prices.assign(date=pd.to_datetime(prices["date"])).set_index(["sku", "date"])["price"]
    sold = sales.assign(date=pd.to_datetime(sales["date"]))
    sold_on = sold.set_index(["sku", "date"])["quantity"]
    it = items.set_index("sku")
    skus = list(it.index)
    state = {
        name: {s: _Sku(float(it.loc[s, "on_hand"] or 0.0), []) for s in skus}
        for name in ("policy", "baseline")
    }
    # per sku: the planned order day, and the target price and last day where it waits for one
    plan: dict[str, tuple[pd.Timestamp, float, pd.Timestamp]] = {}
    target = rop = pd.Series(0.0, index=skus)
    lead = it["lead_time_days"].fillna(0).astype(int)
    period = px[
        (px.index.get_level_values("date") >= start)
        & (px.index.get_level_values("date") < start + pd.Timedelta(days, "D"))
    ]
    mean_price = period.groupby(level="sku").mean()
    refits = 0
    for k in range(days):
        today = start + pd.Timedelta(k, "D")
        if k % refit_every == 0:
            cutoff = today - pd.Timedelta(1, "D")
            made = forecaster(cutoff)
            fc, learned = made if isinstance(made, tuple) else (made, None)
            dem = demand_mod.forecast_demand(
                sold[sold["date"] <= cutoff], cutoff, horizon, skus=skus
            )
            rate = dem.mean().reindex(skus).fillna(0.0)
            level = it["service_level"].astype(float).fillna(policy.service_level)
            ss = demand_mod.safety_stock(dem.sigma.reindex(skus).fillna(0.0), lead, level)
            rop = rate * lead + ss
            target = rate * (lead + policy.order_cycle_days) + ss
            now = it.assign(
                on_hand=[state["policy"][s].on_hand for s in skus],
                on_order=[state["policy"][s].position - state["policy"][s].on_hand for s in skus],
            ).reset_index()
            advised = policy if learned is None else dataclasses.replace(policy, price=learned)
            lines = propose_lines(fc, dem, now, advised)
            plan = {
                r.sku: (pd.Timestamp(r.order_date), float(r.target_price), r.last_order_date)
                for r in lines.itertuples(index=False)
            }
            refits += 1
            if progress:
                progress(k, days)
        for name, book in state.items():
            for s in skus:
                st = book[s]
                due = [qty for day, qty in st.pipeline if day <= today]
                st.on_hand += sum(due)
                st.pipeline = [(day, qty) for day, qty in st.pipeline if day > today]
                price = px.get((s, today))
                if price is None or not np.isfinite(price):
                    continue
                order = st.position <= rop[s] + 1e-9  # the reorder point is reached
                if name == "policy" and s in plan:
                    day, target_price, last_day = plan[s]
                    if np.isfinite(target_price):
                        # as a buyer follows the advice: the first day it costs the target or
                        # less, else its last day
                        ready = today >= last_day or float(price) <= target_price
                    else:
                        ready = today >= day  # the planned (cheapest forecast) day
                    if ready:
                        del plan[s]
                        order = True
                if not order:
                    continue
                qty, _ = _round_quantity(
                    float(target[s] - st.position),
                    float(it.loc[s].get("pack_size", 1.0) or 1.0),
                    float(it.loc[s].get("min_qty", 0.0) or 0.0),
                    float(it.loc[s].get("min_value", 0.0) or 0.0),
                    float(price),
                )
                if qty <= 0:
                    continue
                st.pipeline.append((today + pd.Timedelta(int(lead[s]), "D"), qty))
                st.spent += qty * float(price)
                st.bought += qty
                st.at_mean += qty * float(mean_price.get(s, price))
                st.orders += 1
        for book in state.values():
            for s in skus:
                st = book[s]
                want = float(sold_on.get((s, today), 0.0))
                if want > st.on_hand + 1e-9:
                    st.stockout_days += 1
                    price = px.get((s, today))
                    if price is not None and np.isfinite(price):
                        st.unmet_value += (want - st.on_hand) * float(price)
                st.on_hand = max(st.on_hand - want, 0.0)
    last = start + pd.Timedelta(days - 1, "D")
    dated = prices.assign(date=pd.to_datetime(prices["date"]))
    first_price = dated[dated["date"] >= start].sort_values("date").groupby("sku")["price"].first()
    start_value = sum(
        float(it.loc[s, "on_hand"] or 0.0) * float(first_price.get(s, 0.0)) for s in skus
    )
    last_price = dated[dated["date"] <= last].sort_values("date").groupby("sku")["price"].last()
    out: dict[str, Any] = {
        "start": f"{start:%Y-%m-%d}",
        "days": days,
        "products": len(skus),
        "refit_every_days": refit_every,
        "forecasts_made": refits,
    }
    for name, book in state.items():
        spent = sum(st.spent for st in book.values())
        left = sum((st.position) * float(last_price.get(s, 0.0)) for s, st in book.items())
        bought = sum(st.bought for st in book.values())
        unmet = sum(st.unmet_value for st in book.values())
        out[f"{name}_cost"] = round(start_value + spent - left + unmet, 2)
        out[f"{name}_unmet_demand_value"] = round(unmet, 2)
        out[f"{name}_spent"] = round(spent, 2)
        out[f"{name}_stock_value_at_end"] = round(left, 2)
        out[f"{name}_units_bought"] = round(bought, 2)
        at_mean = sum(st.at_mean for st in book.values())
        # what was paid against the same quantities at each product's mean price of the period
        out[f"{name}_paid_vs_mean_price_pct"] = (
            round(100 * (spent / at_mean - 1), 3) if at_mean else None
        )
        out[f"{name}_orders"] = sum(st.orders for st in book.values())
        out[f"{name}_stockout_days"] = sum(st.stockout_days for st in book.values())
    if out["baseline_cost"]:
        out["saving_pct"] = round(
            100 * (out["baseline_cost"] - out["policy_cost"]) / abs(out["baseline_cost"]), 3
        )
    return out


def run_order_backtest(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    days: int = 84,
    refit_every: int = 7,
    n_estimators: int = 60,
    settings: Settings | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """``backtest_orders`` on a company's stored history: the last ``days`` days are replayed,
    the price model refitted (``n_estimators`` trees) on the data before each forecast day.
    Stock on hand today is taken as the stock at the start of the replay."""
    from dataclasses import replace

    from procurement.forecast.model import TrainingData, fit_price_model
    from procurement.training import params_from

    settings = settings or get_settings()
    ten = authorized_tenant(session, tenant, actor, "view")
    prices = history.load_prices(session, ten.id)
    sales = history.load_sales(session, ten.id)
    drivers = history.load_drivers(session, ten.id).rename(columns={"date": "ds"})
    items = _items(session, ten.id)
    if prices.empty:
        raise ValueError(f"{tenant} has no prices")
    last = prices["date"].max()
    start = last - pd.Timedelta(days - 1, "D")
    if start - prices["date"].min() < pd.Timedelta(120, "D"):
        raise ValueError(f"{tenant}: too little history before the last {days} days")
    params = replace(
        params_from(settings),
        n_estimators=n_estimators,
        conformal_windows=min(settings.conformal_windows, 4),
        max_history=min(settings.train_max_days, 365),
    )
    categories = dict(zip(items["sku"], items["category"], strict=True))
    panel = prices.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
    sold = sales.rename(columns={"sku": "unique_id", "date": "ds"})

    def forecaster(cutoff: pd.Timestamp) -> tuple[pd.DataFrame, Policy | None]:
        data = TrainingData(
            prices=panel[panel["ds"] <= cutoff],
            drivers=drivers[drivers["ds"] <= cutoff] if len(drivers) else None,
            sales=sold[sold["ds"] <= cutoff] if len(sold) else None,
            categories=categories,
            until=cutoff,
        )
        model = fit_price_model(data, "D", settings.horizon, params)
        # the advice each refit learned, as the proposals in the app use it
        return model.predict(), model.policy

    return backtest_orders(
        prices,
        sales,
        items,
        forecaster,
        start,
        days,
        policy=OrderPolicy.from_settings(settings),
        refit_every=refit_every,
        horizon=settings.horizon,
        progress=progress,
    )


# --- one draft on request (the assistant) ------------------------------------------------------


def draft_order(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    sku: str,
    quantity: float,
    note: str = "",
    order_date: dt.date | None = None,
) -> PurchaseOrder:
    """A draft order for ``quantity`` of one product from its supplier, at its latest price,
    dated ``order_date`` (default: the day after the company's newest price, the first forecast
    day). The quantity is raised to the supplier's pack size and minimums, and the line says so.
    The draft is marked as a person's (``edited_by``), so refreshes keep it; it is never
    approved or sent here: it waits on the Orders page."""
    ten = authorized_tenant(session, tenant, actor, "orders")
    if not (isinstance(quantity, int | float) and math.isfinite(quantity) and quantity > 0):
        raise ValueError("quantity must be a number > 0")
    items = _items(session, ten.id)
    hit = items[items["sku"] == sku]
    if hit.empty:
        raise q.NoSuchOrder(f"no product {sku!r} in this company")
    item = hit.iloc[0]
    own = history.product_prices(session, ten.id, sku, days=1)
    if own.empty:
        raise ValueError(f"{sku} has no price yet: import its prices first")
    last = own.iloc[-1]
    price = float(last["price"])
    day = order_date or (pd.Timestamp(last["date"]).date() + dt.timedelta(days=1))
    qty, qty_note = _round_quantity(
        float(quantity),
        float(item.get("pack_size", 1.0) or 1.0),
        float(item.get("min_qty", 0.0) or 0.0),
        float(item.get("min_value", 0.0) or 0.0),
        price,
    )
    lead = int(item["lead_time_days"])
    parts = [
        note.strip() or f"requested by {actor.username}",
        f"latest price {price:,.2f} on {pd.Timestamp(last['date']):%Y-%m-%d}",
    ]
    if qty_note:
        parts.append(f"{float(quantity):g} asked, {qty_note}")
    reason = "; ".join(parts)
    sups = q.supplier_ids(session, ten.id)
    order = PurchaseOrder(
        tenant_id=ten.id,
        supplier_id=sups.get(str(item["supplier"])) if pd.notna(item["supplier"]) else None,
        order_date=day,
        status="draft",
        currency=str(item.get("currency") or "USD")[:3],
        created_by=actor.username[:100],
        edited_by=actor.username[:100],
    )
    order.lines.append(
        PurchaseOrderLine(
            product_id=q.product_ids(session, ten.id)[sku],
            quantity=qty,
            unit_price=price,
            delivery_date=day + dt.timedelta(days=lead),
            reason=(reason[0].upper() + reason[1:])[:500],
        )
    )
    order.events.append(
        PurchaseOrderEvent(status="draft", actor=actor.username[:100], note="drafted on request")
    )
    session.add(order)
    session.flush()
    log.info("%s: draft order %d for %g %s by %s", tenant, order.id, qty, sku, actor.username)
    return order
