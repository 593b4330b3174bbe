"""Stores: the storage port and its SQLite and PostgreSQL adapters."""

from __future__ import annotations

from tripwright.engine.store.base import Store
from tripwright.engine.store.migrate import SCHEMA_REVISION, upgrade
from tripwright.engine.store.urls import StoreURL, parse_store_url

__all__ = ["SCHEMA_REVISION", "Store", "StoreURL", "create_store", "parse_store_url", "upgrade"]


def create_store(url: str) -> Store:
    """A store for ``url`` (``sqlite:///file.db`` or ``postgresql://…``), not yet opened."""
    parsed = parse_store_url(url)
    if parsed.scheme == "sqlite":
        from tripwright.engine.store.sqlite import SQLiteStore

        assert parsed.path is not None
        return SQLiteStore(parsed.path)
    from tripwright.engine.store.postgres import PostgresStore

    return PostgresStore(parsed.dsn)
