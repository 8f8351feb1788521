"""Command line: ``python -m procurement <command>``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from tqdm import tqdm

from procurement.auth import PermissionDenied, Principal
from procurement.config import get_settings
from procurement.data.importers import FileFormat, FormatError, ImportValidationError
from procurement.db.runs import TrainingBusy
from procurement.forecast.store import ModelStoreError


class CliError(Exception):
    pass


def _db():
    from procurement.db import get_engine, migrate

    engine = get_engine()
    migrate(engine)
    return engine


def _bar(desc: str) -> tuple[tqdm, Callable[[float, str], None]]:
    bar = tqdm(
        total=100,
        desc=desc,
        unit="%",
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {n:.0f}% {postfix}",
    )

    def progress(frac: float, msg: str) -> None:
        bar.n = round(100 * frac)
        bar.set_postfix_str(msg)
        bar.refresh()

    return bar, progress


def cmd_seed(args: argparse.Namespace) -> None:
    from procurement import demo
    from procurement.db import open_session

    engine = _db()
    with (
        open_session(engine) as s,
        s.begin(),
        tqdm(
            total=args.products * args.days, desc="seeding prices", unit="row", file=sys.stderr
        ) as bar,
    ):
        counts = demo.seed_synthetic(
            s,
            args.tenant,
            args.products,
            args.days,
            args.seed,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    print(
        f"{args.tenant}: {counts.added} prices added, {counts.updated} updated, {counts.unchanged} unchanged"
    )
    if args.real:
        with open_session(engine) as s, s.begin():
            c = demo.seed_real(s)
        print(f"{demo.REAL_TENANT}: {c.added} real prices added, {c.unchanged} unchanged")


def cmd_import(args: argparse.Namespace) -> None:
    import getpass

    from procurement import actions
    from procurement.db import open_session

    engine = _db()
    actor = Principal.system()
    if args.kind in ("stock", "catalog"):
        fn = actions.import_stock_file if args.kind == "stock" else actions.import_catalog_file
        with open_session(engine) as s, s.begin():
            n = fn(actor, session=s, tenant=args.tenant, path=args.file)
        print(f"{args.file}: {n} {args.kind} rows stored")
        return
    if args.kind == "runs":
        with open_session(engine) as s:
            log = actions.import_log(actor, session=s, tenant=args.tenant)
        cols = ["id", "when", "by", "source", "status", "added", "updated", "undoable"]
        _write(log[cols], None)
        return
    if args.file is None:
        raise CliError(f"import {args.kind}: give a {'run id' if args.kind == 'undo' else 'file'}")
    if args.kind == "undo":
        try:
            run_id = int(args.file)
        except ValueError:
            raise CliError(f"import undo {args.file!r}: give the number of an import run") from None
        with open_session(engine) as s:
            undo = actions.undo_import(
                actor,
                session=s,
                tenant=args.tenant,
                run_id=run_id,
                actor_name=f"cli:{getpass.getuser()}",
            )
        print(undo.source)
        return
    fmt = _file_format(args)
    with tqdm(desc="storing", unit="row", file=sys.stderr) as bar, open_session(engine) as s:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        res = actions.import_price_file(
            actor,
            session=s,
            tenant=args.tenant,
            path=args.file,
            fmt=fmt,
            confirm_outliers=args.confirm_outliers,
            progress=progress,
            actor_name=f"cli:{getpass.getuser()}",
        )
    c = res.counts
    renamed = (
        f", {c.described} products' name, supplier, currency, category or unit changed"
        if c.described
        else ""
    )
    print(
        f"{args.file}: {c.added} added, {c.updated} updated, {c.unchanged} unchanged{renamed} "
        f"(import {res.run_id}; `procurement import undo {res.run_id}` reverts it)"
    )


def cmd_train(args: argparse.Namespace) -> None:
    from procurement import actions
    from procurement.db import open_session

    engine = _db()
    actor = Principal.system()
    bar, progress = _bar(f"training {args.tenant}")
    with bar, open_session(engine) as s:
        run = actions.train_now(actor, session=s, tenant=args.tenant, progress=progress)
    if run.status == "rejected":
        print(f"model {run.version}: {run.message}")
        return
    if run.status != "done":
        raise CliError(f"training {args.tenant} {run.status}: {run.message}")
    with open_session(engine) as s:
        stored = actions.current_model(actor, session=s, tenant=args.tenant)
    assert stored is not None
    meta = stored.metadata
    m = meta["metrics"]
    short = sorted(getattr(stored.model, "too_short", frozenset()))
    left_out = (
        f" ({len(short)} left out, too little price history: {', '.join(short[:8])}"
        f"{', ...' if len(short) > 8 else ''})"
        if short
        else ""
    )
    print(
        f"model {stored.version}: {meta['n_products']} products{left_out}, "
        f"MASE {m['model']['mase']:.3f} (naive {m['naive']['mase']:.3f}), "
        f"{meta['training_seconds']:.1f}s"
    )
    sparse = m.get("sparse_series") or {}
    if sparse.get("products"):
        print(
            f"warning: {sparse['products']} product(s) priced {sparse['days']} or more days "
            f"apart ({', '.join(sparse['skus'][:8])}) among daily prices: forecast as "
            "daily prices held between quotes",
            file=sys.stderr,
        )


def _write(df: pd.DataFrame, out: str | None) -> None:
    if out:
        df.to_csv(out, index=False)
        print(f"wrote {len(df)} rows to {out}")
    else:
        with pd.option_context("display.max_rows", 60, "display.width", 160):
            print(df.to_string(index=False))


def _overrides(pairs: Sequence[str]) -> dict[str, float]:
    out = {}
    for p in pairs:
        name, _, val = p.partition("=")
        try:
            out[name] = float(val)
        except ValueError:
            raise CliError(f"--what-if {p!r}: expected NAME=FACTOR, e.g. fx=1.05") from None
    return out


def cmd_predict(args: argparse.Namespace) -> None:
    from procurement import actions
    from procurement.db import open_session

    with open_session(_db()) as s:
        fc = actions.forecast(
            Principal.system(),
            session=s,
            tenant=args.tenant,
            skus=args.sku or None,
            overrides=_overrides(args.what_if),
        )
    _write(fc, args.out)


def cmd_recommend(args: argparse.Namespace) -> None:
    """The same advice as the Recommendations page (``actions.advice``)."""
    from procurement import actions
    from procurement.buying import ADVICE_COLUMNS, unforecast
    from procurement.db import open_session

    with open_session(_db()) as s:
        recs = actions.advice(
            Principal.system(),
            session=s,
            tenant=args.tenant,
            overrides=_overrides(args.what_if),
            min_confidence=args.min_confidence,
        )
        products = actions.catalog(Principal.system(), session=s, tenant=args.tenant)
        stored = actions.current_model(Principal.system(), session=s, tenant=args.tenant)
    short, new = unforecast(products, recs, stored.model if stored else None)
    # the products without advice, on stderr so the CSV stays clean
    if short and stored:
        print(
            f"{len(short)} product(s) with too little price history to forecast "
            f"({', '.join(short[:8])}): a forecast needs {stored.model.min_periods} periods",
            file=sys.stderr,
        )
    if new:
        print(
            f"{len(new)} product(s) new since the model was trained ({', '.join(new[:8])}): "
            "retrain to include them",
            file=sys.stderr,
        )
    _write(recs[[*ADVICE_COLUMNS[:4], "buy_now", *ADVICE_COLUMNS[4:]]], args.out)


def _probability(text: str) -> float:
    """A buyer's bar of confidence (``recommend.buyers_bar``), refused as the arguments are read."""
    from procurement.recommend import buyers_bar

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    try:
        return buyers_bar(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ratio(value: float | None) -> str:
    """A ratio to three decimals; "n/a" where it has none (nothing to divide by)."""
    return "n/a" if value is None else f"{value:.3f}"


def _say_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Each warning of a backtest once; mlforecast's about missing feature values (a driver
    that stops before the forecast's dates, or is weekly beside daily prices: hundreds of them,
    one per forecast step) as one line naming the features."""
    missing: set[str] = set()
    steps, seen = 0, set()
    for w in caught:
        text = str(w.message)
        if text.startswith("Found null values in "):
            steps += 1
            missing.update(
                c.strip() for c in text.removeprefix("Found null values in ").rstrip(".").split(",")
            )
        elif (text, w.category) not in seen:
            seen.add((text, w.category))
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if steps:
        print(
            f"warning: {steps:,} forecast steps had no value for {', '.join(sorted(missing))} "
            "(a driver that ends before the prices or is spaced wider than them); the model "
            "takes them as missing",
            file=sys.stderr,
        )


def cmd_backtest(args: argparse.Namespace) -> None:
    from procurement.data.importers import read_lenient
    from procurement.forecast.backtest import run_backtest
    from procurement.training import params_from

    fmt = _file_format(args)
    read = {"prices": read_lenient(args.csv, fmt, get_settings().outlier_factor)}
    if args.drivers:
        read["drivers"] = read_lenient(args.drivers, fmt)
    for r in read.values():
        for line in r.warnings():
            print(f"warning: {line}", file=sys.stderr)
    prices = read["prices"].frame
    drivers = None
    if "drivers" in read:
        drivers = read["drivers"].frame.rename(columns={"sku": "name", "price": "value"})
    params = params_from(get_settings())
    with (
        warnings.catch_warnings(record=True) as caught,
        tqdm(total=args.folds, desc="backtest folds", unit="fold", file=sys.stderr) as bar,
    ):
        warnings.simplefilter("always")
        res = run_backtest(
            prices,
            args.horizon,
            args.folds,
            drivers,
            params,
            freq=args.freq,
            progress=lambda i, n: bar.update(i - bar.n),
        )
    _say_warnings(caught)
    out = res.forecasts.drop(columns=["y"])
    out.to_csv(args.out, index=False, date_format="%Y-%m-%d")
    res.metrics["input"] = {name: r.summary() for name, r in read.items()}
    Path(args.json).write_text(json.dumps(res.metrics, indent=2))
    m = res.metrics
    print(
        f"MASE model {m['model']['mase']:.3f} | naive {m['naive']['mase']:.3f} | seasonal naive "
        f"{m['seasonal_naive']['mase']:.3f} (model/naive {_ratio(m['model']['mase_vs_naive'])}); "
        f"coverage 80% {m['coverage_80']:.1%}, 95% {m['coverage_95']:.1%}; advice saves "
        f"{m['advice']['mean_realized_saving_pct']:.2f}% ({m['advice']['oracle_share']:.0%} of oracle; "
        f"{m['advice']['advised_day_saving_pct']:.2f}% on the advised day itself; at the target "
        f"price {m['advice']['bought_before_advised_day']} windows bought sooner, "
        f"{m['advice']['bought_after_advised_day']} later)"
    )
    gone = m["not_forecast"]
    if gone["products"]:
        names = ", ".join(gone["skus"]) + (" ..." if gone["products"] > len(gone["skus"]) else "")
        print(
            f"warning: not forecast in any fold, so not in these figures: {names} ({gone['why']})",
            file=sys.stderr,
        )
    print("reliability of advice (stated -> observed, cases, 90% interval of the observed):")
    for r in m["reliability"]["advice"]:
        if r["cases"]:
            lo, hi = r["observed_90"]
            note = "" if r["within_chance"] else "  <- beyond chance"
            print(
                f"  {r['bucket']:>9}: {r['stated']:.0%} -> {r['observed']:.0%} ({r['cases']}, "
                f"{lo:.0%}-{hi:.0%}){note}"
            )


def cmd_source(args: argparse.Namespace) -> None:
    from procurement import actions
    from procurement.db import open_session

    engine = _db()
    try:
        config = json.loads(Path(args.config).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"--config {args.config}: {exc}") from None
    with open_session(engine) as s, s.begin():
        actions.add_source(
            Principal.system(),
            session=s,
            tenant=args.tenant,
            name=args.name,
            kind=args.kind,
            config=config,
        )
    print(f"source {args.name} ({args.kind}) added to {args.tenant}")


def cmd_fetch(args: argparse.Namespace) -> None:
    from procurement import actions
    from procurement.db import open_session

    engine = _db()
    actor = Principal.system()
    with open_session(engine) as s:
        names = (
            [args.source]
            if args.source
            else [x.name for x in actions.data_sources(actor, session=s, tenant=args.tenant)]
        )
    if not names:
        raise CliError(f"{args.tenant} has no data sources; add one with `procurement source`")
    failed = 0
    for name in tqdm(names, desc="fetching sources", unit="source", file=sys.stderr):
        with open_session(engine) as s:
            run = actions.fetch_source(actor, session=s, tenant=args.tenant, name=name)
        failed += run.status == "error"
        print(
            f"{name}: {run.status}, {run.rows_added} added, {run.rows_updated} updated, "
            f"{run.rows_rejected} rejected{'; ' + run.error if run.error else ''}"
        )
    if failed:
        raise CliError(f"{failed} of {len(names)} sources failed")


def cmd_user(args: argparse.Namespace) -> None:
    """Operator's account tools: add a user, reset a password (also unlocks), (de)activate, and
    the first administrator from ADMIN_PASSWORD. Whoever runs the CLI acts as the system."""
    from procurement import actions, auth
    from procurement.db import open_session

    if args.action != "ensure-admin" and not args.username:
        raise CliError(f"user {args.action}: give a username")
    system = Principal.system()
    engine = _db()
    with open_session(engine) as s, s.begin():
        if args.action == "ensure-admin":
            generated = auth.ensure_admin(s, get_settings())
            if generated:
                print(f"administrator admin created; password, shown once: {generated}")
            else:
                print("an administrator exists (or was created from ADMIN_PASSWORD)")
        elif args.action == "add":
            password = auth.new_password()
            actions.add_user(
                system,
                session=s,
                username=args.username,
                password=password,
                role=args.role,
                tenant=args.tenant or None,
            )
            print(f"user {args.username} ({args.role}) created; password, shown once: {password}")
        elif args.action == "reset-password":
            password = auth.new_password()
            actions.set_password(system, session=s, username=args.username, password=password)
            print(f"password of {args.username} reset and account unlocked; shown once: {password}")
        else:
            actions.set_active(
                system, session=s, username=args.username, active=args.action == "activate"
            )
            print(f"user {args.username} {args.action}d")


def cmd_orders(args: argparse.Namespace) -> None:
    """Purchase orders of a company: propose drafts, list, approve, reject, send, receive,
    export one (CSV or PDF), import supplier terms. The CLI acts as the system (an admin)."""
    import datetime as dt

    from procurement import actions
    from procurement.db import open_session

    engine = _db()
    actor = Principal.system()
    with open_session(engine) as s, s.begin():
        if args.action == "propose":
            made = actions.propose_orders(actor, session=s, tenant=args.tenant)
            print(f"{args.tenant}: {len(made)} draft orders proposed")
        elif args.action == "list":
            statuses = [args.status] if args.status else None
            df = actions.list_orders(actor, session=s, tenant=args.tenant, statuses=statuses)
            _write(df, args.out)
        elif args.action == "terms":
            if not args.target:
                raise CliError("orders terms: give a CSV file (sku,supplier,pack_size,...)")
            n = actions.import_terms(actor, session=s, tenant=args.tenant, src=args.target)
            print(f"{args.target}: {n} supplier terms stored")
        else:
            try:
                order_id = int(args.target or "")
            except ValueError:
                raise CliError(f"orders {args.action}: give an order number") from None
            kw = {"session": s, "tenant": args.tenant, "order_id": order_id}
            if args.action == "export":
                pdf = (args.out or "").lower().endswith(".pdf")
                data = (actions.export_pdf if pdf else actions.export_csv)(actor, **kw)
                if args.out:
                    Path(args.out).write_bytes(data)
                    print(f"wrote order {order_id} to {args.out}")
                else:
                    sys.stdout.write(data.decode())
            elif args.action == "approve":
                actions.approve(actor, **kw)
            elif args.action == "reject":
                actions.reject(actor, **kw)
            elif args.action == "send":
                actions.mark_sent(actor, **kw)
            elif args.action == "receive":
                actions.receive(actor, **kw)
            elif args.action == "date":
                if not args.date:
                    raise CliError("orders date: give --date YYYY-MM-DD")
                actions.set_order_date(actor, **kw, order_date=dt.date.fromisoformat(args.date))
            if args.action != "export":
                print(f"order {order_id}: {args.action} done")


def cmd_backtest_orders(args: argparse.Namespace) -> None:
    from procurement import orders
    from procurement.db import open_session

    engine = _db()
    with open_session(engine) as s:
        bar, progress = _bar(f"replaying orders of {args.tenant}")
        with bar:
            res = orders.run_order_backtest(
                Principal.system(),
                session=s,
                tenant=args.tenant,
                days=args.days,
                refit_every=args.refit_every,
                n_estimators=args.n_estimators,
                progress=lambda k, n: progress(k / n, f"day {k} of {n}"),
            )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    print(
        f"policy cost {res['policy_cost']:,.2f} ({res['policy_stockout_days']} stock-out days) | "
        f"reorder-point baseline {res['baseline_cost']:,.2f} "
        f"({res['baseline_stockout_days']} stock-out days)"
    )


def cmd_ask(args: argparse.Namespace) -> None:
    """Ask the assistant as user ``--user`` (their role and company apply, as on the page);
    prints the answer, or with ``--json`` one object with answer and tool_calls. The question
    and answer join the user's conversation, as on the Assistant page."""
    from sqlalchemy.orm import Session

    from procurement import assistant, auth
    from procurement.db import catalog

    settings = get_settings()
    with Session(_db(), expire_on_commit=False) as s, s.begin():
        actor = auth.principal_for(s, args.user, settings)
        if actor is None:
            raise CliError(f"no active user {args.user!r}")
        tenant = args.tenant
        if tenant is None:
            tenant = (
                catalog.get_tenant_by_id(s, actor.tenant_id).slug
                if actor.tenant_id is not None
                else settings.default_tenant
            )
        turns = [
            {"role": m["role"], "content": m["content"]}
            for m in assistant.history(actor, session=s, tenant=tenant, limit=20)
        ]
        reply = assistant.answer(actor, args.question, session=s, tenant=tenant, history=turns)
        assistant.remember(actor, session=s, tenant=tenant, question=args.question, reply=reply)
    if args.json:
        d = reply.to_dict()
        out = {"answer": d["answer"], "tool_calls": d["tool_calls"], "sources": d["sources"]}
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(reply.answer)


