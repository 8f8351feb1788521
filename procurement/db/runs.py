"""The retrain queue, leases (locks with expiry) and the sidecar's heartbeat, in the database."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from procurement.db import rows_changed
from procurement.db.models import JobLock, ModelRun

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
REJECTED = "rejected"
ACTIVE = (QUEUED, RUNNING)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class TrainingBusy(RuntimeError):
    """Another process holds the training lease; the request stays queued."""


class QueueRace(Exception):
    """Another request queued a run after this transaction's snapshot; retry."""


def get_run(session: Session, run_id: int) -> ModelRun | None:
    return session.get(ModelRun, run_id)


def request_retrain(session: Session, tenant_id: int, who: str) -> tuple[ModelRun, bool]:
    """Queue a retrain unless one is already waiting; returns (the queued run, created?).

    The unique (tenant, queue_slot) index makes this safe under concurrent clicks from many
    processes: only one insert wins, the others get the run that is already waiting.
    """
    existing = session.scalar(
        select(ModelRun).where(ModelRun.tenant_id == tenant_id, ModelRun.queue_slot == QUEUED)
    )
    if existing is not None:
        return existing, False
    run = ModelRun(tenant_id=tenant_id, status=QUEUED, queue_slot=QUEUED, requested_by=who)
    try:
        with session.begin_nested():
            session.add(run)
    except IntegrityError:
        existing = session.scalar(
            select(ModelRun).where(ModelRun.tenant_id == tenant_id, ModelRun.queue_slot == QUEUED)
        )
        if existing is None:
            # MySQL's REPEATABLE READ: this transaction still reads its snapshot from before
            # the other click's run was committed; the caller retries in a new transaction
            raise QueueRace from None
        return existing, False
    return run, True


def claim_next(session: Session, tenant_id: int | None = None) -> ModelRun | None:
    """Move the oldest queued run to running (call while holding the training lock)."""
    stmt = (
        select(ModelRun)
        .where(ModelRun.status == QUEUED)
        .order_by(ModelRun.requested_at, ModelRun.id)
    )
    if tenant_id is not None:
        stmt = stmt.where(ModelRun.tenant_id == tenant_id)
    run = session.scalars(stmt.limit(1)).first()
    if run is None:
        return None
    run.status = RUNNING
    run.queue_slot = None
    run.started_at = now()
    run.progress = 0.0
    run.message = "starting"
    session.flush()
    return run


def requeue_orphans(session: Session) -> int:
    """Runs left 'running' by a crashed trainer go back to the queue (or fail if one waits)."""
    n = 0
    for run in session.scalars(select(ModelRun).where(ModelRun.status == RUNNING)):
        waiting = session.scalar(
            select(ModelRun.id).where(
                ModelRun.tenant_id == run.tenant_id, ModelRun.queue_slot == QUEUED
            )
        )
        if waiting is None:
            run.status, run.queue_slot, run.message = QUEUED, QUEUED, "requeued after a crash"
        else:
            run.status, run.message, run.finished_at = (
                FAILED,
                "trainer crashed; a newer request is queued",
                now(),
            )
        session.flush()
        n += 1
    return n


def list_runs(session: Session, tenant_id: int, limit: int = 20) -> list[ModelRun]:
    return list(
        session.scalars(
            select(ModelRun)
            .where(ModelRun.tenant_id == tenant_id)
            .order_by(ModelRun.id.desc())
            .limit(limit)
        )
    )


def acquire_lock(session: Session, name: str, holder: str, ttl_seconds: float) -> bool:
    """Take the lease ``name`` if free or expired. Commit right after to make it visible."""
    t = now()
    expires = t + dt.timedelta(seconds=ttl_seconds)
    try:
        with session.begin_nested():
            session.add(JobLock(name=name, holder=holder, acquired_at=t, expires_at=expires))
        return True
    except IntegrityError:
        pass
    res = session.execute(
        update(JobLock)
        .where(JobLock.name == name, (JobLock.expires_at < t) | (JobLock.holder == holder))
        .values(holder=holder, acquired_at=t, expires_at=expires)
    )
    return rows_changed(res) == 1


def renew_lock(session: Session, name: str, holder: str, ttl_seconds: float) -> bool:
    res = session.execute(
        update(JobLock)
        .where(JobLock.name == name, JobLock.holder == holder)
        .values(expires_at=now() + dt.timedelta(seconds=ttl_seconds))
    )
    return rows_changed(res) == 1


def release_lock(session: Session, name: str, holder: str) -> None:
    session.execute(delete(JobLock).where(JobLock.name == name, JobLock.holder == holder))


def lock_info(session: Session, name: str) -> JobLock | None:
    return session.get(JobLock, name)


def break_lock(session: Session, name: str) -> None:
    session.execute(delete(JobLock).where(JobLock.name == name))
