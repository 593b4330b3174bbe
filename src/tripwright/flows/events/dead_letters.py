"""The dead-letter store as a Python API (``tripwright dlq`` uses it too).

Every event a consumer group gives up on is here, whatever the transport: handler
failures after the last attempt, unknown schema versions, data that does not validate,
and messages that were not valid envelopes at all (with their raw body). ::

    letters = DeadLetters(store)
    for letter in await letters.list():
        print(letter.id, letter.group, letter.reason)
    await letters.redrive(letter.id)      # once the handler is fixed
    await letters.drop(other.id)          # give up for good

A redrive queues the original event again, same id, in its mailbox: the inbox row the
failed attempt left is made pending again (so the inbox dedupe cannot swallow it, and the
event still applies exactly once), and the dead letter is removed in the same
transaction. If the event fails again, it comes back as a new dead letter.
"""

from __future__ import annotations

from tripwright.engine import codec
from tripwright.engine.clock import Clock, RealClock
from tripwright.engine.records import DeadLetterRecord, InboxDelivery
from tripwright.engine.store.base import Store
from tripwright.flows.events.group import HANDLE, mailbox_id

__all__ = ["DeadLetters"]


class DeadLetters:
    """List, redrive and drop dead letters of a store."""

    def __init__(self, store: Store, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or RealClock()

    async def list(self, *, group: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Dead letters, oldest first (optionally of one group)."""
        return await self.store.list_dead_letters(group=group, limit=limit)

    async def get(self, letter_id: int) -> DeadLetterRecord:
        """One dead letter (:class:`DeadLetterNotFoundError` if there is none)."""
        return await self.store.get_dead_letter(letter_id)

    async def redrive(self, letter_id: int) -> DeadLetterRecord:
        """Queue the dead letter's event again (same id) and remove the letter."""
        letter = await self.store.get_dead_letter(letter_id)
        return await self.store.redrive_dead_letter(letter_id, _delivery(letter), self.clock.now())

    async def drop(self, letter_id: int) -> DeadLetterRecord:
        """Delete a dead letter; its event is not handled."""
        return await self.store.drop_dead_letter(letter_id)


def _delivery(letter: DeadLetterRecord) -> InboxDelivery | None:
    """The mailbox delivery of a letter's envelope, for an event its mailbox never held
    (or whose inbox row was pruned); None without a valid envelope."""
    if letter.envelope is None or letter.group == "outbox":
        return None
    subject = letter.envelope.get("subject") or f"event:{letter.event_id}"
    return InboxDelivery(
        run_id=mailbox_id(letter.group, subject),
        flow_name=f"events.{letter.group}",
        flow_version="1",
        definition_hash="",
        then=HANDLE,
        correlation_id=str(letter.envelope.get("correlationid") or subject)[: codec.MAX_NAME],
        name=str(letter.envelope.get("type") or letter.type or "event"),
        payload=codec.dumps({"topic": letter.topic, "envelope": letter.envelope}),
        dedupe_key=letter.event_id[: codec.MAX_NAME],
    )
