"""The backtest on files as they come from outside: sorted newest first, with missing days,
products that stopped, prices that never move, weekly quotes moved by a holiday."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from procurement.forecast.backtest import run_backtest
from procurement.forecast.features import infer_freq, regularize


def _walk(sku: str, dates: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    price = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates)))), 2)
    return pd.DataFrame({"sku": sku, "date": dates, "price": price})


@pytest.mark.parametrize(
    ("freq", "start", "periods"),
    [("W-MON", "2021-01-04", 200), ("MS", "2015-01-01", 120), ("D", "2024-01-01", 400)],
)
def test_the_frequency_is_read_whatever_order_the_rows_come_in(
    freq: str, start: str, periods: int
) -> None:
    dates = pd.date_range(start, periods=periods, freq=freq)
    rows = pd.concat([_walk(s, dates, i) for i, s in enumerate("ABC")], ignore_index=True)
    rows = rows.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
    assert infer_freq(rows) == freq
    # newest first (as many exports are), and shuffled: steps of -7 days had read as daily
    newest_first = rows.sort_values(["unique_id", "ds"], ascending=[True, False])
    assert infer_freq(newest_first) == freq
    assert infer_freq(rows.sample(frac=1.0, random_state=1)) == freq


def test_a_weekly_price_quoted_a_day_late_belongs_to_its_own_week() -> None:
    mondays = pd.date_range("2024-09-02", periods=8, freq="W-MON")
    quoted = mondays.to_series().reset_index(drop=True)
    quoted[5] += pd.Timedelta(1, "D")  # Monday a holiday: quoted on Tuesday
    df = pd.DataFrame({"unique_id": "A", "ds": quoted, "y": np.arange(8.0)})
    out = regularize(df, "W-MON")
    # it had gone to the next Monday, where that week's own price overwrote it
    assert list(out["ds"]) == list(mondays)
    assert list(out["y"]) == list(np.arange(8.0))
    assert out["observed"].all()


def test_every_window_starts_the_day_after_its_cutoff() -> None:
    dates = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    holiday = pd.Timestamp("2024-12-24")  # the cutoff of the one fold: A has no price that day
    a = _walk("A", dates, 0)
    a = a[a["date"] != holiday]
    b = _walk("B", dates, 1)
    stopped = _walk("C", dates[dates <= "2024-06-30"], 2)  # no longer quoted
    res = run_backtest(pd.concat([a, b, stopped]), horizon=7, folds=1)
    fc = res.forecasts
    assert (fc["cutoff"] == holiday).all()
    # A's window had started on its last price's next day, the cutoff itself, and missed the
    # last day of the window
    for sku in ("A", "B"):
        own = fc[fc["sku"] == sku].sort_values("date")
        assert list(own["date"]) == list(pd.date_range("2024-12-25", periods=7, freq="D"))
        assert own["p_cheaper"].iloc[0] == 0.0
    assert "C" not in set(fc["sku"])


def test_prices_that_never_move_are_forecast_exactly_without_a_crash() -> None:
    dates = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    shelf = pd.DataFrame(
        {"sku": "SHELF", "date": dates, "price": 10 + np.floor(np.arange(len(dates)) / 30) * 0.25}
    )
    res = run_backtest(shelf, horizon=7, folds=1)  # the window holds no price change
    m = res.metrics
    assert m["naive"]["mase"] == 0.0 and m["model"]["mase"] == 0.0
    assert m["model"]["mase_vs_naive"] == 1.0


def test_a_backtest_file_is_read_in_the_formats_a_price_import_reads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from procurement.data.importers import ImportValidationError, read_lenient

    iso = tmp_path / "iso.csv"
    iso.write_text("sku,date,price\nA,2025-01-30,1002.5\nA,2025-01-31,999.0\nB,2025-01-31,3\n")
    european = tmp_path / "eu.csv"
    european.write_text(
        "sku;date;price\n A ;30.01.2025;1.002,50\nA;31.01.2025;999,00\nB;31.01.2025;3\n"
    )
    us = tmp_path / "us.csv"
    us.write_text('sku,date,price\nA,01/30/2025,"1,002.50"\nA,01/31/2025,999.00\nB,1/31/2025,3\n')
    want = read_lenient(iso).frame
    assert list(want["date"].astype(str)) == ["2025-01-30", "2025-01-31", "2025-01-31"]
    for path in (european, us):
        got = read_lenient(path).frame
        # day-first dates, decimal commas and thousands separators had dropped every row, and a
        # padded " A " had been a product of its own
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))

    dollars = tmp_path / "dollars.csv"
    dollars.write_text("sku,date,price\nA,2025-01-30,$12.50\nA,2025-01-31,$12.60\n")
    with pytest.raises(ImportValidationError, match=r"line 2, field 'price': '\$12.50' is not a"):
        read_lenient(dollars)


def test_too_many_folds_for_the_history_say_how_many_fit() -> None:
    """Two years of weekly prices, 12 folds of 4 weeks: the first fold trains on a year, less
    than the model needs; the error says which fold, how much history, and how many folds fit."""
    weeks = pd.date_range("2024-07-01", periods=105, freq="W-MON")
    rows = pd.concat([_walk(s, weeks, i) for i, s in enumerate("ABC")], ignore_index=True)
    with pytest.raises(
        ValueError, match=r"first of 12 folds .* 57 periods .* use at most (\d+) folds"
    ) as err:
        run_backtest(rows, horizon=4, folds=12)
    fit = int(err.value.args[0].rsplit("at most ", 1)[1].split()[0])
    assert 1 <= fit < 12
    # as many as it says fit: the backtest runs
    assert not run_backtest(rows, horizon=4, folds=fit).forecasts.empty


def test_a_stray_date_a_year_after_the_rest_is_named_where_the_folds_find_no_prices() -> None:
    """The folds end at the file's newest date: one price mistyped a year ahead left them with
    no product quoted, and the error had said every series was too short."""
    dates = pd.date_range("2024-01-01", "2025-12-05", freq="D")
    rows = pd.concat([_walk(s, dates, i) for i, s in enumerate("ABCD")], ignore_index=True)
    stray = pd.DataFrame({"sku": ["B"], "date": [pd.Timestamp("2026-12-03")], "price": [101.0]})
    with pytest.raises(ValueError) as err:
        run_backtest(pd.concat([rows, stray], ignore_index=True), horizon=7, folds=2)
    text = str(err.value)
    assert "no product has a price close before a fold's end" in text
    assert "the file's newest date, 2026-12-03 (B)" in text
    assert "last prices are on 2025-12-05" in text
    assert "shorter" not in text


def test_a_weekly_frequency_naming_another_weekday_than_the_dates_says_so() -> None:
    """Friday quotes backtested as W-MON are dated on the Monday that ends their week: said,
    not silent. The weekday the dates fall on runs without a word."""
    fridays = pd.date_range("2022-01-07", periods=160, freq="W-FRI")
    rows = pd.concat([_walk(s, fridays, i) for i, s in enumerate("AB")], ignore_index=True)
    with pytest.warns(UserWarning, match=r"W-MON given for prices dated on Fris \(W-FRI\)"):
        run_backtest(rows, horizon=2, folds=1, freq="W-MON")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="frequency W-")
        run_backtest(rows, horizon=2, folds=1, freq="W-FRI")


def test_the_later_dated_of_two_quotes_in_one_week_is_kept_whatever_the_row_order() -> None:
    mondays = pd.date_range("2024-09-02", periods=6, freq="W-MON")
    quoted = mondays.to_series().reset_index(drop=True)
    quoted[2] -= pd.Timedelta(3, "D")  # quoted on the Friday before: it is that Monday's week
    df = pd.DataFrame({"unique_id": "A", "ds": quoted, "y": np.arange(6.0)})
    # and a second quote on the Monday itself, the newer price of the same week
    df = pd.concat([df, pd.DataFrame({"unique_id": ["A"], "ds": [mondays[2]], "y": [9.0]})])
    oldest_first = regularize(df.sort_values("ds"), "W-MON")
    newest_first = regularize(df.sort_values("ds", ascending=False), "W-MON")
    assert list(oldest_first["ds"]) == list(mondays)
    assert oldest_first["y"].tolist() == [0.0, 1.0, 9.0, 3.0, 4.0, 5.0]
    # newest first had kept the Friday's 2.0, the older quote
    pd.testing.assert_frame_equal(newest_first, oldest_first)


def test_a_fold_whose_cutoff_week_was_quoted_after_a_holiday_is_forecast_from_that_quote() -> None:
    mondays = pd.date_range("2019-01-07", periods=320, freq="W-MON")
    rows = pd.concat([_walk(s, mondays, i) for i, s in enumerate("ABCD")], ignore_index=True)
    cutoff = mondays[-5]  # the last fold's cutoff with horizon 4
    at_cutoff = rows["date"] == cutoff
    # the Monday was a holiday: quoted on Tuesday, 15% above the week before, and the walk
    # goes on from there
    later = rows["date"] >= cutoff
    rows.loc[later, "price"] = (rows.loc[later, "price"] * 1.15).round(2)
    rows.loc[at_cutoff, "date"] = cutoff + pd.Timedelta(1, "D")
    res = run_backtest(rows, horizon=4, folds=1)
    fc = res.forecasts.sort_values(["sku", "date"])
    assert (fc["cutoff"] == cutoff).all()
    quote = rows[rows["date"] == cutoff + pd.Timedelta(1, "D")].set_index("sku")["price"]
    first = fc.groupby("sku")["y_pred"].first()
    # a random walk is forecast near its last price: the Tuesday quote, which the naive
    # forecast uses too; the fold had been trained on the week before, 15% lower
    assert ((first / quote.reindex(first.index) - 1).abs() < 0.05).all(), (first, quote)


def test_daily_prices_backtested_as_weekly_say_so() -> None:
    days = pd.date_range("2022-01-03", periods=7 * 160, freq="D")
    rows = pd.concat([_walk(s, days, i) for i, s in enumerate("AB")], ignore_index=True)
    with pytest.warns(UserWarning, match=r"W-FRI given for daily prices"):
        run_backtest(rows, horizon=2, folds=1, freq="W-FRI")


def test_weekly_series_in_a_file_of_daily_prices_are_named() -> None:
    days = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    daily = [_walk(s, days, i) for i, s in enumerate("ABC")]
    weekly = _walk("WEEKLY", days[::7], 9)
    with pytest.warns(UserWarning, match=r"1 of 4 series are priced 5 or more days apart .*WEEKLY"):
        run_backtest(pd.concat([*daily, weekly]), horizon=7, folds=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*days apart")
        run_backtest(pd.concat(daily), horizon=7, folds=1)


def test_a_price_far_off_its_neighbours_is_named_but_a_decade_of_rises_and_negatives_are_not(
    tmp_path,
) -> None:
    from procurement.data.importers import read_lenient

    days = pd.date_range("2015-01-01", periods=3650, freq="D")
    rising = pd.DataFrame(
        {"sku": "RISE", "date": days, "price": np.round(10 * 1.3 ** (np.arange(3650) / 365), 2)}
    )  # 13x over the file: a whole-file median would call both ends outliers
    power = _walk("POWER", days, 3).assign(price=lambda d: d["price"] - 100.0)  # crosses zero
    typo = _walk("TYPO", days, 4)
    typo.loc[typo.index[2000], "price"] *= 1000
    path = tmp_path / "p.csv"
    pd.concat([rising, power, typo]).to_csv(path, index=False)
    read = read_lenient(path, outlier_factor=5.0)
    assert read.outliers == 1
    (named,) = read.outlier_examples
    assert named.line == 2 + 2 * 3650 + 2000 and named.field == "price"
    assert "TYPO around " + f"{days[2000]:%Y-%m-%d}" in named.message
    assert len(read.frame) == 3 * 3650  # kept as read
    assert read_lenient(path).outliers == 0  # not asked
