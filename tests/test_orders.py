"""Purchase orders: the proposal on tiny exact cases, the order backtest, and the actions on
SQLite and MariaDB (approval limits, received goods, refresh, terms import, PDF and CSV)."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
import pytest
from conftest import END
from pypdf import PdfReader

from procurement import auth, orders
from procurement.auth import PermissionDenied, Principal
from procurement.config import Settings
from procurement.data.importers import ImportValidationError, validate_prices
from procurement.db import catalog, history
from procurement.db import orders as q
from procurement.db.models import Stock
from procurement.demand import DemandForecast, days_until_below, forecast_demand, safety_stock
from procurement.orders import backtest_orders, propose_lines
from procurement.recommend import Policy

TODAY = pd.Timestamp("2026-07-01")  # a Wednesday
DATES = pd.date_range(TODAY, periods=14, freq="D")
DIP = [10.0] * 5 + [9.0] + [10.0] * 8  # 10% cheaper on day 5 (Mon 06 Jul), 90% likely
P_DIP = [0.0] * 5 + [0.9] + [0.0] * 8


def price_forecast(prices: dict[str, list[float]], p: list[float] | None = None) -> pd.DataFrame:
    frames = []
    for sku, path in prices.items():
        arr = np.array(path)
        frames.append(
            pd.DataFrame(
                {
                    "sku": sku,
                    "date": DATES,
                    "y_pred": arr,
                    "p_cheaper": p if p is not None else np.zeros(len(arr)),
                    "expected_saving": arr[0] - arr,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def flat_demand(rates: dict[str, float], sigma: float = 0.0) -> DemandForecast:
    skus = list(rates)
    return DemandForecast(
        pd.DataFrame(
            {
                "sku": np.repeat(skus, 14),
                "date": np.tile(DATES, len(skus)),
                "quantity": np.repeat([rates[s] for s in skus], 14),
            }
        ),
        pd.Series(sigma, index=skus),
        pd.Series("model", index=skus),
    )


def items(**rows: dict) -> pd.DataFrame:
    base = {
        "supplier": "Acme",
        "currency": "USD",
        "on_order": 0.0,
        "lead_time_days": 2,
        "pack_size": 1.0,
        "min_qty": 0.0,
        "min_value": 0.0,
        "service_level": np.nan,
    }
    return pd.DataFrame([{"sku": sku, **base, **r} for sku, r in rows.items()])


# --- the proposal ------------------------------------------------------------------------------


def test_propose_waits_for_the_cheapest_day_when_stock_lasts() -> None:
    """100 in stock, 10 a day, lead time 2: the order may wait until day 8; the dip on day 5
    is taken, and the quantity covers 2 + 14 days from then less the 50 left."""
    lines = propose_lines(
        price_forecast({"A": DIP}, P_DIP), flat_demand({"A": 10.0}), items(A={"on_hand": 100.0})
    )
    line = lines.iloc[0]
    assert line["order_date"] == pd.Timestamp("2026-07-06")
    assert line["delivery_date"] == pd.Timestamp("2026-07-08")
    assert line["quantity"] == 110.0
    assert line["unit_price"] == 9.0
    assert line["reason"] == (
        "Stock lasts 10 days, lead time 2; price forecast lowest Mon 06 Jul, 10.0% below today, "
        "90% likely."
    )


def test_a_line_that_waits_for_a_target_price_says_it_and_when_to_order_at_the_latest() -> None:
    """The learned advice carries a target price: the line is priced at it and dated on the
    dip, and says to order sooner once the price is down to it, up to three days after the
    dip (Thu 09 Jul, also the last day a delivery arrives before stock runs low)."""
    policy = orders.OrderPolicy(Policy(0.7, 0.5, target_price=True, grace_steps=3))
    lines = propose_lines(
        price_forecast({"A": DIP}, P_DIP),
        flat_demand({"A": 10.0}),
        items(A={"on_hand": 100.0}),
        policy,
    )
    line = lines.iloc[0]
    assert line["order_date"] == pd.Timestamp("2026-07-06") and line["unit_price"] == 9.0
    assert line["reason"] == (
        "Stock lasts 10 days, lead time 2; order once it costs 9.00 or less, expected Mon 06 "
        "Jul, at the latest Thu 09 Jul: 10.0% below today, 90% likely."
    )
    # the stock caps the last day: 80 in stock, a delivery must be ordered by day 6
    short = propose_lines(
        price_forecast({"A": DIP}, P_DIP),
        flat_demand({"A": 10.0}),
        items(A={"on_hand": 80.0}),
        policy,
    )
    assert "at the latest Tue 07 Jul" in short.iloc[0]["reason"]
    # a part at a fraction of a cent keeps its digits, as the advice's own sentence does
    cheap = propose_lines(
        price_forecast({"A": [p / 1000 for p in DIP]}, P_DIP),
        flat_demand({"A": 10.0}),
        items(A={"on_hand": 100.0}),
        policy,
    )
    assert "order once it costs 0.009 or less" in cheap.iloc[0]["reason"]


def test_propose_orders_today_when_stock_runs_out_before_the_discount() -> None:
    """20 in stock, 10 a day, lead time 2: stock is gone before a delivery ordered later than
    today arrives, so the 10% dip on day 5 is not waited for, and the line says so."""
    lines = propose_lines(
        price_forecast({"B": DIP}, P_DIP), flat_demand({"B": 10.0}), items(B={"on_hand": 20.0})
    )
    line = lines.iloc[0]
    assert line["order_date"] == TODAY
    assert not line["waits"]
    assert line["unit_price"] == 10.0
    assert "waiting until Mon 06 Jul would save 10.0%, but stock runs out first" in line["reason"]


def test_propose_orders_on_the_due_day_when_no_saving_is_reliable() -> None:
    """A flat price: no reason to order early, so the order is dated the last day a delivery
    still arrives in time (day 8)."""
    lines = propose_lines(
        price_forecast({"A": [10.0] * 14}), flat_demand({"A": 10.0}), items(A={"on_hand": 100.0})
    )
    assert lines.iloc[0]["order_date"] == TODAY + pd.Timedelta(8, "D")
    assert "no reliable saving from waiting: order Thu 09 Jul" in lines.iloc[0]["reason"]


def test_propose_orders_today_when_the_price_is_forecast_to_rise() -> None:
    rising = list(np.linspace(10.0, 11.3, 14))
    lines = propose_lines(
        price_forecast({"A": rising}), flat_demand({"A": 10.0}), items(A={"on_hand": 100.0})
    )
    assert lines.iloc[0]["order_date"] == TODAY
    assert "price forecast to rise 8.0% by Thu 09 Jul: order today" in lines.iloc[0]["reason"]


def test_proposed_orders_fall_on_the_suppliers_working_days() -> None:
    """A 10% dip on Saturday 4 Jul is ordered on that day from a supplier that works Saturdays,
    never from a Monday-to-Friday one (then no saving is left: the order waits for the last
    day a delivery arrives in time, Thu 09); a Mon/Wed supplier gets it on Wed 08, the last of
    its days before that."""
    sat = [10.0] * 3 + [9.0] + [10.0] * 10
    p_sat = [0.0] * 3 + [0.9] + [0.0] * 10

    def order_day(working_days: dict[str, tuple[int, ...]] | None) -> str:
        lines = propose_lines(
            price_forecast({"A": sat}, p_sat),
            flat_demand({"A": 10.0}),
            items(A={"on_hand": 100.0}),
            working_days=working_days,
        )
        return f"{lines.iloc[0]['order_date']:%a %d}"

    assert order_day(None) == "Sat 04"  # no calendar: any day (the order backtest)
    assert order_day({}) == "Thu 09"  # Monday to Friday by default
    assert order_day({"A": (5,)}) == "Sat 04"
    assert order_day({"A": (0, 2)}) == "Wed 08"


def test_propose_nothing_when_stock_lasts_beyond_the_horizon() -> None:
    lines = propose_lines(
        price_forecast({"A": DIP}, P_DIP), flat_demand({"A": 10.0}), items(A={"on_hand": 500.0})
    )
    assert lines.empty


def test_propose_counts_stock_on_order() -> None:
    lines = propose_lines(
        price_forecast({"A": DIP}, P_DIP),
        flat_demand({"A": 10.0}),
        items(A={"on_hand": 20.0, "on_order": 400.0}),
    )
    assert lines.empty


@pytest.mark.parametrize(
    ("terms", "quantity", "note"),
    [
        ({"pack_size": 25.0}, 150.0, "rounded up to packs of 25"),  # 130 needed
        ({"min_qty": 500.0}, 500.0, "raised to the minimum order of 500"),
        ({"min_value": 2000.0}, 200.0, "raised to the minimum order value of 2000"),  # at 10.0
        ({"min_value": 2010.0, "pack_size": 25.0}, 225.0, "minimum order value of 2010"),
    ],
)
def test_propose_quantity_respects_pack_size_and_minimums(
    terms: dict, quantity: float, note: str
) -> None:
    lines = propose_lines(
        price_forecast({"B": [10.0] * 14}),
        flat_demand({"B": 10.0}),
        items(B={"on_hand": 30.0, "lead_time_days": 2, **terms}),
    )
    assert lines.iloc[0]["quantity"] == quantity
    assert note in lines.iloc[0]["reason"]


def test_safety_stock_and_service_level() -> None:
    """z(95%) = 1.645; error 10 a day over a 4-day lead time: 1.645 * 10 * 2."""
    ss = safety_stock(pd.Series({"A": 10.0}), pd.Series({"A": 4}), pd.Series({"A": 0.95}))
    assert ss["A"] == pytest.approx(32.897, abs=1e-3)
    lines = propose_lines(
        price_forecast({"A": [10.0] * 14}),
        flat_demand({"A": 10.0}, sigma=10.0),
        items(A={"on_hand": 100.0, "lead_time_days": 4, "service_level": 0.95}),
    )
    assert lines.iloc[0]["safety_stock"] == pytest.approx(32.897, abs=1e-3)
    # the position falls below 32.9 after day 6 (100 - 70 = 30): order by day 6 - 4 = 2
    assert lines.iloc[0]["order_date"] == TODAY + pd.Timedelta(2, "D")


def test_days_until_below_extends_past_the_path_at_its_mean_rate() -> None:
    assert days_until_below(100.0, 0.0, np.full(14, 10.0)) == 10
    assert days_until_below(300.0, 0.0, np.full(14, 10.0)) == 30
    assert days_until_below(5.0, 0.0, np.zeros(14)) is None


def test_forecast_demand_uses_the_model_only_where_it_beats_the_recent_mean() -> None:
    """A strong weekly pattern over a year: the global model beats the flat recent mean in the
    backtest and forecasts the pattern; a product with two weeks of sales gets the fallback."""
    days = pd.date_range(end=pd.Timestamp(END), periods=365, freq="D")
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {
                "sku": f"W{i}",
                "date": days,
                "quantity": np.where(days.dayofweek >= 5, 2.0, 20.0) + rng.poisson(1, len(days)),
            }
        )
        for i in range(4)
    ]
    frames.append(pd.DataFrame({"sku": "NEW", "date": days[-14:], "quantity": 3.0}))
    fc = forecast_demand(pd.concat(frames), END, 14, n_estimators=60)
    assert fc.metrics["wape_model"] < fc.metrics["wape_recent_mean"]
    assert fc.method["W0"] == "model" and fc.method["NEW"] == "recent mean"
    w0 = fc.daily[fc.daily["sku"] == "W0"].set_index("date")["quantity"]
    assert w0[w0.index.dayofweek >= 5].mean() < 8 < w0[w0.index.dayofweek < 5].mean()
    assert fc.mean()["NEW"] == pytest.approx(3.0)


# --- the order backtest ------------------------------------------------------------------------


def _dip_history() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One product at 10.0 except 8.0 on every 14th day, 10 sold a day, lead time 2."""
    days = pd.date_range("2026-01-01", "2026-06-30", freq="D")
    price = np.where(np.arange(len(days)) % 14 == 13, 8.0, 10.0)
    prices = pd.DataFrame({"sku": "A", "date": days, "price": price})
    sales = pd.DataFrame({"sku": "A", "date": days, "quantity": 10.0})
    return prices, sales, items(A={"on_hand": 150.0})


