"""Transport selection by URL (``--broker``): the store by default, or a broker."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from tripwright.bus.base import Transport
from tripwright.errors import ConfigurationError

__all__ = ["DEFAULT_BROKER", "broker_scheme", "create_transport"]

#: The default: no broker, events travel through the store (outbox -> inbox directly).
DEFAULT_BROKER = "store://"


def _memory(url: str) -> Transport:
    from tripwright.bus.memory import MemoryTransport

    return MemoryTransport()


def _rabbitmq(url: str) -> Transport:
    from tripwright.bus.rabbitmq import RabbitMQTransport

    return RabbitMQTransport(url)


def _nats(url: str) -> Transport:
    from tripwright.bus.nats import NatsTransport

    return NatsTransport(url)


#: Adapters by URL scheme; each factory takes the full URL (options in its query string).
_FACTORIES: dict[str, Callable[[str], Transport]] = {
    "memory": _memory,
    "amqp": _rabbitmq,
    "amqps": _rabbitmq,
    "nats": _nats,
    "tls": _nats,
}


def broker_scheme(url: str | None) -> str:
    """The scheme of a broker URL (``store`` for the default); ConfigurationError if bad."""
    if url is None or url == "" or url == DEFAULT_BROKER:
        return "store"
    if "://" not in url:
        raise ConfigurationError(
            f"bad broker URL {url!r}: expected store://, memory://, amqp://… or nats://…"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _FACTORIES and scheme != "store":
        raise ConfigurationError(
            f"unsupported broker URL scheme {scheme!r} in {url!r}: "
            "use store://, memory://, amqp:// or nats://"
        )
    return scheme


def create_transport(url: str | None) -> Transport | None:
    """The transport for ``url``, not yet connected; None for the store-backed default.

    ``store://`` (or nothing): events go from the outbox straight into the inboxes, in
    the store. ``memory://``: the in-process :class:`MemoryTransport`. ``amqp://`` and
    ``nats://``: the RabbitMQ and NATS JetStream adapters.
    """
    scheme = broker_scheme(url)
    if scheme == "store":
        return None
    assert url is not None
    return _FACTORIES[scheme](url)
