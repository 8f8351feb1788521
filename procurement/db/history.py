"""Price, sales and driver history: idempotent bulk upserts and bulk loads, scoped to a tenant."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from typing import cast as type_cast

import numpy as np
import pandas as pd
from sqlalchemy import (
    Date,
    DateTime,
    Double,
    ForeignKey,
    String,
    Table,
    bindparam,
    cast,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from procurement.db import bulkread
from procurement.db.catalog import ensure_products
from procurement.db.models import (
    Base,
    DriverObservation,
    ImportRun,
    PriceObservation,
    Product,
    PurchaseOrder,
    Sale,
    Stock,
    Supplier,
    SupplierTerms,
)

CHUNK = 20_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpsertCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    described: int = 0  # stored products whose name, supplier, currency, category or unit changed

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.added + other.added,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.described + other.described,
        )


def _upsert(
    session: Session,
    table,
    key_cols: list[str],
    value_col: str,
    incoming: pd.DataFrame,
    existing: pd.DataFrame,
    extra: dict[str, object],
    changes: list[pd.DataFrame] | None = None,
) -> UpsertCounts:
    """Insert new keys, update changed values, leave equal ones alone (so re-imports are no-ops).

    With ``changes``, the keys, old values (NaN: added) and new values of the rows written are
    appended to it, so the import can be undone."""
    merged = incoming.merge(existing, on=key_cols, how="left", suffixes=("", "_old"))
    is_new = merged["id"].isna().to_numpy()
    old = merged[f"{value_col}_old"].to_numpy(dtype=float)
    new = merged[value_col].to_numpy(dtype=float)
    changed = ~is_new & ~np.isclose(old, new, rtol=0, atol=1e-9)
    if changes is not None:
        written = is_new | changed
        changes.append(
            merged.loc[written, key_cols].assign(
                old_value=np.where(is_new, np.nan, old)[written], new_value=new[written]
            )
        )
    conn = session.connection()
    inserts = merged.loc[is_new, [*key_cols, value_col]]
    for k, v in extra.items():
        inserts[k] = v
    _insert_rows(conn, table, inserts)
    if changed.any():
        ups = merged.loc[changed, ["id", value_col]].rename(columns={"id": "_id"})
        ups["_id"] = ups["_id"].astype(int)
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({value_col: bindparam(value_col)})
        )
        conn.execute(stmt, ups.to_dict("records"))
    return UpsertCounts(int(is_new.sum()), int(changed.sum()), int((~is_new & ~changed).sum()))


def _insert_rows(conn, table, rows: pd.DataFrame) -> None:
    """Insert ``rows`` (columns named as the table's) with the driver's executemany of plain
    tuples: SQLAlchemy's per-row dictionaries and bind processing cost more than the database's
    own work on large tables. Values are bound as SQLAlchemy binds them (dates as ISO text on
    SQLite), so the stored rows are the same."""
    if rows.empty:
        return
    rows = rows.copy()
    for c in table.c:  # Python-side defaults, as SQLAlchemy's insert fills them in
        if c.name in rows.columns or c.default is None:
            continue
        if not c.default.is_scalar:
            records = rows.to_dict("records")
            for start in range(0, len(records), CHUNK):
                conn.execute(table.insert(), records[start : start + CHUNK])
            return
        rows[c.name] = c.default.arg
    cols = list(rows.columns)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    iso_dates = conn.dialect.name == "sqlite"
    values = []
    for c in cols:
        col = rows[c]
        if isinstance(table.c[c].type, Date) and iso_dates:
            # few distinct days among many rows: format each once
            text = {
                d: None if pd.isna(d) else f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
                for d in col.drop_duplicates()
            }
            values.append([text[d] for d in col])
        elif col.dtype.kind in "fiub":
            values.append([None if v != v else v for v in col.tolist()])  # NaN -> NULL
        else:
            values.append([None if v is None or v is pd.NaT or v != v else v for v in col.tolist()])
    tuples = list(zip(*values, strict=True))
    for start in range(0, len(tuples), CHUNK):
        conn.exec_driver_sql(sql, tuples[start : start + CHUNK])


SQLITE_BULK_CACHE_KIB = 256 * 1024


@contextmanager
def bulk_writes(session: Session) -> Iterator[None]:
    """A larger SQLite page cache while many rows are written (others: nothing changes).

    Rows arrive product by product, so the (tenant_id, date) index is written all over; with
    SQLite's default 2 MB cache its pages are spilled and read back for every product. Restored
    afterwards (nested uses keep the outer size)."""
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    before = int(conn.exec_driver_sql("PRAGMA cache_size").scalar() or -2000)
    conn.exec_driver_sql(f"PRAGMA cache_size=-{max(SQLITE_BULK_CACHE_KIB, -before)}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={before}")


def store_prices(
    session: Session,
    tenant_id: int,
    prices: pd.DataFrame,
    progress: Callable[[int, int], None] | None = None,
    import_run_id: int | None = None,
) -> UpsertCounts:
    """Store a validated price table (see ``importers.validate_prices``); sales from ``quantity``.

    Runs inside the caller's transaction: the caller commits, or nothing is stored. Large tables
    are written in groups of products so memory stays bounded. With ``import_run_id`` (see
    ``record_import``) the previous value of every row written is kept, for ``undo_import``.
    """
    before: set[str] = set()
    if import_run_id is not None:
        before = set(session.scalars(select(Product.sku).where(Product.tenant_id == tenant_id)))
    known = set(session.scalars(select(Product.id).where(Product.tenant_id == tenant_id)))
    suppliers_before = _supplier_ids(session, tenant_id) if import_run_id is not None else {}
    described: list[tuple[int, str, str | None, str]] = []
    ids = ensure_products(session, tenant_id, prices, described)
    counts = UpsertCounts(described=len({pid for pid, *_ in described}))
    changes: dict[str, list[pd.DataFrame]] | None = None
    if import_run_id is not None:
        created = [pid for sku, pid in ids.items() if sku not in before]
        changes = {"price": [], "sale": [], "product": [pd.DataFrame({"product_id": created})]}
        # what the import renamed or moved, so that its undo restores the catalog too
        session.add_all(
            ImportChange(
                import_run_id=import_run_id,
                kind=field,
                product_id=pid,
                old_text=old,
                new_text=new,
            )
            for pid, field, old, new in described
        )
        # and the suppliers it named first, which its undo removes where nothing uses them
        for name, sid in _supplier_ids(session, tenant_id).items():
            if name not in suppliers_before:
                anchor = session.scalar(select(Product.id).where(Product.supplier_id == sid))
                if anchor is not None:
                    session.add(
                        ImportChange(
                            import_run_id=import_run_id,
                            kind=NEW_SUPPLIER,
                            product_id=anchor,
                            new_text=name,
                        )
                    )
    df = prices.assign(product_id=prices["sku"].map(ids))
    total, done = len(df), 0
    groups = _product_groups(df["product_id"], max_rows=PRODUCT_GROUP_ROWS, max_products=400)
    with bulk_writes(session):
        for pids in groups:
            part = df[df["product_id"].isin(pids)] if len(groups) > 1 else df
            # products created just now have no rows yet: nothing to read back
            fresh = known.isdisjoint(pids)
            existing = _load_existing(session, PriceObservation, "price", tenant_id, pids, fresh)
            counts = counts + _upsert(
                session,
                PriceObservation.__table__,
                ["product_id", "date"],
                "price",
                part[["product_id", "date", "price"]],
                existing,
                {"tenant_id": tenant_id},
                changes["price"] if changes is not None else None,
            )
            if "quantity" in part.columns:
                q = part.loc[part["quantity"].notna(), ["product_id", "date", "quantity"]]
                if len(q):
                    existing_q = _load_existing(session, Sale, "quantity", tenant_id, pids, fresh)
                    _upsert(
                        session,
                        Sale.__table__,
                        ["product_id", "date"],
                        "quantity",
                        q,
                        existing_q,
                        {"tenant_id": tenant_id},
                        changes["sale"] if changes is not None else None,
                    )
            done += len(part)
            if progress:
                progress(done, total)
    if changes is not None and import_run_id is not None:
        _store_changes(session, import_run_id, changes)
    return counts


PRODUCT_GROUP_ROWS = 300_000


def _product_groups(pids: pd.Series, max_rows: int, max_products: int) -> list[list[int]]:
    sizes = pids.value_counts(sort=False).sort_index()
    groups: list[list[int]] = [[]]
    rows = 0
    for pid, n in sizes.items():
        if groups[-1] and (rows + n > max_rows or len(groups[-1]) >= max_products):
            groups.append([])
            rows = 0
        groups[-1].append(int(pid))
        rows += int(n)
    return groups


def _load_existing(
    session: Session, model, value: str, tenant_id: int, pids: list, none: bool = False
) -> pd.DataFrame:
    """The stored rows of products ``pids``; ``none``: the caller knows there are none."""
    if none:
        return pd.DataFrame(
            {
                "id": pd.Series(dtype=float),
                "product_id": pd.Series(dtype=int),
                "date": pd.Series(dtype=object),
                f"{value}_old": pd.Series(dtype=float),
            }
        )
    # by product only (its unique index), the tenant checked on the rows read: with the tenant
    # in the query SQLite may walk the tenant's (tenant_id, date) index, every row of the
    # company for every group of products
    stmt = select(model.id, model.product_id, model.date, getattr(model, value), model.tenant_id)
    stmt = stmt.where(model.product_id.in_([int(p) for p in pids]))
    rows = session.execute(stmt).all()
    df = pd.DataFrame(rows, columns=["id", "product_id", "date", f"{value}_old", "tenant_id"])
    df = df[df["tenant_id"] == tenant_id].drop(columns="tenant_id")
    df["date"] = pd.to_datetime(df["date"]).dt.date
    return df


def store_drivers(session: Session, tenant_id: int, drivers: pd.DataFrame) -> UpsertCounts:
    """Upsert driver observations from a frame with ``name,date,value``."""
    rows = session.execute(
        select(
            DriverObservation.id,
            DriverObservation.name,
            DriverObservation.date,
            DriverObservation.value,
        ).where(DriverObservation.tenant_id == tenant_id)
    ).all()
    existing = pd.DataFrame(rows, columns=["id", "name", "date", "value_old"])
    existing["date"] = pd.to_datetime(existing["date"]).dt.date
    return _upsert(
        session,
        DriverObservation.__table__,
        ["name", "date"],
        "value",
        drivers[["name", "date", "value"]],
        existing,
        {"tenant_id": tenant_id},
    )


def record_import(
    session: Session,
    tenant_id: int,
    source: str,
    counts: UpsertCounts | None,
    error: str | None = None,
    actor: str = "system",
    undoable: bool = False,
) -> ImportRun:
    """Record an import run and who made it. ``undoable``: the run's changes are kept (pass its
    id to ``store_prices``) so ``undo_import`` can restore the previous values."""
    run = ImportRun(
        tenant_id=tenant_id,
        source=source[:500],
        rows_added=counts.added if counts else 0,
        rows_updated=counts.updated if counts else 0,
        rows_unchanged=counts.unchanged if counts else 0,
        status="error" if error else "ok",
        error=error,
    )
    session.add(run)
    session.flush()
    session.add(ImportRecord(import_run_id=run.id, actor=actor[:100], undoable=undoable))
    session.flush()
    return run


# --- who imported what, and undo ---------------------------------------------------------------
# These two tables belong to the import record; they are declared here, next to the code that
# writes them (migration 0005).


class ImportRecord(Base):
    """Who made an import run, and whether (and by whom) it was undone."""

    __tablename__ = "import_record"

    import_run_id: Mapped[int] = mapped_column(
        ForeignKey("import_run.id", ondelete="CASCADE"), primary_key=True
    )
    actor: Mapped[str] = mapped_column(String(100))
    undoable: Mapped[bool] = mapped_column(default=False)
    undone_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    undone_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


class ImportChange(Base):
    """One row an import wrote: a price or sale (old value NULL: the import added it), a
    product it created (kind 'product'), or a stored product's descriptive field it changed
    (kind: one of ``DESCRIBED``, with the old and new text)."""

    __tablename__ = "import_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    import_run_id: Mapped[int] = mapped_column(
        ForeignKey("import_run.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))  # price | sale | product | name | supplier...
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    old_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    new_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    # a product's descriptive field (kind: name, supplier, currency, category, unit) before and
    # after the import; the supplier by name
    old_text: Mapped[str | None] = mapped_column(String(500), nullable=True)
    new_text: Mapped[str | None] = mapped_column(String(500), nullable=True)


def _store_changes(session: Session, run_id: int, changes: dict[str, list[pd.DataFrame]]) -> None:
    """Write the change log with the driver's executemany (a plain tuple per row): it is as
    long as the import, and SQLAlchemy's per-row dictionaries would double the import's time."""
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        "INSERT INTO import_change (import_run_id, kind, product_id, date, old_value, new_value)"
        f" VALUES ({', '.join([mark] * 6)})"
    )
    for kind, frames in changes.items():
        frames = [f for f in frames if len(f)]
        if not frames:
            continue
        df = pd.concat(frames, ignore_index=True)
        n = len(df)

        def column(name: str, df: pd.DataFrame = df, n: int = n) -> list[object]:
            if name not in df.columns:
                return [None] * n
            values = df[name].to_numpy(dtype=object)
            return [None if pd.isna(v) else v for v in values]

        dates = [None if d is None else str(d) for d in column("date")]
        rows = list(
            zip(
                [run_id] * n,
                [kind] * n,
                df["product_id"].astype(int).tolist(),
                dates,
                column("old_value"),
                column("new_value"),
                strict=True,
            )
        )
        for start in range(0, n, CHUNK):
            conn.exec_driver_sql(sql, rows[start : start + CHUNK])


class UndoError(ValueError):
    """The import cannot be undone (unknown, not recorded, already undone, or overwritten)."""


_VALUE_TABLES = {"price": (PriceObservation, "price"), "sale": (Sale, "quantity")}


DESCRIBED = ("name", "supplier", "currency", "category", "unit")
NEW_SUPPLIER = "supplier+"  # a supplier the import named first (new_text: its name)


def _supplier_ids(session: Session, tenant_id: int) -> dict[str, int]:
    return dict(
        session.execute(
            select(Supplier.name, Supplier.id).where(Supplier.tenant_id == tenant_id)
        ).all()
    )


def _remove_unused_suppliers(session: Session, tenant_id: int, names: list[str]) -> int:
    """Delete the suppliers ``names`` that no product, supplier terms or order refers to."""
    ids = _supplier_ids(session, tenant_id)
    removed = 0
    for name in names:
        sid = ids.get(name)
        if sid is None:
            continue
        used = any(
            session.scalar(select(model.id).where(model.supplier_id == sid).limit(1)) is not None
            for model in (Product, SupplierTerms, PurchaseOrder)
        )
        if not used:
            session.execute(delete(Supplier).where(Supplier.id == sid))
            removed += 1
    return removed


def _described_back(
    session: Session, tenant_id: int, run_id: int, changes: pd.DataFrame
) -> list[tuple[Product, str, Any]]:
    """The products' descriptive fields as they were before import ``run_id``: (product, field,
    value) to set; refused (``UndoError``) where one changed since."""
    ch = changes[changes["kind"].isin(DESCRIBED)]
    if ch.empty:
        return []
    suppliers = _supplier_ids(session, tenant_id)
    out = []
    for row in ch.itertuples(index=False):
        prod = session.get(Product, int(row.product_id))
        if prod is None:
            continue  # the product was deleted since: nothing to restore
        if row.kind == "supplier":
            now = next((n for n, i in suppliers.items() if i == prod.supplier_id), None)
            field, value = "supplier_id", suppliers.get(row.old_text) if row.old_text else None
        else:
            now, field, value = getattr(prod, row.kind), row.kind, row.old_text
        if now != row.new_text:
            raise UndoError(
                f"import {run_id} cannot be undone: the {row.kind} of {prod.sku} changed since "
                f"({row.new_text!r} -> {now!r}); undo the later imports first"
            )
        out.append((prod, field, value))
    return out


def undo_import(session: Session, tenant_id: int, run_id: int, actor: str) -> ImportRun:
    """Restore what import ``run_id`` overwrote and remove what it added, in the caller's
    transaction; returns the run that records the undo.

    Refused when a row it wrote has changed since (a later import: undo that one first), so
    an undo never destroys newer data."""
    run = session.get(ImportRun, run_id)
    rec = session.get(ImportRecord, run_id)
    if run is None or run.tenant_id != tenant_id:
        raise UndoError(f"no import {run_id} in this company")
    if rec is None or not rec.undoable:
        raise UndoError(f"import {run_id} kept no previous values and cannot be undone")
    if rec.undone_at is not None:
        raise UndoError(f"import {run_id} was already undone by {rec.undone_by}")
    changes = pd.DataFrame(
        session.execute(
            select(
                ImportChange.kind,
                ImportChange.product_id,
                ImportChange.date,
                ImportChange.old_value,
                ImportChange.new_value,
                ImportChange.old_text,
                ImportChange.new_text,
            ).where(ImportChange.import_run_id == run_id)
        ).all(),
        columns=["kind", "product_id", "date", "old_value", "new_value", "old_text", "new_text"],
    )
    described = _described_back(session, tenant_id, run_id, changes)
    plans = []
    for kind, (model, value) in _VALUE_TABLES.items():
        ch = changes[changes["kind"] == kind]
        if ch.empty:
            continue
        pids = sorted({int(p) for p in ch["product_id"]})
        current = _load_existing(session, model, value, tenant_id, pids)
        ch = ch.assign(date=pd.to_datetime(ch["date"]).dt.date, product_id=ch["product_id"])
        merged = ch.merge(current, on=["product_id", "date"], how="left")
        now = merged[f"{value}_old"].to_numpy(dtype=float)
        moved = np.isnan(now) | ~np.isclose(
            now, merged["new_value"].to_numpy(dtype=float), rtol=0, atol=1e-9
        )
        if moved.any():
            first = merged[moved].iloc[0]
            sku = session.scalar(select(Product.sku).where(Product.id == int(first["product_id"])))
            raise UndoError(
                f"import {run_id} cannot be undone: {int(moved.sum())} of its {kind} rows changed "
                f"since (e.g. {sku} on {first['date']}); undo the later imports first"
            )
        plans.append((model, value, merged))
    restored = removed = 0
    conn = session.connection()
    for model, value, merged in plans:
        table = type_cast(Table, model.__table__)
        added = merged["old_value"].isna().to_numpy()
        ids = [int(i) for i in merged.loc[added, "id"]]
        for start in range(0, len(ids), CHUNK):
            conn.execute(delete(table).where(table.c.id.in_(ids[start : start + CHUNK])))
        ups = merged.loc[~added, ["id", "old_value"]].rename(
            columns={"id": "_id", "old_value": value}
        )
        if len(ups):
            ups["_id"] = ups["_id"].astype(int)
            conn.execute(
                update(table)
                .where(table.c.id == bindparam("_id"))
                .values({value: bindparam(value)}),
                ups.to_dict("records"),
            )
        if model is PriceObservation:
            restored, removed = len(ups), len(ids)
    for prod, field, value in described:
        setattr(prod, field, value)
    session.flush()
    created = [int(p) for p in changes.loc[changes["kind"] == "product", "product_id"]]
    if created:
        used = set()
        for model in (PriceObservation, Sale, Stock):
            used |= set(
                session.scalars(select(model.product_id).where(model.product_id.in_(created)))
            )
        unused = [p for p in created if p not in used]
        if unused:
            conn.execute(delete(Product).where(Product.id.in_(unused)))
    _remove_unused_suppliers(
        session,
        tenant_id,
        [str(n) for n in changes.loc[changes["kind"] == NEW_SUPPLIER, "new_text"]],
    )
    rec.undone_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rec.undone_by = actor[:100]
    undo = record_import(
        session,
        tenant_id,
        f"undo of import {run_id}: {removed} added prices removed, {restored} previous prices "
        f"restored"
        + (f", {len(described)} product fields restored" if described else "")
        + f" ({run.source})",
        UpsertCounts(updated=restored),
        actor=actor,
    )
    undo.kind = "undo"
    session.flush()
    return undo


def import_log(session: Session, tenant_id: int, limit: int = 50) -> pd.DataFrame:
    """The company's latest import runs with who made them and whether they can be undone."""
    rows = session.execute(
        select(
            ImportRun.id,
            ImportRun.created_at,
            ImportRun.source,
            ImportRun.kind,
            ImportRun.status,
            ImportRun.rows_added,
            ImportRun.rows_updated,
            ImportRun.rows_unchanged,
            ImportRun.rows_rejected,
            ImportRun.error,
            ImportRecord.actor,
            ImportRecord.undoable,
            ImportRecord.undone_at,
            ImportRecord.undone_by,
        )
        .outerjoin(ImportRecord, ImportRecord.import_run_id == ImportRun.id)
        .where(ImportRun.tenant_id == tenant_id)
        .order_by(ImportRun.id.desc())
        .limit(limit)
    ).all()
    cols = [
        "id",
        "when",
        "source",
        "kind",
        "status",
        "added",
        "updated",
        "unchanged",
        "rejected",
        "errors",
        "by",
        "undoable",
        "undone_at",
        "undone_by",
    ]
    df = pd.DataFrame(rows, columns=cols)
    df["undoable"] = df["undoable"].fillna(False).astype(bool) & df["undone_at"].isna()
    return df


