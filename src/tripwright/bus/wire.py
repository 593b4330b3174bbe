"""CloudEvents binary content mode on broker messages, shared by the broker adapters.

A broker message carries the event's ``data`` as its body (JSON) and every other
attribute as a ``ce-`` header (``ce-id``, ``ce-type``, ``ce-subject``, ``ce-time``, ...);
the W3C trace context also travels under its own name, ``traceparent``, so that tracing
tools see it. A consumer gets back the structured envelope (one JSON object) in
:attr:`Delivery.body`, which the inbox then validates.

A message that is not in binary mode (no ``ce-specversion`` header) is handed over with
its body untouched: a structured-mode envelope is still valid, anything else is poison
that the consumer dead-letters with its raw body. Header values that a broker cannot
carry (line breaks) make the adapter fall back to structured mode for that message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tripwright.bus.base import OutgoingMessage

__all__ = ["STRUCTURED_TYPE", "WireMessage", "confirm_all", "decode_body", "encode"]

#: The content type of a structured-mode message.
STRUCTURED_TYPE = "application/cloudevents+json"
_PREFIX = "ce-"


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A message as it goes on a broker: body, headers and content type."""

    body: bytes
    headers: dict[str, str]
    content_type: str


def encode(message: OutgoingMessage) -> WireMessage:
    """Binary content mode for ``message`` (structured mode if a header cannot be sent)."""
    envelope = message.envelope
    headers = envelope.headers()
    if any("\r" in v or "\n" in v for v in headers.values()):
        return WireMessage(envelope.to_bytes(), {}, STRUCTURED_TYPE)
    if envelope.traceparent is not None:
        headers["traceparent"] = envelope.traceparent
    data = envelope.data
    body = b"" if data is None else json.dumps(data, separators=(",", ":")).encode()
    return WireMessage(body, headers, envelope.datacontenttype)


def decode_body(body: bytes, headers: Mapping[str, Any]) -> bytes:
    """The structured envelope for a received message (its raw body if not binary mode)."""
    if f"{_PREFIX}specversion" not in headers:
        return body
    envelope: dict[str, Any] = {}
    for name, value in headers.items():
        if name.startswith(_PREFIX) and len(name) > len(_PREFIX):
            envelope[name[len(_PREFIX) :]] = _text(value)
    if body:
        try:
            envelope["data"] = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return body
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def _text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value


async def confirm_all(sends: Iterable[Callable[[], Awaitable[object]]]) -> None:
    """Start each send in order, then wait until the broker confirmed every one of them.

    Sends are pipelined (the next goes out before the previous is confirmed) but leave in
    order. On the first failure the others are cancelled and the error is raised: some
    messages may be on the broker, and the caller sends the whole batch again.
    """
    pending: list[asyncio.Future[object]] = []
    try:
        for send in sends:
            # Tasks start in creation order, and both drivers write a message out before
            # its task first waits (aiormq behind a FIFO channel lock), so order holds.
            pending.append(asyncio.ensure_future(send()))
        await asyncio.gather(*pending)
    except BaseException:
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise
