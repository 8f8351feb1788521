"""Deployment files stay valid (checked without a Docker engine)."""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def compose() -> str:
    return require_tool("docker-compose", "docker-compose")


needs_compose = pytest.mark.usefixtures("compose")


SECRETS = {
    "MYSQL_PASSWORD": "test-only",
    "MYSQL_ROOT_PASSWORD": "test-only",
    "COOKIE_KEY": "test-only-" + "k" * 32,
    "ADMIN_PASSWORD": "test-only-password",
}


def _config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MYSQL_") and k not in ("COOKIE_KEY", "ADMIN_PASSWORD", "ENVIRONMENT")
    }
    return subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", *(args or ["-q"])],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=ROOT,
        timeout=60,
    )


@needs_compose
def test_compose_file_is_valid() -> None:
    r = _config(**SECRETS)
    assert r.returncode == 0, r.stderr


@needs_compose
@pytest.mark.parametrize("missing", ["COOKIE_KEY", "ADMIN_PASSWORD", "MYSQL_PASSWORD"])
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    r = _config(**{k: v for k, v in SECRETS.items() if k != missing})
    assert r.returncode != 0 and missing in r.stderr


@needs_compose
def test_compose_runs_in_production_without_demo_users() -> None:
    """Even with ENVIRONMENT=development in the shell: demo users cannot log in, and the setup
    step creates only the administrator from ADMIN_PASSWORD, printing no generated password."""
    import yaml

    r = _config("--no-interpolate", **SECRETS, ENVIRONMENT="development")
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    for name in ("setup", "app", "scheduler"):
        assert services[name]["environment"]["ENVIRONMENT"] == "production"
    assert services["setup"]["command"] == ["python", "-m", "procurement", "user", "ensure-admin"]


def test_compose_file_has_no_default_for_any_secret() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        assert f"${{{name}:-" not in text and f"${{{name}-" not in text
        assert f"${{{name}:?" in text


@pytest.mark.parametrize(
    "path", ["data/.cookie_key", "data/demo-logins.txt", "data/procurement.db", ".env"]
)
def test_secrets_and_local_data_stay_out_of_the_image(path: str) -> None:
    """.dockerignore keeps the development cookie key, printed demo logins and .env out of
    `COPY . .` (the last matching line wins, as Docker reads it)."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            excluded = not negate
    assert excluded


@needs_compose
def test_compose_refuses_to_start_without_database_passwords() -> None:
    r = _config()
    assert r.returncode != 0 and "MYSQL_PASSWORD" in r.stderr


def test_compose_has_app_scheduler_and_mysql() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for service in ("  app:", "  scheduler:", "  db:", "procurement.scheduler", "mysql:8"):
        assert service in text


@needs_compose
def test_the_proxy_sends_buyers_to_every_app_replica() -> None:
    import yaml

    r = _config("--no-interpolate", **SECRETS)
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    # the app replicas: the image's own command (Streamlit), behind the proxy
    replicas = [
        name
        for name, svc in services.items()
        if "build" in svc and "command" not in svc and "profiles" not in svc
    ]
    assert len(replicas) >= 2
    proxy = services["proxy"]
    servers = proxy["environment"]["APP_SERVERS"]
    listed = sorted(s.strip() for s in servers.split(";") if s.strip())
    assert listed == sorted(f"server {n}:8501" for n in replicas)
    assert proxy["ports"] and all("8501" in str(p) for p in proxy["ports"])
    for name in replicas:  # only the proxy is published; the replicas share one cookie secret
        assert "ports" not in services[name]
        env = services[name]["environment"]
        assert (
            env["STREAMLIT_SERVER_COOKIE_SECRET"]
            == services[replicas[0]]["environment"]["STREAMLIT_SERVER_COOKIE_SECRET"]
        )


def test_the_proxy_configuration_is_valid_nginx(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmark_load import nginx_conf, nginx_path

    nginx = nginx_path() or require_tool("nginx", "nginx")

    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf("127.0.0.1:8599", ["127.0.0.1:8600", "127.0.0.1:8601"], tmp_path))
    r = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    text = conf.read_text()
    # a browser stays with the replica its first request got (its session, uploads and
    # downloads live there), and websockets pass through
    assert "hash $replica consistent" in text and "procurement_replica=$replica" in text
    assert "server 127.0.0.1:8600;" in text and "server 127.0.0.1:8601;" in text
    assert "proxy_set_header Upgrade $http_upgrade" in text