def _read(session: Session, stmt, committed: bool = False) -> pd.DataFrame:
    """Run a SELECT into a DataFrame. ``committed``: the caller only needs committed data, and
    on MySQL/MariaDB the read goes through connectorx (Rust, many times faster than pymysql's
    row-by-row fetch) on its own connection, outside the session's transaction: it sees neither
    the session's uncommitted writes nor its snapshot (an import checking its prices inside its
    own transaction must not use it). Not on SQLite: connectorx links its own copy of SQLite,
    and two copies in one process do not see each other's locks (stale reads were observed), so
    SQLite uses ``_read_grouped`` instead."""
    bind = session.get_bind()
    if committed and bind.engine.url.drivername.startswith(("mysql", "mariadb")):
        try:
            import connectorx as cx

            sql = str(stmt.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True}))
            session.flush()
            return cx.read_sql(
                bind.engine.url.set(drivername="mysql").render_as_string(hide_password=False), sql
            )
        except Exception:  # fall back to the portable path; correctness first
            log.debug("connectorx read failed; using SQLAlchemy", exc_info=True)
    return pd.read_sql(stmt, session.connection())


def _grouped_sqlite(model, value: str, tenant_id: int, since: dt.date | None):
    """SQLite's (product_id, count, "date,value" lines) per product of a tenant."""
    # Scoped through the tenant's product ids so SQLite walks the (product_id, date) index in
    # order; filtering on tenant_id instead makes it sort millions of rows for the GROUP BY.
    own_products = select(Product.id).where(Product.tenant_id == tenant_id)
    line = cast(model.date, String).concat(",").concat(cast(getattr(model, value), String))
    stmt = select(model.product_id, func.count(), func.group_concat(line, "\n")).where(
        model.product_id.in_(own_products)
    )
    if since is not None:
        stmt = stmt.where(model.date >= since)
    return stmt.group_by(model.product_id)


