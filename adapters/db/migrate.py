"""Run Alembic programmatically (`billing migrate`, the test harness, the dev launcher)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade_head(settings: Settings) -> None:
    command.upgrade(alembic_config(settings.require_database_url()), "head")
    print("migrations: database is at head")  # noqa: T201 - CLI progress output


def downgrade_base(database_url: str) -> None:
    command.downgrade(alembic_config(database_url), "base")
