"""The one Settings object. Built once in each composition root (worker, API, CLI) and passed down.

Workflows never see it: anything a workflow needs (prices, schedules, grace lengths, the demo
time scale) is copied into the workflow input when the workflow starts.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from billing.dunning import DunningPolicy, FinalAction, InvalidDunningPolicy

ROOT = Path(__file__).resolve().parent
DEFAULT_API_KEY_PEPPER = "dev-only-pepper-change-me"  # noqa: S105 - a known dev default, refused in production

APP_ROLE = "billing_app"
WORKER_ROLE = "billing_worker"
# NOLOGIN, NOBYPASSRLS, granted to the worker: its tenant transactions run as this role.
WORKER_SCOPED_ROLE = "billing_worker_scoped"


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PRODUCTION = "production"


class ConfigurationError(Exception):
    """Raised at start-up when the settings cannot work; the message names the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    environment: Environment = Environment.DEV

    # PostgreSQL. `database_url` is the owner/migration login; the API and the worker use their
    # own roles (RLS-enforced `billing_app`, BYPASSRLS `billing_worker`). When their URLs are not
    # given they are derived from `database_url` by swapping the user (trust or peer auth setups).
    database_url: str | None = None
    app_database_url: str | None = None
    worker_database_url: str | None = None
    db_pool_size: int = 10

    # Temporal
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = "billing"
    stripe_task_queue: str = "billing-stripe"
    # Server-enforced cap on Stripe activities per second, for every worker together: it keeps
    # the billing day's backlog in Temporal, where priority and fairness order it (ADR 0014).
    stripe_activities_per_second: float = Field(default=20.0, gt=0)
    # Workflows a worker process keeps in memory between their tasks (ADR 0025). One evicted
    # is rebuilt (its module re-run in the sandbox, its run replayed) at its next task, which
    # on a billing day is most of the worker's CPU; each kept one costs memory (see
    # docs/benchmarks.md). Size it to the subscriptions one worker renews at once.
    worker_max_cached_workflows: int = Field(default=1000, gt=0)
    # Cap on Stripe HTTP requests per second, per process (ADR 0025): what Stripe's rate limit
    # counts (test mode allows 25/s, live 100/s), and one activity can make several requests.
    # With several worker processes, give each its share of the account's limit.
    stripe_requests_per_second: float = Field(default=20.0, gt=0)
    # How long the API waits for a workflow Update before answering 503.
    update_timeout_seconds: float = Field(default=10.0, gt=0)

    # Stripe
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    stripe_webhook_tolerance_seconds: int = 300
    # Larger bodies are refused with 413 before they are read in full (Stripe events are small).
    stripe_webhook_max_body_bytes: int = Field(default=256 * 1024, gt=0)
    # How long the endpoint waits for Temporal before acknowledging anyway; the row is stored and
    # the re-dispatcher starts the workflow later.
    webhook_dispatch_timeout_seconds: float = Field(default=2.0, gt=0)
    # Processing attempts of one event (exponential backoff between them), then dead-letter.
    # Snapshotted into each `stripe_event` workflow when it starts.
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_initial_backoff_seconds: float = Field(default=2.0, gt=0)
    webhook_max_backoff_seconds: float = Field(default=600.0, gt=0)
    # Re-dispatcher (worker process): starts workflows for inbox rows and notification deliveries
    # left without one (Temporal was down, the process died between commit and start).
    redispatch_interval_seconds: float = Field(default=5.0, gt=0)
    redispatch_batch_size: int = Field(default=100, ge=1)
    # Rows younger than this are the endpoint's own to dispatch.
    redispatch_min_age_seconds: float = Field(default=10.0, ge=0)

    # Outbound notifications (Standard Webhooks), snapshotted into each delivery workflow.
    notification_max_attempts: int = Field(default=8, ge=1)
    notification_initial_backoff_seconds: float = Field(default=5.0, gt=0)
    notification_max_backoff_seconds: float = Field(default=3600.0, gt=0)
    notification_timeout_seconds: float = Field(default=10.0, gt=0)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # Logs: "text" (human-readable, the default) or "json" (one object per line, with the
    # request id, tenant, workflow id and run id where known).
    log_format: Literal["text", "json"] = "text"

    # Prometheus /metrics (ADR 0010), each process on its own port; None: not served.
    # `billing dev` serves them on 9101 (API) and 9102 (worker), and the Temporal SDK's own
    # metrics (served by the SDK's runtime) on 9103 (API client) and 9104 (worker), unless set.
    metrics_host: str = "127.0.0.1"
    api_metrics_port: int | None = None
    worker_metrics_port: int | None = None
    api_sdk_metrics_port: int | None = None
    worker_sdk_metrics_port: int | None = None
    # How often the worker refreshes the gauges it reads from Postgres (inbox lag, grace
    # windows, suspended tenants, subscriptions by plan and status).
    metrics_refresh_seconds: float = Field(default=15.0, gt=0)
    # The audit log keeps rows this many months; a daily job purges older ones (ADR 0017).
    audit_retention_months: int = Field(default=84, ge=1)
    # An erased tenant's books (invoices, amounts, numbers, audit rows) are kept this many months
    # after the erasure, then a daily job purges them with the tenant (ADR 0018).
    books_retention_months: int = Field(default=120, ge=1)
    # What an open dispute does to its tenant: `none` (record and notify) or `suspend` (no
    # access while a dispute is open; ADR 0021).
    dispute_policy: Literal["none", "suspend"] = "none"
    # Tenant data exports (ADR 0016): where the files are written (the API and the worker must
    # both see it; default `{data_dir}/exports`), and how long a finished one stays available.
    export_dir: Path | None = None
    export_keep_hours: float = Field(default=72.0, gt=0)
    # The seller block of the engine's invoice PDFs (ADR 0015); `seller_address` lines are
    # separated by "|".
    seller_name: str = "Your company"
    seller_address: str = ""
    seller_tax_id: str | None = None
    seller_email: str | None = None
    # Per-tenant API rate limits (ADR 0012): requests per fixed window of
    # `rate_limit_window_seconds`, per route class, shared by every API replica through
    # Postgres; operators override them per tenant. The webhook endpoint's limit is per source
    # address.
    rate_limits_enabled: bool = True
    rate_limit_window_seconds: int = Field(default=60, ge=1, le=3600)
    rate_limit_ingest: int = Field(default=1_200, ge=1)
    rate_limit_check: int = Field(default=60_000, ge=1)
    rate_limit_command: int = Field(default=600, ge=1)
    rate_limit_read: int = Field(default=6_000, ge=1)
    rate_limit_webhook_per_address: int = Field(default=120_000, ge=1)
    # OpenTelemetry traces (ADR 0011): the OTLP/HTTP traces endpoint, e.g.
    # http://127.0.0.1:4318/v1/traces; None (the default): tracing off.
    otlp_endpoint: str | None = None
    api_key_pepper: SecretStr = SecretStr(DEFAULT_API_KEY_PEPPER)

    # Embedded stack (`billing dev`)
    data_dir: Path = ROOT / ".data"
    postgres_port: int = 54329
    temporal_port: int = 7233
    temporal_ui_port: int | None = None  # default: temporal_port + 1000
    localstripe_port: int = 8420
    # Demo clock: 1.0 is real time; 720 makes a 30-day month pass in an hour.
    time_scale: float = Field(default=1.0, gt=0)

    catalog_path: Path = ROOT / "catalog" / "plans.toml"

    # Dunning policy (ADR 0005): snapshotted into each subscription's input at sign-up, so a
    # change here never moves the deadlines of dunning already in flight.
    dunning_retry_after_days: tuple[int, ...] = (1, 3, 5, 7)
    dunning_final_action: FinalAction = "mark_uncollectible"
    dunning_cancel_after_days: int = 7

    # Usage metering
    usage_batch_max_size: int = Field(default=1000, ge=1, le=10_000)
    # Grace window after a soft cap is crossed; snapshotted into each grace workflow at start.
    soft_cap_grace_hours: float = Field(default=24.0, gt=0)
    # Access continues this long after a renewal's payment fails; snapshotted into each payment
    # grace window at start (ADR 0006).
    payment_grace_days: float = Field(default=7.0, gt=0)
    # The quota check gives up on the database after this long and fails closed (ADR 0003).
    quota_check_timeout_seconds: float = Field(default=2.0, gt=0)
    # Quota rows are cached in-process, dropped on every change (Postgres notifications; ADR 0003,
    # "The quota cache") and in any case after this long. 0 disables the cache: every check reads
    # Postgres.
    quota_cache_seconds: float = Field(default=5.0, ge=0)
    # API keys are cached in-process this long; a revocation on another API process takes effect
    # within this delay (the process that revokes forgets the key at once). 0 disables the cache.
    api_key_cache_seconds: float = Field(default=5.0, ge=0)
    # Reconciliation: how many recent UTC days the scheduled run recomputes, and how often.
    reconcile_days: int = Field(default=3, ge=1)
    reconcile_every_minutes: int = Field(default=60, ge=1)
    # The lost-webhook sweeper (ADR 0013): every `stripe_sweep_every_minutes`, re-read from
    # Stripe the invoices open for longer than `stripe_sweep_min_age_minutes`, at most
    # `stripe_sweep_batch` per run.
    stripe_sweep_every_minutes: int = Field(default=30, ge=1)
    stripe_sweep_min_age_minutes: float = Field(default=60.0, ge=0)
    stripe_sweep_batch: int = Field(default=500, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _split_secrets(cls, data: object) -> object:
        if isinstance(data, dict):
            raw = data.get("stripe_webhook_secrets")
            if isinstance(raw, str):
                data["stripe_webhook_secrets"] = [s.strip() for s in raw.split(",") if s.strip()]
        return data

    def dunning_policy(self) -> DunningPolicy:
        return DunningPolicy(
            retry_after_days=tuple(self.dunning_retry_after_days),
            final_action=self.dunning_final_action,
            cancel_after_days=self.dunning_cancel_after_days,
        )

    @model_validator(mode="after")
    def _check_dunning_policy(self) -> Settings:
        # Refuse a bad policy at start-up, not when the first subscription is created.
        try:
            self.dunning_policy()
        except InvalidDunningPolicy as error:
            raise ConfigurationError(f"BILLING_DUNNING_*: {error}") from error
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            if self.api_key_pepper.get_secret_value() == DEFAULT_API_KEY_PEPPER:
                raise ConfigurationError(
                    "BILLING_API_KEY_PEPPER must be set to a secret value in production"
                )
            if self.database_url is None:
                raise ConfigurationError("BILLING_DATABASE_URL is required in production")
            if self.temporal_address is None:
                raise ConfigurationError("BILLING_TEMPORAL_ADDRESS is required in production")
            if self.stripe_api_key is None:
                raise ConfigurationError("BILLING_STRIPE_API_KEY is required in production")
        return self

    @property
    def ui_port(self) -> int:
        return self.temporal_ui_port or self.temporal_port + 1000

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigurationError(
                "BILLING_DATABASE_URL is not set (run through `billing dev` for the embedded stack)"
            )
        return self.database_url

    def exports_path(self) -> Path:
        return self.export_dir if self.export_dir is not None else self.data_dir / "exports"

    def role_url(self, role: str) -> str:
        """The URL the given role logs in with: explicit setting, else the owner URL with the user
        swapped (and the password dropped)."""
        explicit = {APP_ROLE: self.app_database_url, WORKER_ROLE: self.worker_database_url}
        if explicit.get(role):
            return explicit[role]  # type: ignore[return-value]
        url = make_url(self.require_database_url()).set(username=role, password=None)
        return url.render_as_string(hide_password=False)

    @property
    def stripe_is_live_api(self) -> bool:
        return self.stripe_api_base is None


def load_settings() -> Settings:
    return Settings()