def _read_grouped(
    session: Session,
    model,
    value: str,
    tenant_id: int,
    since: dt.date | None,
    committed: bool = False,
) -> pd.DataFrame:
    """(product_id, date, value) of a tenant. On SQLite one row per product with the dates and
    values concatenated in C is about 2x faster than fetching millions of rows in Python."""
    bind = session.get_bind()
    if not bind.engine.url.drivername.startswith("sqlite"):
        stmt = select(model.product_id, model.date, getattr(model, value)).where(
            model.tenant_id == tenant_id
        )
        if since is not None:
            stmt = stmt.where(model.date >= since)
        return _read(session, stmt, committed)
    rows = session.execute(_grouped_sqlite(model, value, tenant_id, since)).all()
    ids, dates, values = bulkread.parse_grouped(rows)
    return pd.DataFrame({"product_id": ids, "date": dates, value: values})


BACKGROUND_READ_ROWS = 1_000_000  # above about this many rows a second process pays for itself


class SalesRead:
    """``load_sales(committed=True)``, started when made and finished when called: on a SQLite
    file with about ``BACKGROUND_READ_ROWS`` or more, in a child process (``bulkread``), so the
    caller reads the prices meanwhile; otherwise when called."""

    def __init__(
        self, session: Session, tenant_id: int, since: dt.date | None, expected_rows: int
    ) -> None:
        self.session, self.tenant_id, self.since = session, tenant_id, since
        path = bulkread.sqlite_file(session.get_bind().engine.url)
        self.pending: bulkread.BackgroundRead | None = None
        if path is not None and expected_rows >= BACKGROUND_READ_ROWS:
            stmt = _grouped_sqlite(Sale, "quantity", tenant_id, since)
            dialect = session.get_bind().dialect
            sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            self.pending = bulkread.BackgroundRead(path, sql)

    def __call__(self) -> pd.DataFrame:
        if self.pending is None:
            return load_sales(self.session, self.tenant_id, self.since, committed=True)
        ids, dates, values = self.pending.result()
        df = pd.DataFrame({"product_id": ids, "date": dates, "quantity": values})
        return _with_sku(self.session, self.tenant_id, df, "quantity")

    def cancel(self) -> None:
        if self.pending is not None:
            self.pending.cancel()


