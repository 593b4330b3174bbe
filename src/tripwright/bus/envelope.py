"""The CloudEvents 1.0 envelope every event travels in, validated strictly.

Structured content mode, JSON only: a message's body is the whole envelope as one JSON
object. Tripwright adds two extension attributes: ``traceparent`` (W3C trace context) and
``correlationid`` (the business correlation, a trip id say). The event's schema version
travels in ``dataschema`` as ``urn:tripwright:schema:<type>:v<version>``::

    envelope = CloudEvent.create(
        type="trip.confirmed", source="/trips", subject="T-1", data={"total": "120.00"},
        version=2,
    )
    body = envelope.to_bytes()
    same = CloudEvent.from_bytes(body)      # EnvelopeError if the body is not valid
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic import model_validator as _model_validator

from tripwright.engine import codec
from tripwright.errors import EnvelopeError

__all__ = ["CONTENT_TYPE", "CloudEvent", "schema_uri", "schema_version"]

CONTENT_TYPE = "application/json"
_SCHEMA = re.compile(r"^urn:tripwright:schema:(?P<type>[^:\s]+):v(?P<version>[1-9][0-9]{0,8})$")
_TRACEPARENT = re.compile(
    r"^(?P<v>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}$"
)
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
#: RFC 3339 times that ``datetime.fromisoformat`` reads exactly as pydantic does.
_PLAIN_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


def schema_uri(type_name: str, version: int) -> str:
    """The ``dataschema`` value naming version ``version`` of event type ``type_name``."""
    return f"urn:tripwright:schema:{type_name}:v{version}"


@functools.lru_cache(maxsize=1024)  # a handful of schemas, read for every event
def schema_version(dataschema: str | None, type_name: str) -> int | None:
    """The version named by ``dataschema`` for ``type_name``, or None if it names none."""
    if dataschema is None:
        return None
    found = _SCHEMA.match(dataschema)
    if found is None or found["type"] != type_name:
        return None
    return int(found["version"])


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope (JSON, structured mode) with Tripwright's extensions.

    Immutable. Build one with :meth:`create`; read one from a transport with
    :meth:`from_bytes`, which raises :class:`EnvelopeError` with the reason when the body
    is not a valid envelope (the caller dead-letters it with its raw body).
    """

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=300)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=codec.MAX_NAME)
    subject: str | None = Field(default=None, min_length=1, max_length=codec.MAX_NAME)
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(default=None, max_length=500)
    data: Any = None
    traceparent: str | None = None
    correlationid: str | None = Field(default=None, min_length=1, max_length=codec.MAX_NAME)

    #: Attributes every envelope carries (for transports mapping them onto headers).
    REQUIRED: ClassVar[tuple[str, ...]] = ("specversion", "id", "source", "type", "time")

    @field_validator("traceparent")
    @classmethod
    def _check_traceparent(cls, value: str | None) -> str | None:
        if value is None:
            return None
        found = _TRACEPARENT.match(value)
        if (
            found is None
            or found["v"] == "ff"
            or set(found["trace"]) == {"0"}
            or set(found["span"]) == {"0"}
        ):
            raise ValueError(f"traceparent {value!r} is not a W3C trace context")
        return value

    @field_validator("id", "source", "type")
    @classmethod
    def _no_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @_model_validator(mode="after")
    def _check_extensions(self) -> CloudEvent:
        for name, value in (self.model_extra or {}).items():
            if not _EXTENSION_NAME.match(name):
                raise ValueError(
                    f"extension attribute {name!r}: names are 1-20 lowercase letters or digits"
                )
            if not isinstance(value, str | int | bool) and value is not None:
                raise ValueError(f"extension attribute {name!r} must be a string, int or bool")
        return self

    # -- building -----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        type: str,
        source: str,
        data: Any = None,
        subject: str | None = None,
        version: int | None = None,
        id: str | None = None,
        time: datetime | None = None,
        traceparent: str | None = None,
        correlationid: str | None = None,
        **extensions: str | int | bool,
    ) -> CloudEvent:
        """A new envelope; ``version`` sets ``dataschema``, ``id`` defaults to a UUID."""
        codec.dumps(data, what="event data")
        try:
            return cls.model_validate(
                {
                    "id": id or uuid.uuid4().hex,
                    "source": source,
                    "type": type,
                    "subject": subject,
                    "time": time or datetime.now(UTC),
                    "dataschema": None if version is None else schema_uri(type, version),
                    "data": data,
                    "traceparent": traceparent,
                    "correlationid": correlationid,
                    **extensions,
                },
                strict=False,
            )
        except ValidationError as exc:
            raise EnvelopeError(f"invalid event envelope: {_reason(exc)}") from None

    # -- reading ------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, body: bytes | str) -> CloudEvent:
        """Parse and validate a structured-mode JSON envelope; :class:`EnvelopeError` if not."""
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise EnvelopeError(f"not a valid CloudEvents 1.0 envelope: {_reason(exc)}") from None

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> CloudEvent:
        """Validate an already decoded envelope (a JSON object)."""
        return cls.from_bytes(codec.dumps(value, what="event envelope"))

    @classmethod
    def from_decoded(cls, value: dict[str, Any]) -> CloudEvent:
        """Validate an envelope decoded from JSON text (a stored copy, say): the same
        rules and results as :meth:`from_dict`, without encoding it again.

        ``value`` must be decoded from text that :func:`codec.dumps` wrote, as every
        store's is (valid text without NUL, JSON data). Validating such a value strictly
        differs from validating its text only in how ``time`` is read, so a plain RFC 3339
        time is parsed here and the rest validated as it is; anything else takes the
        :meth:`from_dict` path, which also gives the reasons for a refusal.
        """
        time = value.get("time")
        if isinstance(time, str) and _PLAIN_TIME.match(time):
            try:
                return cls.model_validate(
                    {**value, "time": datetime.fromisoformat(time)}, strict=True
                )
            except ValueError:  # pydantic's ValidationError too
                pass
        return cls.from_dict(value)

    @property
    def version(self) -> int | None:
        """The schema version named by ``dataschema``, if it names one for this type."""
        return schema_version(self.dataschema, self.type)

    @property
    def extensions(self) -> dict[str, str | int | bool]:
        """Extension attributes other than ``traceparent`` and ``correlationid``."""
        return dict(self.model_extra or {})

    def to_dict(self) -> dict[str, Any]:
        """The envelope as a JSON object (absent optional attributes left out)."""
        value = self.model_dump(mode="json", exclude_none=True)
        if self.data is None:
            value.pop("data", None)
        return value

    def to_bytes(self) -> bytes:
        """The structured-mode body: the envelope as compact UTF-8 JSON."""
        return codec.dumps(self.to_dict(), what="event envelope").encode()

    def headers(self) -> dict[str, str]:
        """The attributes as ``ce-`` headers (binary-mode names), for brokers that show or
        route on headers. The body stays authoritative."""
        out = {}
        for name, value in self.to_dict().items():
            if name != "data":
                out[f"ce-{name}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "envelope"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
