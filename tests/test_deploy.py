"""Deployment files stay valid (checked without a Docker engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose not installed"
)


def _config(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL_")}
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=ROOT,
        timeout=60,
    )


@needs_compose
def test_compose_file_is_valid() -> None:
    r = _config(MYSQL_PASSWORD="test-only", MYSQL_ROOT_PASSWORD="test-only")
    assert r.returncode == 0, r.stderr


@needs_compose
def test_compose_refuses_to_start_without_database_passwords() -> None:
    r = _config()
    assert r.returncode != 0 and "MYSQL_PASSWORD" in r.stderr


def test_compose_has_app_scheduler_and_mysql() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for service in ("  app:", "  scheduler:", "  db:", "procurement.scheduler", "mysql:8"):
        assert service in text