def _sku_of(session: Session, tenant_id: int) -> dict[int, str]:
    return dict(
        session.execute(select(Product.id, Product.sku).where(Product.tenant_id == tenant_id)).all()
    )


def _with_sku(session: Session, tenant_id: int, df: pd.DataFrame, value: str) -> pd.DataFrame:
    skus = _sku_of(session, tenant_id)
    ids = np.array(list(skus), dtype=np.int64)
    names = np.array(list(skus.values()), dtype=object)
    order = np.argsort(ids)
    wanted = df["product_id"].to_numpy(dtype=np.int64)
    pos = np.searchsorted(ids[order], wanted)
    # a read of committed data (``_read(committed=True)``) can hold a product created since
    # this session's snapshot: leave its rows to the next read, which knows its sku
    known = np.isin(wanted, ids)
    sku_rank = np.empty(len(ids), dtype=np.int64)
    sku_rank[np.argsort(names[order], kind="stable")] = np.arange(len(ids))
    dates = pd.to_datetime(df["date"].to_numpy()[known]).to_numpy()
    # sorted by (sku, date) through one integer key: a sort on millions of strings took 1 s,
    # and rows read per product in date order need none
    key = sku_rank[pos[known]] * 10**7 + dates.astype("datetime64[D]").astype(np.int64)
    rows = np.flatnonzero(known)
    if len(key) > 1 and not (key[1:] >= key[:-1]).all():
        rows = rows[np.argsort(key, kind="stable")]
    return pd.DataFrame(
        {
            "sku": names[order][pos[rows]],
            "date": pd.to_datetime(df["date"].to_numpy()[rows]),
            value: df[value].to_numpy(dtype=float)[rows],
        }
    )


