"""A company's long histories read from a SQLite file in a second process.

SQLite serialises reads that run in threads of one process (its memory allocator takes one
global mutex: two threads reading the price and sales tables of 10,000 products took 21 s each
where one after the other took 8 s each), but two processes read a WAL database side by side.
The retrain reads the sales history in a child process while it reads the prices itself. The
child sees what any new connection sees: committed rows only, as ``committed=True`` reads are
documented to.

Rows come as one line of "date,value" text per product (``group_concat``: a C-speed CSV parse
afterwards is about 2x faster than fetching millions of rows into Python); ``parse_grouped``
turns them into arrays, here and in the child, which sends them back as an Arrow stream.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc

log = logging.getLogger(__name__)

Grouped = tuple[np.ndarray, np.ndarray, np.ndarray]  # product ids, dates (datetime64[ns]), values


def parse_grouped(rows: Sequence[Sequence[Any]]) -> Grouped:
    """(product_id, count, "date,value" lines) rows as arrays, one element per line."""
    if not rows:
        return (
            np.array([], dtype=np.int64),
            np.array([], dtype="datetime64[ns]"),
            np.array([], dtype=float),
        )
    ids = np.repeat(np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows])
    # Arrow's CSV reader parses dates and numbers on every core: 0.8 s for 7.3M rows where
    # pandas' C reader and to_datetime took 3.6 s
    table = pa_csv.read_csv(
        io.BytesIO("\n".join(r[2] for r in rows).encode()),
        read_options=pa_csv.ReadOptions(column_names=["date", "value"]),
        convert_options=pa_csv.ConvertOptions(
            column_types={"date": pa.date32(), "value": pa.float64()}
        ),
    )
    dates = table.column("date").to_numpy().astype("datetime64[ns]")
    return ids, dates, table.column("value").to_numpy()


def sqlite_file(url: Any) -> str | None:
    """The database file of a SQLite URL, None for anything else (or an in-memory database)."""
    if not url.drivername.startswith("sqlite") or not url.database:
        return None
    if url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return str(Path(url.database).resolve())


class BackgroundRead:
    """``sql`` (a grouped SELECT with its values inlined) run on the SQLite file ``path`` in a
    child process; ``result()`` waits for its rows as arrays. When the child fails, the read
    runs here instead: correctness first."""

    def __init__(self, path: str, sql: str) -> None:
        self.path, self.sql = path, sql
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "procurement.db.bulkread", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None
        # a child that died before reading its query breaks the pipe: result() reads here
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(sql.encode())
            self.proc.stdin.close()
        self._box: dict[str, Any] = {}
        # read as the child writes: a full pipe would stall it
        self._reader = threading.Thread(target=self._drain, name="bulkread", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        try:
            self._box["table"] = pa_ipc.open_stream(self.proc.stdout).read_all()
        except Exception as exc:  # the child died or wrote nothing
            self._box["error"] = exc

    def result(self) -> Grouped:
        self._reader.join()
        # the child writes to stderr only as it fails, far less than a pipe holds
        err = self.proc.stderr.read() if self.proc.stderr else b""
        self.proc.wait()
        self._close()
        table = self._box.get("table")
        if self.proc.returncode != 0 or table is None:
            log.warning(
                "background read failed (exit %s): %s; reading here",
                self.proc.returncode,
                err.decode(errors="replace")[-500:],
            )
            return read(self.path, self.sql)
        dates = table.column("date").to_numpy().astype("datetime64[ns]")
        ids = table.column("product_id").to_numpy()
        return ids, dates, table.column("value").to_numpy()

    def cancel(self) -> None:
        """Stop the child; its rows are not wanted."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join()
        self._close()

    def _close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):  # stdin's unsent query, the child gone
                    pipe.close()


def read(path: str, sql: str) -> Grouped:
    """The same read in this process."""
    con = sqlite3.connect(path, timeout=30)
    try:
        return parse_grouped(con.execute(sql).fetchall())
    finally:
        con.close()


def main() -> None:
    ids, dates, values = read(sys.argv[1], sys.stdin.read())
    table = pa.table(
        {
            "product_id": pa.array(ids, pa.int64()),
            "date": pa.array(dates.astype("datetime64[D]"), pa.date32()),
            "value": pa.array(values, pa.float64()),
        }
    )
    with pa_ipc.new_stream(sys.stdout.buffer, table.schema) as out:
        out.write_table(table)


if __name__ == "__main__":
    main()
