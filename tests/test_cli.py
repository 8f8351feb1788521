"""The command line as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import END

from procurement.data.synthetic import generate


def _run(args: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    e = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "MODEL_DIR": str(tmp_path / "models"),
        "LGBM_N_ESTIMATORS": "30",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "procurement", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=300,
    )


def test_every_command_has_help(tmp_path) -> None:
    """`procurement --help` and each command's help render (a bare % in a help text broke the
    first), in process; one real `--help` run checks the entry point."""
    import argparse

    from procurement.cli import build_parser

    parser = build_parser()
    assert "usage:" in parser.format_help()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"seed", "import", "train", "predict", "recommend", "backtest"} <= set(sub.choices)
    for name, cmd in sub.choices.items():
        assert "usage:" in cmd.format_help(), name
    r = _run(["--help"], tmp_path)
    assert r.returncode == 0 and "80%/95% intervals" in r.stdout


def test_import_bad_file_exits_nonzero_naming_line_and_field(tmp_path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("sku,date,price\nA,2026-01-01,1\nA,2026-13-01,2\n")
    r = _run(["import", "prices", str(f)], tmp_path)
    assert r.returncode == 2
    assert "line 3, field 'date'" in r.stderr.splitlines()[-1]


def test_seed_train_recommend_round_trip(tmp_path) -> None:
    assert _run(["seed", "--products", "6", "--days", "150"], tmp_path).returncode == 0
    # a product with ten days of prices: too few to train on
    young = tmp_path / "young.csv"
    days = pd.date_range(end=END, periods=10, freq="D")
    young.write_text("sku,date,price\n" + "".join(f"YOUNG,{d.date()},5\n" for d in days))
    assert _run(["import", "prices", str(young)], tmp_path).returncode == 0
    # and one quoted once a week among the daily prices
    weekly = tmp_path / "weekly.csv"
    weeks = pd.date_range(end=END, periods=21, freq="7D")
    weekly.write_text("sku,date,price\n" + "".join(f"WEEKLY,{d.date()},7\n" for d in weeks))
    assert _run(["import", "prices", str(weekly)], tmp_path).returncode == 0
    r = _run(["train"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning: 1 product(s) priced 5 or more days apart (WEEKLY)" in r.stderr
    assert (
        "MASE" in r.stdout
        and "7 products (1 left out, too little price history: YOUNG)" in r.stdout
    )
    out = tmp_path / "recs.csv"
    r = _run(["recommend", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    recs = pd.read_csv(out)
    assert len(recs) == 7 and {"buy_date", "saving_pct", "confidence"} <= set(recs.columns)
    assert "1 product(s) with too little price history to forecast (YOUNG)" in r.stderr
    assert "new since the model" not in r.stderr
    r = _run(["predict", "--what-if", "fx=oops"], tmp_path)
    assert r.returncode == 2 and "NAME=FACTOR" in r.stderr
    r = _run(["predict", "--sku", "NEW-001", "--sku", recs["sku"].iloc[0]], tmp_path)
    # mlforecast's "ids weren't seen during training" had said nothing a buyer could act on
    assert r.returncode == 2 and "error: no forecast for NEW-001: not in model " in r.stderr
    assert "at least 116 periods of prices" in r.stderr and "Traceback" not in r.stderr


def test_predict_before_training_says_to_train(tmp_path) -> None:
    r = _run(["predict"], tmp_path)
    assert r.returncode == 2 and "unknown company 'demo'" in r.stderr
    f = tmp_path / "p.csv"
    f.write_text("sku,date,price\nA,2026-01-01,1\nA,2026-01-02,2\n")
    assert _run(["import", "prices", str(f)], tmp_path).returncode == 0
    r = _run(["predict"], tmp_path)
    assert r.returncode == 2 and "procurement train" in r.stderr


def test_backtest_writes_forecasts_and_metrics(tmp_path) -> None:
    data = generate(4, 150, seed=1, end=END)
    csv = tmp_path / "p.csv"
    rows = data.prices[["sku", "date", "price"]].astype({"date": str, "price": str})
    # a new product with three weeks of prices: too few to forecast, and said so
    newbie = rows.tail(21).assign(sku="NEWBIE")
    rows = pd.concat([rows, newbie], ignore_index=True)
    head = rows.iloc[0]
    # a blank price, a date that does not read, and a second price for a product's first date
    bad = pd.DataFrame(
        [[head["sku"], "2020-01-05", ""], [head["sku"], "next week", "9.5"], head.tolist()]
    ).set_axis(rows.columns, axis=1)
    bad.loc[2, "price"] = "99999"
    pd.concat([rows, bad], ignore_index=True).to_csv(csv, index=False)
    n = len(rows)
    out, js = tmp_path / "f.csv", tmp_path / "m.json"
    r = _run(
        [
            "backtest",
            "--csv",
            str(csv),
            "--horizon",
            "7",
            "--folds",
            "2",
            "--out",
            str(out),
            "--json",
            str(js),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    fc = pd.read_csv(out)
    assert list(fc.columns) == [
        "sku",
        "cutoff",
        "date",
        "y_pred",
        "lo_80",
        "hi_80",
        "buy",
        "p_cheaper",
        "lo_95",
        "hi_95",
        "planned",
    ]
    assert len(fc) == 4 * 2 * 7
    assert fc.groupby(["sku", "cutoff"])["buy"].sum().eq(1).all()
    # the advised day, and the day bought following it: never after the advised day
    assert fc.groupby(["sku", "cutoff"])["planned"].sum().eq(1).all()
    day = fc.groupby(["sku", "cutoff"]).cumcount()
    assert (day[fc["buy"] == 1].to_numpy() <= day[fc["planned"] == 1].to_numpy()).all()
    # p_cheaper: 0 on each window's first date, a probability short of certainty after it
    first = fc.groupby(["sku", "cutoff"])["date"].transform("min") == fc["date"]
    assert (fc.loc[first, "p_cheaper"] == 0).all()
    assert fc.loc[~first, "p_cheaper"].between(0, 0.995).all()
    m = json.loads(js.read_text())
    a = m["advice"]
    assert a["bought_before_advised_day"] + a["bought_after_advised_day"] <= a["wait_advised"]
    assert a["advised_day_oracle_share"] <= 1.0 and "advised_day_saving_pct" in a
    for key in ("model", "naive", "seasonal_naive"):
        assert {"mase", "smape"} <= set(m[key])
    assert {"coverage_80", "coverage_95", "advice", "reliability"} <= set(m)
    assert [r["bucket"] for r in m["reliability"]["advice"]][:2] == ["0%-50%", "50%-60%"]
    assert {"mean_realized_saving", "oracle_share"} <= set(m["advice"])
    # what was left out or chosen is said, naming the rows, and counted in the metrics
    assert f"2 of {n + 3:,} rows left out" in r.stderr
    assert f"line {n + 2}, field 'price': is blank" in r.stderr
    assert f"line {n + 3}, field 'date': 'next week' is not a date" in r.stderr
    assert f"line {n + 4}, field 'price': {head['sku']} on {head['date'][:10]}" in r.stderr
    assert "also priced on line 2" in r.stderr
    # the kept 99999 is far off the product's prices around it: kept, and named
    assert m["input"] == {
        "prices": {"rows": n + 3, "dropped": 2, "conflicting_dates": 1, "outliers": 1}
    }
    assert "1 price is more than 5 times off the median" in r.stderr
    assert f"line {n + 4}, field 'price': 99999 is " in r.stderr
    assert m["not_forecast"]["skus"] == ["NEWBIE"] and m["not_forecast"]["products"] == 1
    assert "not forecast in any fold, so not in these figures: NEWBIE (fewer than" in r.stderr


def test_user_commands_create_reset_and_deactivate(tmp_path) -> None:
    assert _run(["seed", "--products", "2", "--days", "60"], tmp_path).returncode == 0
    r = _run(["user", "add", "ana", "--role", "buyer", "--tenant", "demo"], tmp_path)
    assert r.returncode == 0 and "shown once" in r.stdout
    first = r.stdout.rsplit(" ", 1)[-1].strip()
    r = _run(["user", "reset-password", "ana"], tmp_path)
    second = r.stdout.rsplit(" ", 1)[-1].strip()
    assert r.returncode == 0 and second != first and len(second) >= 10
    assert _run(["user", "deactivate", "ana"], tmp_path).returncode == 0
    r = _run(["user", "add", "bob", "--role", "buyer"], tmp_path)
    assert r.returncode == 2 and "one company" in r.stderr


def test_a_backtest_says_missing_driver_values_once_and_other_warnings_once_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """mlforecast warns once per forecast step about a driver with no value (a weekly driver
    beside daily prices made 750 lines): the backtest says it in one line naming the features."""
    import warnings

    from procurement.cli import _say_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(40):
            cols = "index_chg_l1, index_chg_w7" if step % 2 else "index_chg_l1"
            warnings.warn(f"Found null values in {cols}.", UserWarning, stacklevel=1)
            warnings.warn("something else", RuntimeWarning, stacklevel=1)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        _say_warnings(caught)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "40 forecast steps had no value for index_chg_l1, index_chg_w7" in err
    assert [str(w.message) for w in shown] == ["something else"]


@pytest.mark.parametrize("value", ["70", "0", "1.5", "nan", "high"])
def test_a_bar_of_confidence_that_is_not_a_probability_is_refused(tmp_path, value: str) -> None:
    r = _run(["recommend", "--min-confidence", value], tmp_path)
    # 70 meant as 70% had been taken as a bar no advice reaches: "buy now" on everything
    assert r.returncode == 2
    assert "--min-confidence" in r.stderr
    assert (
        "is not a number" if value == "high" else "between 0.5 and 0.99 (0.7 for 70%)"
    ) in r.stderr


def test_training_on_too_short_a_history_fails_in_one_line_without_a_traceback(tmp_path) -> None:
    assert _run(["seed", "--products", "2", "--days", "60"], tmp_path).returncode == 0
    r = _run(["train"], tmp_path)
    assert r.returncode == 2
    assert "error: training demo failed: every series is shorter than" in r.stderr
    assert "Traceback" not in r.stderr  # the data's fault, said as the run records it