def load_prices(
    session: Session, tenant_id: int, since: dt.date | None = None, committed: bool = False
) -> pd.DataFrame:
    """All prices of a tenant as ``sku, date (datetime64), price``, sorted. ``committed``: bulk
    reads of committed data only (training, drift), faster on MySQL/MariaDB (see ``_read``)."""
    df = _read_grouped(session, PriceObservation, "price", tenant_id, since, committed)
    return _with_sku(session, tenant_id, df, "price")


def load_sales(
    session: Session, tenant_id: int, since: dt.date | None = None, committed: bool = False
) -> pd.DataFrame:
    df = _read_grouped(session, Sale, "quantity", tenant_id, since, committed)
    return _with_sku(session, tenant_id, df, "quantity")


def load_drivers(
    session: Session, tenant_id: int, since: dt.date | None = None, committed: bool = False
) -> pd.DataFrame:
    stmt = select(DriverObservation.name, DriverObservation.date, DriverObservation.value).where(
        DriverObservation.tenant_id == tenant_id
    )
    if since is not None:
        stmt = stmt.where(DriverObservation.date >= since)
    df = _read(session, stmt, committed)
    df["date"] = pd.to_datetime(df["date"])
    return df.sort_values(["name", "date"], ignore_index=True)


def price_dates(session: Session, tenant_id: int) -> tuple[dt.date | None, dt.date | None]:
    """First and last price date, from the (tenant_id, date) index: two queries, since SQLite
    answers a lone MIN or MAX from the index but scans every row for both in one (1.8 s of a
    10,000-product retrain)."""
    first = session.scalar(
        select(func.min(PriceObservation.date)).where(PriceObservation.tenant_id == tenant_id)
    )
    return first, latest_price_date(session, tenant_id)


