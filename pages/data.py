import pandas as pd
import streamlit as st

from pages.common import engine, page_setup
from procurement import ingest
from procurement.data.importers import (
    DATE_FORMATS,
    ImportValidationError,
    apply_mapping,
    looks_decimal_comma,
    read_table,
    split_valid,
)
from procurement.db import history, session

ctx = page_setup("Data", need_model=False)
can_import = ctx.principal.can("import")

st.subheader("Import a file")
if not can_import:
    st.info("Your role can view data but not import it.")
else:
    up = st.file_uploader(
        "CSV or Excel with prices (one row per product and date)", type=["csv", "txt", "xlsx"]
    )
    if up is not None:
        try:
            raw = read_table(up.getvalue(), up.name)
        except ImportValidationError as exc:
            st.error(str(exc))
            st.stop()
        st.caption(f"{len(raw):,} rows, columns: {', '.join(raw.columns)}")
        st.dataframe(raw.head(10), hide_index=True, width="stretch")
        cols = ["", *raw.columns]

        def guess(name: str) -> int:
            for i, c in enumerate(cols):
                if c.lower() in {
                    name,
                    {"sku": "code", "date": "data", "price": "preco"}.get(name, name),
                }:
                    return i
            return 0

        c1, c2, c3 = st.columns(3)
        mapping = {
            "sku": c1.selectbox("SKU column", cols, index=guess("sku")),
            "date": c2.selectbox("Date column", cols, index=guess("date")),
            "price": c3.selectbox("Price column", cols, index=guess("price")),
        }
        c1, c2, c3 = st.columns(3)
        for opt, box in (("name", c1), ("supplier", c2), ("quantity", c3)):
            mapping[opt] = box.selectbox(f"{opt.title()} column (optional)", cols, index=guess(opt))
        c1, c2 = st.columns(2)
        date_format = c1.selectbox("Date format", list(DATE_FORMATS))
        comma_default = bool(mapping["price"]) and looks_decimal_comma(
            raw[mapping["price"]].head(200)
        )
        decimal_comma = c2.toggle("Decimal comma (1.234,56)", value=comma_default)
        if all(mapping[k] for k in ("sku", "date", "price")):
            clean = None
            try:
                clean = apply_mapping(raw, mapping, date_format, decimal_comma, source=up.name)
                st.success(f"{len(clean):,} valid rows for {clean['sku'].nunique():,} products.")
            except ImportValidationError as exc:
                st.error(
                    "Problems found; nothing was stored. Fix the file or the mapping, or drop the bad rows."
                )
                table = [
                    {"line": e.line, "field": e.field, "problem": e.message} for e in exc.errors
                ]
                st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
                if st.toggle("Drop the bad rows and import the rest", key="drop_bad"):
                    try:
                        mapped = apply_mapping(
                            raw, mapping, date_format, decimal_comma, up.name, validate=False
                        )
                        clean, dropped = split_valid(mapped, source=up.name)
                        st.warning(
                            f"{len({e.line for e in dropped})} rows will be left out; {len(clean):,} imported."
                        )
                    except ImportValidationError as exc2:
                        st.error(str(exc2))
            if clean is not None and st.button("Import", type="primary", key="do_import"):
                bar = st.progress(0.0, text="storing")
                with session(engine()) as s, s.begin():
                    counts = history.store_prices(
                        s,
                        ctx.tenant_id,
                        clean,
                        progress=lambda d, t: bar.progress(d / max(t, 1), text=f"{d:,} of {t:,}"),
                    )
                    history.record_import(s, ctx.tenant_id, f"upload:{up.name}", counts)
                bar.progress(1.0, text="done")
                st.success(
                    f"{counts.added:,} added, {counts.updated:,} updated, {counts.unchanged:,} unchanged."
                )

st.subheader("Supplier APIs and web pages")
with session(engine()) as s:
    sources = ingest.list_sources(s, ctx.tenant_id)
    runs = ingest.list_import_runs(s, ctx.tenant_id)
if not sources:
    st.caption(
        "No sources yet. Add one with `python -m procurement source api|web NAME --config FILE.json`."
    )
for src in sources:
    c1, c2 = st.columns([4, 1])
    c1.markdown(f"**{src.name}** ({src.kind}) - last run {src.last_run_at or 'never'}")
    if can_import and c2.button("Fetch now", key=f"fetch_{src.id}"):
        with st.spinner(f"Fetching {src.name}..."):
            run = ingest.run_source(engine(), ctx.tenant, src.name, ctx.principal)
        (st.success if run.status == "ok" else st.warning)(
            f"{run.status}: {run.rows_added} added, {run.rows_updated} updated, {run.rows_rejected} rejected. {run.error or ''}"
        )

st.subheader("Ingestion runs")
st.dataframe(
    pd.DataFrame(
        [
            {
                "when": r.created_at,
                "source": r.source,
                "status": r.status,
                "added": r.rows_added,
                "updated": r.rows_updated,
                "unchanged": r.rows_unchanged,
                "rejected": r.rows_rejected,
                "errors": r.error,
            }
            for r in runs
        ]
    ),
    hide_index=True,
    width="stretch",
)
