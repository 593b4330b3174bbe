"""Broker URL options shared by the adapters: ``?partitions=8&prefix=tripwright&...``.

Tripwright's own options travel in the broker URL's query string and are taken out
before the URL reaches the driver, so that one string configures a worker::

    amqp://guest:guest@127.0.0.1:5672/?partitions=16&prefix=shop
    nats://127.0.0.1:4222?partitions=16&max_deliver=10
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, fields
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tripwright.errors import ConfigurationError

__all__ = ["BrokerOptions", "partition_of", "redact", "split_options"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """How a broker adapter lays out queues, streams and consumers."""

    #: Partition queues (RabbitMQ) or partition subjects (NATS) per topic and group; each
    #: subject hashes to one, which keeps its events in order.
    partitions: int = 8
    #: Prefix of every exchange, queue, stream and consumer name (one per deployment).
    prefix: str = "tripwright"
    #: Deliveries of one message to consumers that died before the broker dead-letters it.
    max_deliver: int = 20
    #: Seconds before an unacknowledged message of a silent consumer is redelivered (NATS).
    ack_wait: float = 30.0
    #: Seconds the broker keeps published message ids to drop republished ones (NATS).
    duplicate_window: float = 120.0
    #: Seconds to wait for the broker when connecting.
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= 1024:
            raise ConfigurationError(f"partitions must be 1..1024, not {self.partitions}")
        if not _NAME.match(self.prefix):
            raise ConfigurationError(
                f"prefix {self.prefix!r}: 1-64 letters, digits, '_' or '-' expected"
            )
        if self.max_deliver < 1:
            raise ConfigurationError(f"max_deliver must be >= 1, not {self.max_deliver}")
        for name in ("ack_wait", "duplicate_window", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be > 0, not {getattr(self, name)}")


def split_options(url: str) -> tuple[str, BrokerOptions]:
    """The driver's URL (Tripwright's options removed) and the options it named."""
    parts = urlsplit(url)
    known = {f.name: f.type for f in fields(BrokerOptions)}
    ours: dict[str, int | float | str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in known:
            rest.append((key, value))
            continue
        kind = known[key]
        try:
            ours[key] = int(value) if kind == "int" else float(value) if kind == "float" else value
        except ValueError:
            raise ConfigurationError(f"broker URL option {key}={value!r} is not a {kind}") from None
    driver_url = urlunsplit(parts._replace(query=urlencode(rest)))
    return driver_url, BrokerOptions(**ours)  # type: ignore[arg-type]


def partition_of(key: str, partitions: int) -> int:
    """The partition of an ordering key: a stable hash (CRC-32), the same in every process."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
