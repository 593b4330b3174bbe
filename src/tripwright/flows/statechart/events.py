"""Events as the interpreter sees them, and SCXML event-descriptor matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = ["Event", "EventType", "matches"]

EventType: TypeAlias = Literal["platform", "internal", "external"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its ``name`` (dotted tokens, e.g. ``payment.failed``) and JSON ``data``.

    ``type`` is ``external`` for events sent by a host or another session, ``internal``
    for raised ones and ``platform`` for those the interpreter generates (``done.*``,
    ``error.*``). ``sendid`` is set for events produced by a send with an id (and for
    errors caused by one); ``origin``/``origintype`` say where to reply; ``invokeid`` is
    set on events coming from an invoked child. In expressions it is ``_event``.
    """

    name: str
    data: Any = None
    type: EventType = "external"
    sendid: str | None = None
    origin: str | None = None
    origintype: str | None = None
    invokeid: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (fields that are ``None`` left out)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        for key in ("data", "sendid", "origin", "origintype", "invokeid"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Event:
        """The event written by :meth:`to_json`."""
        return cls(
            name=value["name"],
            data=value.get("data"),
            type=value.get("type", "external"),
            sendid=value.get("sendid"),
            origin=value.get("origin"),
            origintype=value.get("origintype"),
            invokeid=value.get("invokeid"),
        )


def _descriptor_matches(descriptor: str, name: str) -> bool:
    if descriptor == "*":
        return True
    if descriptor.endswith(".*"):
        descriptor = descriptor[:-2]
    elif descriptor.endswith("."):
        descriptor = descriptor[:-1]
    return name == descriptor or name.startswith(descriptor + ".")


def matches(descriptors: tuple[str, ...], name: str) -> bool:
    """Whether an event named ``name`` matches any of ``descriptors``.

    A descriptor matches the event names whose dot-separated tokens start with its own
    tokens (``error`` matches ``error.execution`` but not ``errors``); ``*`` matches every
    event; a trailing ``.*`` or ``.`` is ignored, as the recommendation allows.
    """
    return any(_descriptor_matches(d, name) for d in descriptors)
