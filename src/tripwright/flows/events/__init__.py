"""The event-driven model: typed events choreographed between consumer groups.

See ``docs/events.md``. Handlers run durably on the engine (one mailbox run per group and
subject); events travel through the outbox, a transport and the groups' inboxes.
"""

from __future__ import annotations

from tripwright.flows.events.bus import EventBus
from tripwright.flows.events.choreography import Choreography, Finding
from tripwright.flows.events.dead_letters import DeadLetters
from tripwright.flows.events.group import ConsumerGroup, HandlerContext, HandlerSpec, mailbox_id

__all__ = [
    "Choreography",
    "ConsumerGroup",
    "DeadLetters",
    "EventBus",
    "Finding",
    "HandlerContext",
    "HandlerSpec",
    "mailbox_id",
]
