"""Database access: one engine per URL, sessions as ``with Session(engine)``, migrations on start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    # WAL lets the app read while the scheduler writes; busy_timeout waits instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_savepoint(conn: Connection, _name: str) -> None:
    # Python's sqlite3 begins a transaction only before INSERT/UPDATE/DELETE. A SAVEPOINT sent
    # outside one starts its own, so its RELEASE commits (a rolled-back session keeps the write)
    # and reads inside it pin a snapshot that a later write cannot upgrade once another
    # connection has committed ("database is locked" at once, without waiting). Every savepoint
    # here guards a write: take the write lock first, waiting up to busy_timeout for it.
    raw = conn.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "savepoint", _sqlite_savepoint)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_recycle=1800)


@lru_cache
def get_engine(url: str | None = None) -> Engine:
    from procurement.config import get_settings

    return make_engine(url or get_settings().database_url)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def rows_changed(result: Result[Any]) -> int:
    """Rows an UPDATE, DELETE or INSERT ... SELECT touched (``Session.execute`` types its result
    as a plain ``Result``, which has no ``rowcount``)."""
    return int(cast(CursorResult[Any], result).rowcount or 0)


def open_session(engine: Engine | None = None) -> Session:
    """A new ORM session on ``engine`` (default: the configured database); use it in a ``with``
    block, and ``with s.begin():`` around writes."""
    return Session(engine or get_engine(), expire_on_commit=False)