def _oracle(prices: pd.DataFrame, late: int = 0):  # type: ignore[no-untyped-def]
    """A forecaster that knows the future prices: the policy's best case (``late``: it sees
    each of them that many days late)."""

    def forecast(cutoff: pd.Timestamp) -> pd.DataFrame:
        dates = pd.date_range(cutoff + pd.Timedelta(1, "D"), periods=14, freq="D")
        path = prices.set_index("date")["price"].reindex(dates - pd.Timedelta(late, "D"))
        path = path.to_numpy()
        return pd.DataFrame(
            {
                "sku": "A",
                "date": dates,
                "y_pred": path,
                "p_cheaper": np.where(path < path[0], 0.99, 0.0),
                "expected_saving": path[0] - path,
            }
        )

    return forecast


def test_backtest_orders_policy_buys_the_dips_the_baseline_misses() -> None:
    prices, sales, its = _dip_history()
    res = backtest_orders(prices, sales, its, _oracle(prices), "2026-04-01", 84)
    assert res["policy_stockout_days"] == 0 and res["baseline_stockout_days"] == 0
    assert res["policy_cost"] < res["baseline_cost"]
    assert res["policy_paid_vs_mean_price_pct"] < res["baseline_paid_vs_mean_price_pct"]


def test_backtest_orders_advises_with_the_policy_each_refit_learned(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A forecaster may return the policy its model learned with its forecast; the proposals of
    the replay then advise with it, as the app's do, and otherwise with the given one."""
    from procurement.recommend import NEVER_WAIT

    prices, sales, its = _dip_history()
    oracle = _oracle(prices)
    seen: list[Policy] = []
    real = orders.propose_lines

    def spy(fc, dem, items_now, policy, working_days=None):  # type: ignore[no-untyped-def]
        seen.append(policy.price)
        return real(fc, dem, items_now, policy, working_days)

    monkeypatch.setattr(orders, "propose_lines", spy)
    learned = Policy(NEVER_WAIT, 0.0, target_price=True, grace_steps=3)
    backtest_orders(prices, sales, its, lambda c: (oracle(c), learned), "2026-04-01", 28)
    assert seen and all(p == learned for p in seen)
    seen.clear()
    backtest_orders(prices, sales, its, oracle, "2026-04-01", 28)
    assert seen and all(p == orders.OrderPolicy().price for p in seen)


def test_backtest_orders_buys_on_the_day_the_price_reaches_the_lines_target() -> None:
    """A line that waits for a target price is ordered the first day the price gets there, as a
    buyer follows the advice, not on the forecast's day: a dip that comes two days before the
    forecast said is caught with the target and missed without it."""
    prices, sales, its = _dip_history()
    late = _oracle(prices, late=2)  # every dip forecast 2 days after it comes

    def run(price: Policy) -> dict[str, object]:
        policy = orders.OrderPolicy(price=price)
        return backtest_orders(prices, sales, its, late, "2026-04-01", 84, policy=policy)

    with_target = run(Policy(0.5, 0.0, target_price=True, grace_steps=3))
    on_the_day = run(Policy(0.5, 0.0))
    assert with_target["policy_orders"] > 0 and on_the_day["policy_orders"] > 0
    # every planned order met the dip: paid 8.0 against a mean price of about 9.86
    assert with_target["policy_paid_vs_mean_price_pct"] < -15
    assert on_the_day["policy_paid_vs_mean_price_pct"] > -5
    assert with_target["policy_stockout_days"] == 0


def test_backtest_orders_with_a_flat_forecast_never_runs_out_more_than_the_baseline() -> None:
    prices, sales, its = _dip_history()

    def flat(cutoff: pd.Timestamp) -> pd.DataFrame:
        dates = pd.date_range(cutoff + pd.Timedelta(1, "D"), periods=14, freq="D")
        return pd.DataFrame({"sku": "A", "date": dates, "y_pred": 10.0, "p_cheaper": 0.0})

    res = backtest_orders(prices, sales, its, flat, "2026-04-01", 84)
    assert res["policy_stockout_days"] <= res["baseline_stockout_days"]
    assert {
        "policy_cost",
        "baseline_cost",
        "policy_stockout_days",
        "baseline_stockout_days",
    } <= set(res)


# --- actions on the database -------------------------------------------------------------------

LIMITS = Settings(approval_limits={"buyer": 1000.0}, min_confidence=0.7, min_saving_pct=0.5)


class StubModel:
    """Stands in for the price model: a fixed forecast starting the day after the data, and
    the advice policy it learned (None: the settings' thresholds)."""

    horizon = 14

    def __init__(
        self,
        prices: dict[str, list[float]],
        p: list[float] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.fc = price_forecast(prices, p)
        self.policy = policy

    def predict(self) -> pd.DataFrame:
        return self.fc.copy()


def _company(session, slug: str = "demo", stock: dict[str, float] | None = None) -> int:  # type: ignore[no-untyped-def]
    """Two products of supplier Acme with 120 days of prices and 10 sold a day up to the day
    before ``TODAY``, and their stock (lead time 2)."""
    days = pd.date_range(TODAY - pd.Timedelta(120, "D"), TODAY - pd.Timedelta(1, "D"))
    rows = pd.DataFrame(
        {
            "sku": np.repeat(["A", "B"], len(days)),
            "date": np.tile(days.date, 2),
            "price": 10.0,
            "quantity": 10.0,
            "supplier": "Acme",
        }
    )
    ten = catalog.get_or_create_tenant(session, slug)
    history.store_prices(session, ten.id, validate_prices(rows))
    stock = stock or {"A": 100.0, "B": 20.0}
    catalog.store_stock(
        session,
        ten.id,
        pd.DataFrame({"sku": list(stock), "on_hand": list(stock.values()), "lead_time_days": 2}),
    )
    # committed: on MariaDB bulk reads go through their own connection (connectorx)
    session.commit()
    return ten.id


BUYER = Principal("buyer", "buyer", None)


def _buyer(tid: int) -> Principal:
    return Principal("buyer", "buyer", tid)


def _propose(session, tid: int) -> list:  # type: ignore[no-untyped-def]
    model = StubModel({"A": DIP, "B": DIP}, P_DIP)
    return orders.propose_orders(
        _buyer(tid), session=session, tenant="demo", model=model, settings=LIMITS
    )


def test_propose_orders_groups_lines_per_supplier_and_day(session) -> None:  # type: ignore[no-untyped-def]
    tid = _company(session)
    made = _propose(session, tid)
    table = orders.list_orders(_buyer(tid), session=session, tenant="demo")
    assert len(made) == 2  # B today, A on the dip
    assert list(table["order_date"]) == [dt.date(2026, 7, 1), dt.date(2026, 7, 6)]
    assert set(table["supplier"]) == {"Acme"} and set(table["status"]) == {"draft"}
    view = orders.get_order(_buyer(tid), session=session, tenant="demo", order_id=made[1].id)
    assert list(view.lines["sku"]) == ["A"]
    assert view.history["status"].tolist() == ["draft"]


def test_proposed_orders_follow_the_advice_the_model_learned(session) -> None:  # type: ignore[no-untyped-def]
    """The Recommendations page advises with the model's learned policy; the orders do too. A
    model that learned to wait only when 95% sure does not wait for a dip stated 90% likely,
    though the settings' own bar (70%) would."""
    tid = _company(session)
    model = StubModel({"A": DIP, "B": DIP}, P_DIP, policy=Policy(0.95, 0.5))
    orders.propose_orders(_buyer(tid), session=session, tenant="demo", model=model, settings=LIMITS)
    table = orders.list_orders(_buyer(tid), session=session, tenant="demo")
    assert dt.date(2026, 7, 6) not in set(table["order_date"])
    view = orders.get_order(
        _buyer(tid), session=session, tenant="demo", order_id=int(table["id"].max())
    )
    assert "no reliable saving from waiting" in " ".join(view.lines["reason"])


def test_approval_above_the_buyers_limit_needs_an_admin(session) -> None:  # type: ignore[no-untyped-def]
    tid = _company(session)
    big = max(_propose(session, tid), key=q.order_total)
    assert q.order_total(big) > 1000
    with pytest.raises(orders.ApprovalLimitExceeded, match="an administrator must approve"):
        orders.approve(
            _buyer(tid), session=session, tenant="demo", order_id=big.id, settings=LIMITS
        )
    admin = Principal("boss", "admin", tid)
    orders.approve(admin, session=session, tenant="demo", order_id=big.id, settings=LIMITS)
    assert big.status == "approved"
    assert [(e.status, e.actor) for e in big.events] == [("draft", "buyer"), ("approved", "boss")]


def test_buyer_approves_below_the_limit_after_editing(session) -> None:  # type: ignore[no-untyped-def]
    tid = _company(session)
    order = _propose(session, tid)[0]
    line = order.lines[0]
    orders.edit_line(
        _buyer(tid),
        session=session,
        tenant="demo",
        order_id=order.id,
        line_id=line.id,
        quantity=50,
    )
    orders.approve(_buyer(tid), session=session, tenant="demo", order_id=order.id, settings=LIMITS)
    assert order.status == "approved" and order.edited_by == "buyer"
    with pytest.raises(orders.OrderStateError):
        orders.edit_line(
            _buyer(tid),
            session=session,
            tenant="demo",
            order_id=order.id,
            line_id=line.id,
            quantity=60,
        )


def test_viewers_read_and_other_companies_see_nothing(session) -> None:  # type: ignore[no-untyped-def]
    tid = _company(session)
    order = _propose(session, tid)[0]
    viewer = Principal("viewer", "viewer", tid)
    assert len(orders.list_orders(viewer, session=session, tenant="demo")) == 2
    with pytest.raises(PermissionDenied):
        orders.approve(viewer, session=session, tenant="demo", order_id=order.id, settings=LIMITS)
    other_tid = _company(session, "other")
    with pytest.raises(PermissionDenied):
        orders.get_order(_buyer(other_tid), session=session, tenant="demo", order_id=order.id)
    with pytest.raises(q.NoSuchOrder):
        orders.get_order(_buyer(other_tid), session=session, tenant="other", order_id=order.id)


def test_received_goods_update_stock_on_hand(session) -> None:  # type: ignore[no-untyped-def]
    tid = _company(session)
    order = _propose(session, tid)[0]  # B, today
    qty = order.lines[0].quantity
    admin = Principal("boss", "admin", None)
    for step in (orders.approve, orders.mark_sent, orders.receive):
        kw = {"settings": LIMITS} if step is orders.approve else {}
        step(admin, session=session, tenant="demo", order_id=order.id, **kw)
    stock = session.query(Stock).filter_by(tenant_id=tid).all()
    on_hand = {s.product_id: s.on_hand for s in stock}
    pid = q.product_ids(session, tid)["B"]
    assert on_hand[pid] == pytest.approx(20.0 + qty)
    assert [e.status for e in order.events] == ["draft", "approved", "sent", "received"]
    with pytest.raises(orders.OrderStateError):
        orders.receive(admin, session=session, tenant="demo", order_id=order.id)


def test_refresh_leaves_approved_and_edited_orders_alone(session) -> None:  # type: ignore[no-untyped-def]
    tid = _company(session)
    first = _propose(session, tid)
    admin = Principal("boss", "admin", None)
    approved = next(o for o in first if o.lines[0].product.sku == "B")
    orders.approve(admin, session=session, tenant="demo", order_id=approved.id, settings=LIMITS)
    qty = approved.lines[0].quantity
    again = _propose(session, tid)
    session.expire_all()
    table = orders.list_orders(admin, session=session, tenant="demo")
    kept = table[table["id"] == approved.id].iloc[0]
    assert kept["status"] == "approved" and kept["total"] == pytest.approx(qty * 10.0)
    # B is on order now: the refresh proposes A only, and does not order B twice
    assert [o.lines[0].product.sku for o in again] == ["A"]
    drafts = table[table["status"] == "draft"]
    assert len(drafts) == 1


def test_import_terms_reports_bad_lines_and_stores_nothing(session) -> None:  # type: ignore[no-untyped-def]
    tid = _company(session)
    bad = b"sku,supplier,pack_size,min_qty\nA,Acme,25,0\nZZZ,Acme,1,0\nB,Acme,-5,x\n"
    with pytest.raises(ImportValidationError) as exc:
        orders.import_terms(_buyer(tid), session=session, tenant="demo", src=bad, source="t.csv")
    assert [str(e) for e in exc.value.errors] == [
        "line 4, field 'pack_size': '-5' is not a number > 0",
        "line 4, field 'min_qty': 'x' is not a number >= 0",
    ]
    with pytest.raises(ImportValidationError, match="line 3, field 'sku': ZZZ is not in the"):
        orders.import_terms(
            _buyer(tid),
            session=session,
            tenant="demo",
            src=bad.replace(b"-5,x", b"5,0"),
            source="t.csv",
        )
    assert q.load_terms(session, tid).empty
    good = b"sku,supplier,pack_size,min_qty,lead_time_days\nB,Acme,25,0,2\n"
    assert orders.import_terms(_buyer(tid), session=session, tenant="demo", src=good) == 1
    made = _propose(session, tid)
    b = next(o for o in made if o.lines[0].product.sku == "B")
    assert b.lines[0].quantity == 150.0  # 130 needed, packs of 25


def test_export_csv_and_pdf_of_one_order(session) -> None:  # type: ignore[no-untyped-def]
    tid = _company(session)
    order = _propose(session, tid)[1]  # A on the dip
    kw = {"session": session, "tenant": "demo", "order_id": order.id}
    csv = pd.read_csv(io.BytesIO(orders.export_csv(_buyer(tid), **kw)))
    assert csv[["order_id", "supplier", "sku", "quantity", "unit_price", "amount"]].to_dict(
        "records"
    ) == [
        {
            "order_id": order.id,
            "supplier": "Acme",
            "sku": "A",
            "quantity": 110.0,
            "unit_price": 9.0,
            "amount": 990.0,
        }
    ]
    assert csv["reason"].iloc[0].startswith("Stock lasts 10 days, lead time 2; price forecast")
    text = "\n".join(
        p.extract_text() for p in PdfReader(io.BytesIO(orders.export_pdf(_buyer(tid), **kw))).pages
    )
    assert f"Purchase order {order.id}" in text
    assert "Supplier: Acme" in text and "Order date: 2026-07-06" in text
    assert "990.00" in text and "Total: 990.00 USD" in text
    assert "price forecast lowest Mon 06 Jul" in text


def test_orders_actions_refuse_unknown_companies(session) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown company"):
        orders.list_orders(auth.Principal.system(), session=session, tenant="nope")
