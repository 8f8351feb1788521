"""Benchmark the app with AppTest for N products x 730 days (default 5,000): median time of the
Overview page's first render, the Product page's render and one what-if slider update, beside a
baseline: the render of an empty Streamlit page (the framework's own cost) in the same run.

    python scripts/benchmark_app.py [--products 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--products", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", help="keep the seeded database and model here and reuse them")
    args = p.parse_args()
    tmp = args.dir or tempfile.mkdtemp()
    reuse = Path(tmp, "app.db").exists()
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/app.db"
    os.environ["MODEL_DIR"] = f"{tmp}/models"

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from procurement import auth, demo, retrain
    from procurement.config import get_settings
    from procurement.db import catalog, get_engine, migrate, open_session
    from procurement.training import train_global_lgbm_model

    settings = get_settings()
    engine = get_engine()
    migrate(engine)
    t = time.perf_counter()
    if not reuse:
        with open_session(engine) as s, s.begin():
            demo.seed_synthetic(s, "demo", args.products, 730)
        with open_session(engine) as s, s.begin():
            res = train_global_lgbm_model(s, "demo", settings)
        retrain.refresh_forecasts(engine, settings, "demo", res.version)  # as the scheduler does
        secs = time.perf_counter() - t
        print(
            f"setup: {args.products} products x 730 days seeded, trained, forecasts stored in {secs:.0f}s"
        )
    with open_session(engine) as s, s.begin():
        ten = catalog.get_tenant(s, "demo")
        if not any(u.username == "bench" for u in auth.list_users(s)):
            auth.create_user(s, "bench", auth.new_password(), "buyer", ten.id)
        principal = auth.Principal("bench", "buyer", ten.id)

    app = str(ROOT / "streamlit_app.py")

    def logged_in(at: AppTest) -> AppTest:
        at.session_state["authentication_status"] = True
        at.session_state["username"] = "bench"
        at.session_state["name"] = "bench"
        at.session_state["principal"] = principal
        return at

    def open_page(page: str | None) -> AppTest:
        at = logged_in(AppTest.from_file(app, default_timeout=300))
        if page:
            at.switch_page(page)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    results: dict[str, list[float]] = {
        k: [] for k in ("baseline", "overview_cold", "overview", "product", "slider")
    }
    for _ in range(args.repeat):
        base = AppTest.from_string("import streamlit as st\nst.title('empty')", default_timeout=60)
        results["baseline"].append(_timed(base.run))
        st.cache_data.clear()  # a cold start: nothing computed yet for this model version
        results["overview_cold"].append(_timed(lambda: open_page(None)))
        results["overview"].append(_timed(lambda: open_page(None)))
        at = logged_in(AppTest.from_file(app, default_timeout=300))
        at.switch_page("pages/product.py")
        results["product"].append(_timed(at.run))
        slider = next(s for s in at.slider if "commodity index" in s.label)
        slider.set_value(10)
        results["slider"].append(_timed(at.run))
        assert not at.exception

    targets = {"overview_cold": 1.5, "overview": 1.5, "product": 1.0, "slider": 0.25}
    labels = {
        "baseline": "baseline: empty page",
        "overview_cold": "Overview, first render (cold cache)",
        "overview": "Overview, first render of a new session",
        "product": "Product page render",
        "slider": "what-if slider update",
    }
    print(f"{'measurement':<42} {'median s':>9} {'target s':>9}")
    for k, v in results.items():
        tgt = f"{targets[k]:.2f}" if k in targets else "-"
        print(f"{labels[k]:<42} {statistics.median(v):>9.3f} {tgt:>9}")


if __name__ == "__main__":
    sys.exit(main())
