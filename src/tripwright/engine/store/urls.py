"""Store URLs: ``sqlite:///path.db`` (the default) and ``postgresql://user@host/db``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tripwright.errors import ConfigurationError

__all__ = ["StoreURL", "parse_store_url"]


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL."""

    scheme: str  # "sqlite" or "postgresql"
    url: str
    path: str | None = None

    @property
    def sqlalchemy_url(self) -> str:
        if self.scheme == "sqlite":
            return f"sqlite:///{self.path}"
        return "postgresql+asyncpg://" + self.url.split("://", 1)[1]

    @property
    def dsn(self) -> str:
        """The URL a driver takes (for PostgreSQL, a libpq-style URL)."""
        return self.url


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a store URL; raise :class:`ConfigurationError` on a bad one."""
    if not url or "://" not in url:
        raise ConfigurationError(
            f"bad store URL {url!r}: expected sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        path = url.split("://", 1)[1]
        if path.startswith("/"):
            path = path[1:]
        if not path:
            raise ConfigurationError(f"bad SQLite URL {url!r}: no file path")
        if path != ":memory:":
            path = str(Path(path).expanduser())
        return StoreURL("sqlite", url, path)
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        rest = url.split("://", 1)[1]
        try:
            urlsplit(url).port  # noqa: B018 - parsing is the check
        except ValueError as exc:
            raise ConfigurationError(f"bad PostgreSQL URL {url!r}: {exc}") from None
        return StoreURL("postgresql", f"postgresql://{rest}")
    raise ConfigurationError(
        f"unsupported store URL scheme {scheme!r} in {url!r}: use sqlite:// or postgresql://"
    )
