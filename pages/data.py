import math

import pandas as pd
import streamlit as st

from procurement import actions, workdays
from procurement.auth import PermissionDenied
from procurement.config import get_settings
from procurement.data.importers import (
    FileFormat,
    FormatError,
    ImportValidationError,
    RowError,
    apply_mapping,
    read_table,
    split_valid,
)
from procurement.db import open_session
from procurement.ingest import NeedsConfirmation
from ui.page import engine, forget_advice, page_setup, plain

ctx = page_setup("Data", need_model=False)
can_import = ctx.principal.can("import")
settings = get_settings()

NUMBERS = {
    "Decide from the file": None,
    "1,234.56 (decimal point)": ".",
    "1.234,56 (decimal comma)": ",",
}
DATES = {
    "Decide from the file": None,
    "day/month/year": "dmy",
    "month/day/year": "mdy",
    "year-month-day only": "ymd",
}


@st.cache_data(max_entries=2, show_spinner="Reading the file...")
def read_upload(file_id: str, name: str, _raw: bytes) -> pd.DataFrame:
    # keyed on the upload's id: a rerun (any widget change) does not parse the file again
    return read_table(_raw, name)


@st.cache_data(max_entries=4, show_spinner="Checking every row...")
def check_upload(
    file_id: str,
    name: str,
    mapping: tuple[tuple[str, str], ...],
    decimal: str | None,
    order: str | None,
    drop_bad: bool,
    _raw: pd.DataFrame,
) -> dict:
    """The valid rows, the problems, and whether the format itself is open; cached per choice."""
    fmt = FileFormat(decimal, order)
    try:
        clean = apply_mapping(_raw, dict(mapping), fmt, source=name)
        return {"clean": clean, "errors": [], "format_open": False, "dropped": 0}
    except FormatError as exc:
        return {"clean": None, "errors": exc.errors, "format_open": True, "dropped": 0}
    except ImportValidationError as exc:
        if not drop_bad:
            return {
                "clean": None,
                "errors": exc.errors,
                "total": exc.total,
                "format_open": False,
                "dropped": 0,
            }
    try:
        mapped = apply_mapping(_raw, dict(mapping), fmt, name, validate=False)
        clean, dropped = split_valid(mapped, source=name, fmt=fmt)
        return {
            "clean": clean,
            "errors": dropped,
            "format_open": False,
            "dropped": len({e.line for e in dropped}),
        }
    except ImportValidationError as exc:
        return {
            "clean": None,
            "errors": exc.errors,
            "total": exc.total,
            "format_open": False,
            "dropped": 0,
        }


def problems_table(errors: list[RowError], total: int | None = None) -> None:
    table = [{"line": e.line, "field": e.field, "problem": e.message} for e in errors]
    if total and total > len(errors):
        st.caption(f"The first {len(errors):,} of {total:,} problems:")
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")


st.subheader("Import a file")
if not can_import:
    st.info("Your role can view data but not import it.")
else:
    up = st.file_uploader(
        f"CSV or Excel with prices (one row per product and date; at most "
        f"{settings.max_upload_mb:g} MB)",
        type=["csv", "txt", "xlsx"],
        # the widget's own "Limit ... per file" says the same as the label (Streamlit's default
        # is its global server.maxUploadSize, 200 MB); the check below stays the one enforced
        max_upload_size=max(1, math.ceil(settings.max_upload_mb)),
    )
    if up is not None:
        if up.size > settings.max_upload_mb * 1e6:
            st.error(
                plain(
                    f"{up.name} has {up.size / 1e6:.0f} MB, more than the limit of "
                    f"{settings.max_upload_mb:g} MB (MAX_UPLOAD_MB)."
                )
            )
            st.stop()
        try:
            raw = read_upload(up.file_id, up.name, up.getvalue())
        except ImportValidationError as exc:
            st.error(plain(exc))
            st.stop()
        st.caption(plain(f"{len(raw):,} rows, columns: {', '.join(map(str, raw.columns))}"))
        st.dataframe(raw.head(10).astype(str), hide_index=True, width="stretch")
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
        decimal = NUMBERS[c1.selectbox("Numbers", list(NUMBERS))]
        order = DATES[c2.selectbox("Dates like 03/04/2024", list(DATES))]
        if all(mapping[k] for k in ("sku", "date", "price")):
            drop_bad = st.session_state.get("drop_bad", False)
            res = check_upload(
                up.file_id,
                up.name,
                tuple(sorted((k, v) for k, v in mapping.items() if v)),
                decimal,
                order,
                drop_bad,
                raw,
            )
            clean = res["clean"]
            if res["format_open"]:
                st.error(
                    "The numbers or dates of this file can be read in more than one way; nothing "
                    "was stored. Choose the format above (the rows below leave it open)."
                )
                problems_table(res["errors"])
            elif clean is None:
                st.error(
                    "Problems found; nothing was stored. Fix the file or the mapping, or drop "
                    "the bad rows."
                )
                problems_table(res["errors"], res.get("total"))
            if not res["format_open"] and (res["errors"] or drop_bad):
                st.toggle("Drop the bad rows and import the rest", key="drop_bad")
            if clean is not None:
                fmt = FileFormat(decimal, order)
                if res["dropped"]:
                    st.warning(f"{res['dropped']} rows will be left out; {len(clean):,} imported.")
                    problems_table(res["errors"])
                st.success(
                    f"{len(clean):,} valid rows for {clean['sku'].nunique():,} products "
                    f"({'format chosen' if decimal and order else 'format read from the file'})."
                )
                confirm = st.checkbox(
                    f"Store prices that moved more than {settings.outlier_factor:g}x against "
                    "the product's recent median (they are listed when you import)",
                    key="confirm_outliers",
                )
                if st.button("Import", type="primary", key="do_import"):
                    bar = st.progress(0.0, text="storing")
                    try:
                        with open_session(engine()) as s:
                            done = actions.import_prices(
                                ctx.principal,
                                session=s,
                                tenant=ctx.tenant,
                                prices=clean,
                                source=f"upload:{up.name}",
                                confirm_outliers=confirm,
                                rejected=res["dropped"],
                                progress=lambda d, t: bar.progress(
                                    d / max(t, 1), text=f"{d:,} of {t:,}"
                                ),
                            )
                    except NeedsConfirmation as exc:
                        bar.empty()
                        st.warning(
                            "Nothing was stored: these prices are far from the product's recent "
                            "median. Check them; to store them anyway, tick the box above and "
                            "import again."
                        )
                        problems_table(exc.errors)
                    except ImportValidationError as exc:
                        bar.empty()
                        st.error("Nothing was stored.")
                        problems_table(exc.errors)
                    else:
                        bar.progress(1.0, text="done")
                        c = done.counts
                        renamed = (
                            f" {c.described:,} products' name, supplier, currency, category "
                            "or unit changed."
                            if c.described
                            else ""
                        )
                        st.success(
                            f"Import {done.run_id}: {c.added:,} added, {c.updated:,} updated, "
                            f"{c.unchanged:,} unchanged.{renamed} It can be undone below."
                        )

st.subheader("Suppliers")
with open_session(engine()) as s:
    sups = actions.suppliers(ctx.principal, session=s, tenant=ctx.tenant)
if sups.empty:
    st.caption("No suppliers yet: they come with the products of a price or catalog file.")
else:
    st.caption(
        "Buy days fall only on the days a product's supplier takes orders. Set them here or "
        "with a `working_days` column in `python -m procurement import catalog FILE.csv` "
        "(like Mon-Fri, Mon-Sat or Tue,Thu)."
    )
    st.dataframe(
        sups,
        hide_index=True,
        width="stretch",
        column_config={
            "supplier": "Supplier",
            "working_days": "Takes orders on",
            "products": st.column_config.NumberColumn("Products", format="%d"),
        },
    )
    if can_import:
        c1, c2, c3 = st.columns([2, 3, 1], vertical_alignment="bottom")
        who = c1.selectbox("Supplier", sups["supplier"].tolist(), key="wd_supplier")
        current = sups.loc[sups["supplier"] == who, "working_days"].iloc[0]
        days = c2.multiselect(
            "Takes orders on",
            list(workdays.NAMES),
            default=[workdays.NAMES[d] for d in workdays.parse(current)],
            key=f"wd_days_{who}",
        )
        if c3.button("Save", key="wd_save"):
            if not days:
                st.error("Choose at least one day.")
            else:
                with open_session(engine()) as s, s.begin():
                    saved = actions.set_working_days(
                        ctx.principal,
                        session=s,
                        tenant=ctx.tenant,
                        supplier=who,
                        working_days=",".join(days),
                    )
                forget_advice()  # the buy days of its products move
                st.success(plain(f"{who} takes orders on {saved}."))

st.subheader("Supplier APIs and web pages")
with open_session(engine()) as s:
    sources = actions.data_sources(ctx.principal, session=s, tenant=ctx.tenant)
if not sources:
    st.caption(
        "No sources yet. Add one with `python -m procurement source api|web NAME --config FILE.json`."
    )
for src in sources:
    c1, c2 = st.columns([4, 1])
    c1.markdown(f"**{plain(src.name)}** ({src.kind}) - last run {src.last_run_at or 'never'}")
    if can_import and c2.button("Fetch now", key=f"fetch_{src.id}"):
        with st.spinner(f"Fetching {src.name}..."), open_session(engine()) as s:
            run = actions.fetch_source(ctx.principal, session=s, tenant=ctx.tenant, name=src.name)
        (st.success if run.status == "ok" else st.warning)(
            plain(
                f"{run.status}: {run.rows_added} added, {run.rows_updated} updated, "
                f"{run.rows_rejected} rejected. {run.error or ''}"
            )
        )

st.subheader("Ingestion runs")
with open_session(engine()) as s:
    log = actions.import_log(ctx.principal, session=s, tenant=ctx.tenant)
runs = log[
    [
        "id",
        "when",
        "by",
        "source",
        "status",
        "added",
        "updated",
        "unchanged",
        "rejected",
        "errors",
        "undone_by",
    ]
]
# an empty cell, not "None" (no error, not undone, no user for a scheduled fetch)
text = runs.select_dtypes(include="object").columns
st.dataframe(
    runs.assign(**{c: runs[c].fillna("") for c in text}),
    hide_index=True,
    width="stretch",
)
undoable = log[log["undoable"]]
if can_import and len(undoable):
    c1, c2 = st.columns([4, 1])
    run_id = c1.selectbox(
        "Undo an import (restores the values it overwrote, removes the rows it added)",
        undoable["id"].tolist(),
        format_func=lambda i: (
            f"{i}: {undoable.loc[undoable['id'] == i, 'source'].iloc[0]} by "
            f"{undoable.loc[undoable['id'] == i, 'by'].iloc[0]}"
        ),
    )
    if c2.button("Undo", key="undo_import"):
        try:
            with open_session(engine()) as s:
                undo = actions.undo_import(
                    ctx.principal, session=s, tenant=ctx.tenant, run_id=int(run_id)
                )
            st.success(plain(undo.source))
        except (ValueError, PermissionDenied) as exc:
            st.error(plain(exc))
