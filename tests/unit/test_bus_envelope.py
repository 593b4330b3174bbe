"""The CloudEvents envelope and typed events."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

import tripwright.bus
from tripwright.bus import CloudEvent, Event, schema_uri, schema_version
from tripwright.errors import DefinitionError, EnvelopeError, EventSchemaError, TripwrightError

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TripConfirmed(Event):
    type_name = "trip.confirmed"
    version = 2

    trip_id: str
    total: Decimal


def _valid() -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/trips",
        "type": "trip.confirmed",
        "subject": "T-1",
        "time": "2026-12-02T06:31:00.5Z",
        "datacontenttype": "application/json",
        "dataschema": schema_uri("trip.confirmed", 2),
        "data": {"trip_id": "T-1", "total": "120.00"},
        "traceparent": TRACE,
        "correlationid": "T-1",
    }


def test_envelope_round_trips_through_bytes() -> None:
    """An envelope encoded as structured-mode JSON decodes to an equal envelope."""
    envelope = CloudEvent.create(
        type="trip.confirmed",
        source="/trips",
        subject="T-1",
        data={"a": 1},
        version=3,
        traceparent=TRACE,
        correlationid="T-1",
        tenant="acme",
    )
    decoded = CloudEvent.from_bytes(envelope.to_bytes())
    assert decoded == envelope
    assert decoded.version == 3
    assert decoded.extensions == {"tenant": "acme"}
    assert decoded.to_dict()["time"].endswith("Z")


def test_valid_envelope_is_accepted_with_every_attribute() -> None:
    """A complete CloudEvents 1.0 envelope parses and keeps its attributes."""
    envelope = CloudEvent.from_bytes(json.dumps(_valid()))
    assert (envelope.id, envelope.subject, envelope.version) == ("e-1", "T-1", 2)
    assert envelope.traceparent == TRACE
    assert envelope.headers()["ce-type"] == "trip.confirmed"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "id"),
        ({"source": "  "}, "source"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2026-12-02T06:31:00"}, "time"),
        ({"datacontenttype": "text/xml"}, "datacontenttype"),
        ({"traceparent": "00-0000-00"}, "traceparent"),
        ({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, "traceparent"),
        ({"Bad_Name": "x"}, "extension attribute"),
        ({"id": 7}, "id"),
    ],
)
def test_malformed_envelope_is_refused_with_the_reason(
    change: dict[str, object], reason: str
) -> None:
    """Each malformed attribute is refused with an EnvelopeError that names it."""
    body = {**_valid(), **change}
    with pytest.raises(EnvelopeError) as caught:
        CloudEvent.from_bytes(json.dumps(body))
    assert reason in str(caught.value)


def test_missing_required_attribute_and_non_json_are_refused() -> None:
    """An envelope without a type, and a body that is not JSON, are refused."""
    body = _valid()
    del body["type"]
    with pytest.raises(EnvelopeError, match="type"):
        CloudEvent.from_bytes(json.dumps(body))
    with pytest.raises(EnvelopeError):
        CloudEvent.from_bytes(b"\xff not json")
    assert issubclass(EnvelopeError, ValueError)
    assert issubclass(EnvelopeError, TripwrightError)


def test_schema_version_is_read_only_for_its_own_type() -> None:
    """dataschema names a version only for the type it was written for."""
    assert schema_version(schema_uri("a.b", 4), "a.b") == 4
    assert schema_version(schema_uri("a.b", 4), "a.c") is None
    assert schema_version("https://example.com/schema.json", "a.b") is None
    assert schema_version(None, "a.b") is None


def test_typed_event_builds_its_envelope_and_validates_data() -> None:
    """A typed event carries type, version and topic into its envelope and back."""
    event = TripConfirmed(trip_id="T-1", total=Decimal("120.00"))
    envelope = event.envelope(source="/trips", subject="T-1", correlationid="T-1")
    assert (envelope.type, envelope.version, envelope.subject) == ("trip.confirmed", 2, "T-1")
    assert TripConfirmed.topic == "trip"
    assert TripConfirmed.from_data(envelope.data) == event
    with pytest.raises(EventSchemaError, match="total"):
        TripConfirmed.from_data({"trip_id": "T-1", "total": "lots"})


def test_event_definitions_are_checked() -> None:
    """A bad type name or version is a DefinitionError when the class is defined."""
    with pytest.raises(DefinitionError):

        class BadName(Event):
            type_name = "has space"

    with pytest.raises(DefinitionError):

        class BadVersion(Event):
            type_name = "ok.name"
            version = 0


def test_bus_public_api_is_pinned() -> None:
    """tripwright.bus re-exports exactly its documented public names."""
    assert sorted(tripwright.bus.__all__) == sorted(
        [
            "ACK",
            "CONTENT_TYPE",
            "DEFAULT_BROKER",
            "Ack",
            "BrokerOptions",
            "DeadLetterHandler",
            "CloudEvent",
            "Delivery",
            "DeliveryHandler",
            "Disposition",
            "Event",
            "MemoryTransport",
            "OutboxRecord",
            "OutboxRelay",
            "OutgoingMessage",
            "Reject",
            "Retry",
            "Subscription",
            "Transport",
            "Upcaster",
            "broker_scheme",
            "create_transport",
            "outbox_envelope",
            "schema_uri",
            "schema_version",
        ]
    )
