"""The snapshot format: everything an interpreter needs to carry on, as pure JSON.

``Interpreter.snapshot()`` returns a :class:`Snapshot` dict and
``Interpreter.restore(chart, snapshot)`` rebuilds an interpreter that behaves exactly as
the original would have from that point: this is what a durable host checkpoints after
every macrostep. The dicts contain only JSON values (``json.dumps`` round-trips them).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = ["FORMAT", "ChildSnapshot", "PendingSend", "Snapshot"]

#: Version of the snapshot layout; bumped on incompatible changes.
FORMAT = 1


class PendingSend(TypedDict):
    """A delayed send not yet fired: the event (``Event.to_json``) and where it goes."""

    sendid: str
    event: dict[str, Any]
    target: str | None
    type: str | None
    due: float


class ChildSnapshot(TypedDict):
    """An active invocation: ``kind`` ``child`` (a statechart run in this interpreter,
    with its own nested snapshot) or ``host`` (a service the host runs)."""

    kind: Literal["child", "host"]
    state: str
    autoforward: bool
    snapshot: Snapshot | None


class Snapshot(TypedDict):
    """One session's state.

    ``configuration`` lists active state ids in document order; ``datamodel`` maps
    variables to values; ``internal`` and ``external`` are the queued events;
    ``history`` maps history state ids to the state ids they recorded; ``delayed`` the
    pending delayed sends; ``invoked`` the active invocations by invoke id;
    ``initialized`` the states whose data a late binding has initialised; ``counters``
    the generators of send and invoke ids.
    """

    format: int
    chart: str
    version: int
    session_id: str
    running: bool
    started: bool
    done: bool
    donedata: Any
    configuration: list[str]
    datamodel: dict[str, Any]
    internal: list[dict[str, Any]]
    external: list[dict[str, Any]]
    history: dict[str, list[str]]
    delayed: list[PendingSend]
    invoked: dict[str, ChildSnapshot]
    initialized: list[str]
    counters: dict[str, int]
