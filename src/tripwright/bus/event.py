"""Typed events: pydantic models with a type name, a schema version and a topic.

::

    class TripConfirmed(Event):
        type_name = "trip.confirmed"      # the CloudEvents ``type``
        version = 2                       # travels in ``dataschema``
        topic = "trips"                   # default: the type name's first segment

        trip_id: str
        total: Decimal

An event's fields are its ``data``; the envelope (id, subject, time, trace context) is
added when it is published. Events are immutable and validated strictly on the way in.

Old versions are lifted one step at a time by upcasters, before any handler sees them::

    @TripConfirmed.upcaster(1)            # v1 -> v2
    def _v1(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "total": data.pop("amount")}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, ValidationError

from tripwright.bus.envelope import CloudEvent
from tripwright.engine import codec
from tripwright.errors import DefinitionError, EventSchemaError

__all__ = ["Event", "Upcaster"]

#: Lifts the data of version N to version N + 1.
Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]

_TYPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class Event(BaseModel):
    """Base of typed events. Subclasses set ``type_name`` (and ``version``, ``topic``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The CloudEvents ``type`` of the event; letters, digits, ``.``, ``_``, ``-``.
    type_name: ClassVar[str] = ""
    #: The current schema version (an integer >= 1); upcasters lift older ones to it.
    version: ClassVar[int] = 1
    #: The topic the event is published on (default: the type name's first segment).
    topic: ClassVar[str] = ""
    #: Upcasters by the version they lift from (each class has its own).
    upcasters: ClassVar[dict[int, Upcaster]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.upcasters = {}
        if not cls.type_name:
            return  # an abstract intermediate base
        if not _TYPE_NAME.match(cls.type_name):
            raise DefinitionError(
                f"event type name {cls.type_name!r}: use letters, digits, . _ - (up to 200)"
            )
        if not isinstance(cls.version, int) or isinstance(cls.version, bool) or cls.version < 1:
            raise DefinitionError(f"event {cls.type_name!r}: version must be an integer >= 1")
        if not cls.topic:
            cls.topic = cls.type_name.split(".", 1)[0]
        codec.check_name(cls.topic, "topic")

    @classmethod
    def upcaster(cls, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function lifting data of ``from_version`` to ``from_version + 1``."""
        if not 1 <= from_version < cls.version:
            raise DefinitionError(
                f"{cls.type_name}: an upcaster lifts a version in 1..{cls.version - 1}, "
                f"not {from_version}"
            )
        if from_version in cls.upcasters:
            raise DefinitionError(f"{cls.type_name}: two upcasters from v{from_version}")

        def register(fn: Upcaster) -> Upcaster:
            cls.upcasters[from_version] = fn
            return fn

        return register

    @classmethod
    def upcast(cls, data: Any, version: int) -> Any:
        """Lift ``data`` of ``version`` to the current version, one step at a time.

        :class:`EventSchemaError` for a version newer than the current one, or one with no
        path of upcasters to it.
        """
        if version > cls.version:
            raise EventSchemaError(
                f"{cls.type_name} v{version} is newer than the v{cls.version} this handler knows"
            )
        while version < cls.version:
            step = cls.upcasters.get(version)
            if step is None:
                raise EventSchemaError(
                    f"{cls.type_name} v{version} cannot be read: no upcaster from v{version} "
                    f"to v{version + 1}"
                )
            if not isinstance(data, dict):
                raise EventSchemaError(f"{cls.type_name} v{version} data is not an object")
            try:
                data = step(dict(data))
            except EventSchemaError:
                raise
            except Exception as exc:
                raise EventSchemaError(
                    f"upcasting {cls.type_name} from v{version} failed: {exc}"
                ) from exc
            version += 1
        return data

    def to_data(self) -> Any:
        """The event's fields as JSON-ready data (the envelope's ``data``)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_data(cls, data: Any) -> Self:
        """Validate ``data`` (of the current version) into an event, or
        :class:`EventSchemaError` with the reason."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:5]
            )
            raise EventSchemaError(
                f"data of {cls.type_name} v{cls.version} is invalid: {reasons}"
            ) from None

    def envelope(
        self,
        *,
        source: str,
        subject: str | None = None,
        id: str | None = None,
        traceparent: str | None = None,
        correlationid: str | None = None,
    ) -> CloudEvent:
        """This event in a CloudEvents envelope."""
        if not type(self).type_name:
            raise DefinitionError(f"{type(self).__name__} has no type_name")
        return CloudEvent.create(
            type=self.type_name,
            source=source,
            data=self.to_data(),
            subject=subject,
            version=self.version,
            id=id,
            traceparent=traceparent,
            correlationid=correlationid,
        )
