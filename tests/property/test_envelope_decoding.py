"""Property: decoded envelopes validate as their JSON text does.

``CloudEvent.from_decoded`` validates envelopes decoded from JSON without encoding them
again, reading plain times itself. Envelopes near the rules' edges (lengths, blank
text, times, trace contexts, extension names and values, wrong types) must give the same
envelope, or the same refusal, either way.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tripwright.bus import CloudEvent
from tripwright.errors import EnvelopeError

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

#: Text as the engine's codec stores it (it refuses NUL and lone surrogates).
stored_text = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")

texts = st.one_of(
    st.text(stored_text, max_size=4),
    st.sampled_from(["", " ", "\t", "a", "x" * 199, "x" * 200, "x" * 201, "y" * 300, "y" * 301]),
    st.sampled_from(["z" * 499, "z" * 500, "z" * 501]),
)
odd = st.one_of(
    st.none(), st.integers(-2, 2), st.floats(allow_nan=False, allow_infinity=False), st.booleans()
)
times = st.one_of(
    st.sampled_from(
        [
            "2026-12-02T06:31:00Z",
            "2026-12-02T06:31:00.5Z",
            "2026-12-02T06:31:00.123456+02:00",
            "2026-12-02T06:31:00.1234567Z",
            "2026-12-02T06:31:00-00:00",
            "2026-12-02T06:31:00+23:59",
            "2026-12-02T06:31:00+24:00",
            "2026-12-02T06:31:60Z",
            "2026-02-30T06:31:00Z",
            "0000-01-01T00:00:00Z",
            "2026-12-02T06:31:00",
            "2026-12-02 06:31:00Z",
            "2026-12-02t06:31:00z",
            "not a time",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
)
traceparents = st.one_of(
    st.sampled_from(
        [
            TRACE,
            TRACE.upper(),
            "ff" + TRACE[2:],
            "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
            TRACE[:-1],
        ]
    ),
    st.from_regex(r"\A[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z"),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(stored_text, max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(stored_text, max_size=3), inner)
    ),
    max_leaves=6,
)
extension_names = st.one_of(
    st.sampled_from(["tenant", "x1", "a" * 20, "a" * 21, "Tenant", "ten-ant", ""]),
    st.from_regex(r"\A[a-z0-9]{1,20}\Z"),
)

#: Each attribute: what it may be set to (valid, at the edges, or of the wrong type).
ATTRIBUTES: dict[str, st.SearchStrategy[Any]] = {
    "specversion": st.sampled_from(["1.0", "1.1", 1.0, None]),
    "id": texts | odd,
    "source": texts | odd,
    "type": texts | odd,
    "subject": texts | odd,
    "time": times | odd,
    "datacontenttype": st.sampled_from(["application/json", "text/plain", None]),
    "dataschema": texts | odd,
    "data": json_values,
    "traceparent": traceparents | odd,
    "correlationid": texts | odd,
}


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    value: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/trips",
        "type": "trip.confirmed",
        "time": "2026-12-02T06:31:00.5Z",
    }
    for name in draw(st.lists(st.sampled_from(sorted(ATTRIBUTES)), max_size=4, unique=True)):
        if draw(st.booleans()):
            value[name] = draw(ATTRIBUTES[name])
        else:
            value.pop(name, None)
    for _ in range(draw(st.integers(0, 2))):
        value[draw(extension_names)] = draw(
            st.one_of(json_values, st.text(stored_text, max_size=3))
        )
    # What a store hands back: the value after a trip through JSON text.
    decoded: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    return decoded


def _validated(value: dict[str, Any]) -> CloudEvent | str:
    try:
        return CloudEvent.from_dict(value)
    except EnvelopeError as exc:
        return f"refused: {exc}"


def _decoded(value: dict[str, Any]) -> CloudEvent | str:
    try:
        return CloudEvent.from_decoded(value)
    except EnvelopeError as exc:
        return f"refused: {exc}"


@settings(max_examples=400, deadline=None)
@given(envelopes())
def test_decoded_envelopes_validate_as_their_json_does(value: dict[str, Any]) -> None:
    """Every decoded envelope is accepted as the same envelope, or refused for the same
    reason, by ``from_decoded`` as by ``from_dict``."""
    expected = _validated(value)
    actual = _decoded(value)
    assert expected == actual
    if isinstance(expected, CloudEvent):
        assert isinstance(actual, CloudEvent)
        assert expected.to_dict() == actual.to_dict()
        assert expected.version == actual.version
        assert expected.extensions == actual.extensions
