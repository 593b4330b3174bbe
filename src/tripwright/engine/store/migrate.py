"""Schema migrations (Alembic), one history for every store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tripwright.engine.store.urls import StoreURL, parse_store_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["SCHEMA_REVISION", "alembic_config", "upgrade"]

#: The revision this version of Tripwright needs; stores refuse older schemas.
SCHEMA_REVISION = "0002"

_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | StoreURL) -> Config:
    """An Alembic configuration pointing at ``url``."""
    from alembic.config import Config  # imported on use: workers need no Alembic

    parsed = url if isinstance(url, StoreURL) else parse_store_url(url)
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", parsed.sqlalchemy_url.replace("%", "%%"))
    return config


def upgrade(url: str | StoreURL, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (blocking; run it in a thread from async code)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