def _file_format(args: argparse.Namespace) -> FileFormat:
    """The ``--decimal`` and ``--date-order`` a command was given (None: from the file)."""
    return FileFormat(
        decimal={"comma": ",", "dot": "."}.get(args.decimal or ""), date_order=args.date_order
    )


def _format_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--decimal",
        choices=["comma", "dot"],
        help="decimal separator of prices and quantities, when the file's values leave it open",
    )
    s.add_argument(
        "--date-order",
        choices=["dmy", "mdy", "ymd"],
        help="order of day and month in dates like 03/04/2024, when the file leaves it open",
    )


def build_parser() -> argparse.ArgumentParser:
    st = get_settings()
    p = argparse.ArgumentParser(
        prog="procurement", description="Price forecasts and buy-day advice."
    )
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "seed", help="store synthetic demo data (and real energy prices with --real)"
    )
    s.add_argument("--tenant", default=st.default_tenant)
    s.add_argument("--products", type=int, default=200)
    s.add_argument("--days", type=int, default=730)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument(
        "--real", action="store_true", help="also load bundled EIA prices as company 'energy'"
    )
    s.set_defaults(func=cmd_seed)

    s = sub.add_parser(
        "import",
        help="import a CSV: prices (sku,date,price[,name,supplier,currency,quantity]), "
        "stock (sku,on_hand,lead_time_days) or catalog "
        "(sku[,name,supplier,category,unit,currency,working_days], working_days like Mon-Fri "
        "or Mon,Tue,Sat: the days the supplier takes orders); "
        "list import runs (runs) or undo one (undo RUN_ID)",
    )
    s.add_argument("kind", choices=["prices", "stock", "catalog", "runs", "undo"])
    s.add_argument("file", nargs="?", help="the file; for undo, the import run's number")
    s.add_argument("--tenant", default=st.default_tenant)
    _format_options(s)
    s.add_argument(
        "--confirm-outliers",
        action="store_true",
        help="store prices more than OUTLIER_FACTOR (5) times off the product's recent median",
    )
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("train", help="train and publish the global LightGBM model of a company")
    s.add_argument("--tenant", default=st.default_tenant)
    s.set_defaults(func=cmd_train)

    for name, func, hlp in (
        ("predict", cmd_predict, "forecast every product with 80%%/95%% intervals"),
        ("recommend", cmd_recommend, "best day to buy and expected saving per product"),
    ):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--tenant", default=st.default_tenant)
        s.add_argument("--out", help="write CSV here instead of printing")
        s.add_argument(
            "--what-if",
            action="append",
            default=[],
            metavar="DRIVER=FACTOR",
            help="scale a driver's future values, e.g. fx=1.05 or demand=1.2",
        )
        if name == "predict":
            s.add_argument("--sku", action="append", help="only these products")
        else:
            s.add_argument(
                "--min-confidence",
                type=_probability,
                help="advise waiting only this sure or surer, between 0.5 and 0.99 (0.7 for 70%%)",
            )
        s.set_defaults(func=func)

    s = sub.add_parser("source", help="add a supplier API or web page source (JSON config file)")
    s.add_argument("kind", choices=["api", "web"])
    s.add_argument("name")
    s.add_argument("--config", required=True, help="JSON: see README, 'Data sources'")
    s.add_argument("--tenant", default=st.default_tenant)
    s.set_defaults(func=cmd_source)

    s = sub.add_parser("fetch", help="fetch prices from the data sources of a company now")
    s.add_argument("--tenant", default=st.default_tenant)
    s.add_argument("--source", help="only this source")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser(
        "user",
        help="add a user, reset a password (unlocks), (de)activate; ensure-admin creates the "
        "first administrator from ADMIN_PASSWORD",
    )
    s.add_argument(
        "action", choices=["add", "reset-password", "activate", "deactivate", "ensure-admin"]
    )
    s.add_argument("username", nargs="?")
    s.add_argument("--role", choices=["admin", "buyer", "viewer"], default="viewer")
    s.add_argument(
        "--tenant", help="company of a buyer, viewer or company administrator (none: global admin)"
    )
    s.set_defaults(func=cmd_user)

    s = sub.add_parser("backtest", help="rolling-origin backtest of a CSV, without the database")
    s.add_argument(
        "--csv",
        required=True,
        help="sku,date,price file; a category column lets drivers named index:<category> drive its products",
    )
    s.add_argument(
        "--horizon", type=int, default=st.horizon, help="periods of the series' own frequency"
    )
    s.add_argument("--folds", type=int, default=4)
    s.add_argument("--out", default="forecasts.csv")
    s.add_argument("--json", default="metrics.json")
    s.add_argument("--drivers", help="sku,date,price file of related series used as drivers")
    s.add_argument("--freq", help="D, B or W-MON...; inferred when omitted")
    _format_options(s)
    s.set_defaults(func=cmd_backtest)

    s = sub.add_parser(
        "orders",
        help="purchase orders: propose drafts, list, approve/reject/send/receive/date ORDER_ID, "
        "export ORDER_ID (--out FILE.csv or FILE.pdf), terms FILE.csv (supplier terms)",
    )
    s.add_argument(
        "action",
        choices=[
            "propose",
            "list",
            "approve",
            "reject",
            "send",
            "receive",
            "date",
            "export",
            "terms",
        ],
    )
    s.add_argument("target", nargs="?", help="an order number, or the terms CSV file")
    s.add_argument("--tenant", default=st.default_tenant)
    s.add_argument("--status", choices=["draft", "approved", "sent", "received", "cancelled"])
    s.add_argument("--date", help="new order date of a draft (orders date)")
    s.add_argument("--out", help="write here (CSV, or PDF when the name ends in .pdf)")
    s.set_defaults(func=cmd_orders)

    s = sub.add_parser(
        "backtest-orders",
        help="replay the order proposals day by day on history against ordering at the reorder "
        "point; prints and writes policy/baseline cost and stock-out days",
    )
    s.add_argument("--tenant", default=st.default_tenant)
    s.add_argument("--days", type=int, default=84, help="days of history replayed")
    s.add_argument("--refit-every", type=int, default=7, help="days between price forecasts")
    s.add_argument("--n-estimators", type=int, default=60, help="trees of each refitted model")
    s.add_argument("--json", help="write the numbers here")
    s.set_defaults(func=cmd_backtest_orders)
    s = sub.add_parser(
        "ask", help="ask the assistant as a user: prices, forecasts, stock, orders (drafts only)"
    )
    s.add_argument("question")
    s.add_argument("--user", required=True, help="act as this user: their role and company apply")
    s.add_argument(
        "--tenant",
        help="company (default: the user's own; for global administrators DEFAULT_TENANT)",
    )
    s.add_argument(
        "--json", action="store_true", help="print one JSON object: answer, tool_calls, sources"
    )
    s.set_defaults(func=cmd_ask)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        args.func(args)
    except ImportValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for e in exc.errors[1:10]:
            print(f"  {e}", file=sys.stderr)
        if isinstance(exc, FormatError):
            print("settle it with --decimal comma|dot or --date-order dmy|mdy|ymd", file=sys.stderr)
        elif type(exc).__name__ == "NeedsConfirmation":
            print("nothing stored; check the prices, then add --confirm-outliers", file=sys.stderr)
        return 2
    except (
        CliError,
        ValueError,
        LookupError,
        ModelStoreError,
        TrainingBusy,
        FileNotFoundError,
        PermissionDenied,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"error: database unreachable or locked: {exc.orig}", file=sys.stderr)
        return 3
    except SQLAlchemyError as exc:
        print(f"error: database error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
