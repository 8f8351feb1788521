"""Run the sidecar: ``python -m procurement.scheduler``."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from procurement import monitoring, retrain
from procurement.config import get_settings
from procurement.db import get_engine, migrate


def main() -> int:
    settings = get_settings()
    monitoring.configure_logging(settings.log_format)
    log = logging.getLogger("procurement.scheduler")
    # APScheduler logs every run of the 2-second queue poll at INFO; keep its warnings only
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = get_engine()
    migrate(engine)
    if settings.metrics_port:
        try:
            monitoring.serve(engine, settings)
            log.info(
                "metrics on http://%s:%d/metrics", settings.metrics_addr, settings.metrics_port
            )
        except OSError as exc:  # training matters more than its metrics: keep going, loudly
            log.error("cannot serve metrics on port %d: %s", settings.metrics_port, exc)
    requeued = retrain.recover(engine)
    if requeued:
        log.info("requeued %d run(s) left by a crashed trainer", requeued)
    sched = BlockingScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone="UTC",
    )
    sched.add_job(
        "procurement.scheduler:process_queue",
        "interval",
        seconds=settings.scheduler_poll_seconds,
        id="process_queue",
        replace_existing=True,
        misfire_grace_time=None,
    )
    sched.add_job(
        "procurement.scheduler:enqueue_all",
        CronTrigger.from_crontab(settings.retrain_cron, timezone="UTC"),
        id="scheduled_retrain",
        replace_existing=True,
    )
    sched.add_job(
        "procurement.scheduler:fetch_sources",
        "cron",
        hour=(settings.refresh_hour_utc - 1) % 24,
        id="fetch_sources",
        replace_existing=True,
    )
    sched.add_job(
        "procurement.scheduler:refresh_all",
        "cron",
        hour=settings.refresh_hour_utc,
        id="refresh_forecasts",
        replace_existing=True,
    )

    sched.add_job(
        "procurement.scheduler:monitor",
        "interval",
        minutes=settings.monitor_interval_minutes,
        id="monitor",
        replace_existing=True,
        next_run_time=dt.datetime.now(dt.UTC),  # at start too, so the metrics fill at once
    )

    def stop(signum, _frame):
        log.info("signal %s: stopping", signum)
        sched.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "scheduler started: queue every %ss, retrain cron %r, refresh daily at %02d:00 UTC",
        settings.scheduler_poll_seconds,
        settings.retrain_cron,
        settings.refresh_hour_utc,
    )
    sched.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