def price_range(session: Session, tenant_id: int) -> tuple[dt.date | None, dt.date | None, int]:
    """First and last price date and number of observations."""
    row = session.execute(
        select(
            func.min(PriceObservation.date),
            func.max(PriceObservation.date),
            func.count(PriceObservation.id),
        ).where(PriceObservation.tenant_id == tenant_id)
    ).one()
    return row[0], row[1], int(row[2])


def latest_price_date(session: Session, tenant_id: int) -> dt.date | None:
    """The company's latest price date, answered from the (tenant_id, date) index."""
    return session.scalar(
        select(func.max(PriceObservation.date)).where(PriceObservation.tenant_id == tenant_id)
    )


def demand_per_day(
    session: Session, tenant_id: int, days: int = 28, skus: Sequence[str] | None = None
) -> pd.Series:
    """Average daily quantity sold per sku over the last ``days`` days of the company's sales
    data (``skus``: of those products only)."""
    last = session.scalar(select(func.max(Sale.date)).where(Sale.tenant_id == tenant_id))
    if last is None:
        return pd.Series(dtype=float)
    since = last - dt.timedelta(days=days - 1)
    stmt = (
        select(Product.sku, func.sum(Sale.quantity))
        .join(Product, Product.id == Sale.product_id)
        .where(Sale.tenant_id == tenant_id, Sale.date >= since)
        .group_by(Product.sku)
    )
    if skus is not None:
        stmt = stmt.where(Product.tenant_id == tenant_id, Product.sku.in_(skus))
    rows = session.execute(stmt).all()
    return pd.Series({sku: float(q) / days for sku, q in rows}, dtype=float)


