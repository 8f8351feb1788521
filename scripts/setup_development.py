"""Prepare a development machine: ``all`` = migrate, seed demo data (if absent) and train (if no
model). Safe to run again: it reuses what exists, so a second ``make run`` starts in seconds."""

from __future__ import annotations

import argparse
import os
import sys

from procurement import demo
from procurement.config import get_settings
from procurement.db import catalog, get_engine, history, migrate, open_session
from procurement.forecast import store


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("step", choices=["all", "migrate", "seed", "train"])
    p.add_argument("--products", type=int, default=200)
    p.add_argument("--days", type=int, default=730)
    args = p.parse_args(argv)
    st = get_settings()
    engine = get_engine()
    migrate(engine)
    print(f"database ready: {engine.url.render_as_string(hide_password=True)}")
    if args.step in ("all", "seed"):
        with open_session(engine) as s, s.begin():
            ten = catalog.get_tenant(s, st.default_tenant)
            has_data = ten is not None and history.price_range(s, ten.id)[2] > 0
            if not has_data:
                counts = demo.seed_synthetic(s, st.default_tenant, args.products, args.days)
                print(f"seeded {counts.added} synthetic prices for '{st.default_tenant}'")
            if catalog.get_tenant(s, demo.REAL_TENANT) is None:
                c = demo.seed_real(s)
                print(f"loaded {c.added} real EIA prices for '{demo.REAL_TENANT}'")
            logins = demo.seed_users(s, st)
        if logins:
            # printed once; only bcrypt hashes are stored. Kept for the developer in a 0600 file.
            lines = [f"{u:<14} {pw}" for u, pw in logins.items()]
            path = st.model_dir.parent / "data" / "demo-logins.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write("\n".join(lines) + "\n")
            print("\nLog in at http://localhost:8501 with (also saved in data/demo-logins.txt):")
            print("\n".join("  " + line for line in lines) + "\n")
    if args.step in ("all", "train"):
        from procurement.training import train_global_lgbm_model

        for tenant in (st.default_tenant, demo.REAL_TENANT):
            if store.current_version(st.model_dir, tenant) is None or args.step == "train":
                with open_session(engine) as s, s.begin():
                    res = train_global_lgbm_model(s, tenant)
                print(f"trained {tenant}: model {res.version}")
            else:
                print(f"{tenant}: model {store.current_version(st.model_dir, tenant)} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
