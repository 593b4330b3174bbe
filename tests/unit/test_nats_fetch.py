"""The NATS subscription's fetch loop: a fetch that times out is asked again at once.

A pull fetch that waits out its timeout with nothing to deliver is the normal idle case,
whichever timeout error the driver raises for it (nats-py's own, or asyncio's): the loop
fetches again without a warning and without backing off, so a message published after a
run of idle fetches is handed over at once. The driver's pull subscription is replaced by
a scripted one; messages are real nats-py messages on a client that records the acks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import nats.errors
import pytest
from nats.aio.msg import Msg

from tripwright.bus import ACK, Delivery, Disposition
from tripwright.bus.lanes import Lanes
from tripwright.bus.nats import NatsTransport, _NatsSubscription


class _Client:
    """What a nats-py message needs of its client to be acknowledged."""

    def __init__(self) -> None:
        self.acks: list[str] = []

    async def publish(self, subject: str, payload: bytes = b"", **_: Any) -> None:
        self.acks.append(subject)


class _PullSubscription:
    """Raises ``timeouts`` one after the other, then returns one message, then idles."""

    def __init__(self, timeouts: Sequence[BaseException], msg: Msg) -> None:
        self._script: list[BaseException | Msg] = [*timeouts, msg]
        self.fetches = 0

    async def fetch(self, batch: int = 1, timeout: float | None = 5) -> list[Msg]:
        self.fetches += 1
        if not self._script:
            await asyncio.sleep(3600)
        step = self._script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return [step]


@pytest.mark.parametrize(
    "timeout",
    [TimeoutError(), nats.errors.TimeoutError()],  # asyncio.TimeoutError is TimeoutError
    ids=["asyncio", "nats"],
)
async def test_idle_fetches_that_time_out_are_retried_at_once_without_a_warning(
    timeout: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    """Eight idle fetches in a row, then a message: it reaches the handler at once (no
    backoff, which would have slept 0.1 + 0.2 + ... + 5 seconds), nothing is logged as
    a failure, and its ack goes to the message's reply subject."""
    client = _Client()
    reply = "$JS.ACK.S.C.1.7.1.1700000000000000000.0"
    msg = Msg(client, subject="P.t.0", reply=reply, data=b"{}", headers={"ce-id": "e1"})  # type: ignore[arg-type]
    handled: list[Delivery] = []

    async def handler(batch: Sequence[Delivery]) -> list[Disposition]:
        handled.extend(batch)
        return [ACK] * len(batch)

    lanes = Lanes(handler, 8)
    subscription = _NatsSubscription(NatsTransport("nats://127.0.0.1:1"), "g", lanes)
    psub = _PullSubscription([timeout] * 8, msg)
    caplog.set_level(logging.WARNING, logger="tripwright.bus")
    try:
        subscription.fetch_from("t.0", "t", psub)  # type: ignore[arg-type]
        async with asyncio.timeout(2):
            while not client.acks:  # noqa: ASYNC110 - polling a recorded side effect
                await asyncio.sleep(0.01)
    finally:
        await subscription.close()
    assert psub.fetches >= 9
    assert [d.message_id for d in handled] == ["S:7"]
    assert handled[0].body == b"{}"
    assert client.acks == [reply]
    assert not [r for r in caplog.records if "fetching from NATS failed" in r.getMessage()]