def product_prices(session: Session, tenant_id: int, sku: str, days: int = 180) -> pd.DataFrame:
    """Recent prices of one product: ``date, price``."""
    pid = session.scalar(
        select(Product.id).where(Product.tenant_id == tenant_id, Product.sku == sku)
    )
    if pid is None:
        return pd.DataFrame(columns=["date", "price"])
    # by product id: the (product_id, date) index answers both queries without a scan
    last = session.scalar(
        select(func.max(PriceObservation.date)).where(PriceObservation.product_id == pid)
    )
    if last is None:
        return pd.DataFrame(columns=["date", "price"])
    since = last - dt.timedelta(days=days)
    rows = session.execute(
        select(PriceObservation.date, PriceObservation.price)
        .where(PriceObservation.product_id == pid, PriceObservation.date >= since)
        .order_by(PriceObservation.date)
    ).all()
    df = pd.DataFrame(rows, columns=["date", "price"])
    df["date"] = pd.to_datetime(df["date"])
    return df


def freshness(session: Session, tenant_id: int) -> dict[str, object]:
    """First and latest price date and the number of products: index look-ups only, no count of
    millions of price rows on every page view."""
    # one aggregate per query: SQLite answers a lone min() or max() from the index
    where = PriceObservation.tenant_id == tenant_id
    first = session.scalar(select(func.min(PriceObservation.date)).where(where))
    last = session.scalar(select(func.max(PriceObservation.date)).where(where))
    products = session.scalar(select(func.count(Product.id)).where(Product.tenant_id == tenant_id))
    return {"first": first, "last": last, "products": int(products or 0)}
