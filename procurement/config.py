"""One settings object, read from environment variables (and an optional .env file)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIN_COOKIE_KEY_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: str = Field("development", description="development | production")
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'data' / 'procurement.db'}"
    model_dir: Path = PROJECT_ROOT / "models"
    horizon: int = Field(14, ge=1, le=90)
    default_tenant: str = "demo"
    # Last day of the synthetic demo data; unset means yesterday. Tests pin it so that nothing
    # they check depends on the day they run.
    demo_end_date: dt.date | None = None
    # How many model versions per company are kept on disk; older ones are pruned after a publish.
    keep_model_versions: int = Field(5, ge=1)
    # Training knobs; defaults are sized for 10k products x 2 years on a 2-core machine.
    lgbm_n_estimators: int = Field(200, ge=10)
    lgbm_learning_rate: float = Field(0.05, gt=0)
    lgbm_num_leaves: int = Field(31, ge=4)
    train_max_days: int = Field(
        730, ge=60, description="days of daily history used for training, per product (weekly: all)"
    )
    conformal_windows: int = Field(8, ge=2)
    random_seed: int = 42
    # Train on a Dask cluster (``tcp://host:8786``) instead of this machine; see README, "Past
    # one machine: Dask". Unset: one machine.
    dask_scheduler_address: str | None = None
    # Recommendation: how sure the saving must be before we advise waiting.
    min_confidence: float = Field(0.7, ge=0.5, lt=1.0)
    min_saving_pct: float = Field(0.5, ge=0.0, description="percent; smaller savings say buy now")
    retrain_cron: str = "0 3 * * 0"
    scheduler_poll_seconds: float = Field(2.0, gt=0)
    # A trainer renews its lease every third of this; a crashed one blocks others at most this long.
    lock_ttl_seconds: float = Field(120.0, gt=0)
    # A new model is published only if its backtest error ratio (MASE / naive MASE) is not worse
    # than the current model's by more than this fraction; otherwise it is kept, not promoted.
    promote_margin: float = Field(0.10, ge=0)
    refresh_hour_utc: int = Field(5, ge=0, le=23)
    # Login
    cookie_key: SecretStr | None = None
    admin_password: SecretStr | None = None
    cookie_expiry_days: float = 1.0
    max_failed_logins: int = Field(5, ge=1)
    lockout_minutes: int = Field(15, ge=1)
    # Imports and data sources (see README, "Data in")
    max_upload_mb: float = Field(50.0, gt=0, description="largest file the Data page reads")
    max_xlsx_unpacked_mb: float = Field(
        200.0, gt=0, description="an .xlsx unpacking to more is refused"
    )
    outlier_factor: float = Field(5.0, gt=1, description="price moves beyond this need confirming")
    fetch_allow_private_networks: bool = Field(
        False, description="let sources reach loopback/private/link-local addresses (tests, labs)"
    )
    fetch_max_bytes: int = Field(5_000_000, gt=0, description="largest response of a source")
    fetch_deadline_seconds: float = Field(120.0, gt=0, description="whole fetch of one source")
    fetch_max_pages: int = Field(100, ge=1)
    fetch_concurrency: int = Field(4, ge=1, description="sources fetched at the same time")
    # Purchase orders (see README, "Purchase orders")
    service_level: float = Field(
        0.95, gt=0.5, lt=1.0, description="default share of order cycles without a stock-out"
    )
    order_cycle_days: int = Field(14, ge=1, description="an order covers demand this much longer")
    # Largest order total (in the order's currency) each role may approve; a role not listed has
    # no limit (administrators). Above it an administrator must approve. JSON in the environment.
    approval_limits: dict[str, float] = Field(default_factory=lambda: {"buyer": 10_000.0})
    # Monitoring (see README, "Monitoring")
    metrics_port: int = Field(9464, ge=0, le=65535, description="the sidecar's /metrics; 0: off")
    metrics_addr: str = "0.0.0.0"
    monitor_interval_minutes: float = Field(
        60.0, gt=0, description="drift checks and advice counts"
    )
    drift_recent_days: int = Field(28, ge=7, description="latest weeks compared with training")
    # PSI above this on any monitored feature queues a retrain (once per model version); 0.25 is
    # the usual "significant", a little higher keeps small catalogs from retraining on noise
    drift_psi_threshold: float = Field(0.5, gt=0)
    # live error (MASE of stored forecasts on arrived prices) over the backtest's, and how many
    # arrived prices it needs before it may queue a retrain
    concept_drift_threshold: float = Field(1.5, gt=0)
    concept_drift_min_actuals: int = Field(20, ge=1)
    log_format: str = Field("text", description="text | json (one JSON object per line)")
    # Assistant (see README, "Assistant"): the offline engine needs no network; "llm" calls an
    # OpenAI-compatible chat endpoint with tool calling (e.g. a local Ollama at .../v1)
    assistant_engine: Literal["offline", "llm"] = "offline"
    assistant_url: str = "http://127.0.0.1:11434/v1"
    assistant_model: str = "llama3.1"
    assistant_api_key: SecretStr | None = None
    assistant_timeout: float = Field(30.0, gt=0, description="seconds per request to the LLM")
    assistant_max_rounds: int = Field(5, ge=1, description="tool-call rounds per question")

    @field_validator("database_url")
    @classmethod
    def _sqlite_dir_exists(cls, v: str) -> str:
        if v.startswith("sqlite:///") and ":memory:" not in v:
            Path(v.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return v

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, v: str) -> str:
        # a typo ("prod") must not fall back to development, where demo users may log in
        if v not in ("development", "production"):
            raise ValueError("ENVIRONMENT must be development or production")
        return v

    @model_validator(mode="after")
    def _strong_cookie_key(self) -> Settings:
        # the key signs login cookies: a short one can be guessed and any cookie forged
        key = self.cookie_key.get_secret_value() if self.cookie_key else ""
        if self.environment == "production" and 0 < len(key) < MIN_COOKIE_KEY_LENGTH:
            raise ValueError(
                f"COOKIE_KEY needs at least {MIN_COOKIE_KEY_LENGTH} characters in production "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
