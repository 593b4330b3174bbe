"""The snapshot format: everything an interpreter needs to carry on, as pure JSON.

``Interpreter.snapshot()`` returns a :class:`Snapshot` dict and
``Interpreter.restore(chart, snapshot)`` rebuilds an interpreter that behaves exactly as
the original would have from that point: this is what a durable host checkpoints after
every macrostep. The dicts contain only JSON values (``json.dumps`` round-trips them).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from tripwright.errors import ContextNotSerializableError, StatechartError
from tripwright.flows.statechart.datamodel import copy_json, is_json, run_global_script
from tripwright.flows.statechart.events import Event
from tripwright.flows.statechart.invoke import restore_invocations, snapshot_invocations
from tripwright.flows.statechart.model import Statechart
from tripwright.flows.statechart.plans import bits

if TYPE_CHECKING:
    from tripwright.flows.statechart.interpreter import Interpreter

__all__ = [
    "FORMAT",
    "ChildSnapshot",
    "PendingSend",
    "Snapshot",
    "check_snapshot",
    "load_snapshot",
    "take_snapshot",
]

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
    index: int
    autoforward: bool
    src: str | None
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


def check_snapshot(chart: Statechart, snapshot: Snapshot) -> None:
    """Refuse a snapshot of another layout or another chart."""
    if snapshot.get("format") != FORMAT:
        raise StatechartError(f"unknown snapshot format {snapshot.get('format')!r}")
    if snapshot["chart"] != chart.name:
        raise StatechartError(
            f"snapshot of {snapshot['chart']!r} cannot restore chart {chart.name!r}"
        )


def take_snapshot(session: Interpreter) -> Snapshot:
    """The session's state as JSON (children's nested)."""
    data = session.datamodel
    for key, value in data.items():
        if not is_json(value):
            raise ContextNotSerializableError(
                f"datamodel variable {key!r} of session {session.session_id!r} holds "
                f"{type(value).__name__}, which is not JSON data"
            )
    states = session.chart.states
    return {
        "format": FORMAT,
        "chart": session.chart.name,
        "version": session.chart.chart.version,
        "session_id": session.session_id,
        "running": session._running,
        "started": session._started,
        "done": session._done,
        "donedata": copy_json(session._donedata),
        "configuration": list(session.configuration),
        "datamodel": copy_json(data),
        "internal": [e.to_json() for e in session._internal or ()],
        "external": [e.to_json() for e in session._external or ()],
        "history": {
            states[h].id: [states[i].id for i in bits(v)]
            for h, v in (session._history or {}).items()
        },
        "delayed": [PendingSend(**p) for p in (session._delayed or {}).values()],
        "invoked": snapshot_invocations(session) if session._invoked else {},
        "initialized": sorted(states[i].id for i in session.initialized or ()),
        "counters": {"ids": session.ids},
    }


def load_snapshot(session: Interpreter, snapshot: Snapshot) -> None:
    """Put a fresh session in the state ``snapshot`` describes."""
    compiled = session.chart
    session._started = snapshot["started"]
    session._running = snapshot["running"]
    session._done = bool(snapshot.get("done", False))
    session._donedata = copy_json(snapshot.get("donedata"))
    session._config = compiled.mask_of(snapshot["configuration"])
    session.ids = int(snapshot["counters"].get("ids", 0))
    data = snapshot["datamodel"]
    if session._started and (data or compiled.script is not None or compiled.has_data):
        ns = session.namespace()
        if compiled.script is not None:
            run_global_script(session, ns, report=False)
        ns.update(copy_json(data))
    if snapshot["internal"]:
        session._internal = deque(Event.from_json(e) for e in snapshot["internal"])
    if snapshot["external"]:
        session._external = deque(Event.from_json(e) for e in snapshot["external"])
    if snapshot["history"]:
        session._history = {
            compiled.by_id[h].index: compiled.mask_of(ids) for h, ids in snapshot["history"].items()
        }
    if snapshot["delayed"]:
        session._delayed = {p["sendid"]: PendingSend(**p) for p in snapshot["delayed"]}
    if snapshot["initialized"]:
        session.initialized = {compiled.by_id[i].index for i in snapshot["initialized"]}
    if snapshot["invoked"]:
        restore_invocations(session, dict(snapshot["invoked"]))
