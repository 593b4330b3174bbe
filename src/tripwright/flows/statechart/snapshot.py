"""The snapshot format: everything an interpreter needs to carry on, as pure JSON.

``Interpreter.snapshot()`` returns a :class:`Snapshot` dict and
``Interpreter.restore(chart, snapshot)`` rebuilds an interpreter that behaves exactly as
the original would have from that point: this is what a durable host checkpoints after
every macrostep. The dicts contain only JSON values (``json.dumps`` round-trips them).

A durable host that encodes the snapshot at once takes the *compact* form instead
(:func:`take_compact`, ``format`` :data:`COMPACT`): the same layout without the parts
holding their empty or default values and without the chart's name, version and the
session id (the host knows them); it shares the datamodel's values with the session
instead of copying them, so it must be encoded before the session runs again.
:func:`load_snapshot` reads both forms.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
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
    "COMPACT",
    "FORMAT",
    "ChildSnapshot",
    "PendingSend",
    "Snapshot",
    "check_snapshot",
    "load_snapshot",
    "take_compact",
    "take_snapshot",
]

#: Version of the snapshot layout; bumped on incompatible changes.
FORMAT = 1
#: ``format`` of a compact snapshot (see :func:`take_compact`).
COMPACT = 2


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


def check_snapshot(chart: Statechart, snapshot: Mapping[str, Any]) -> None:
    """Refuse a snapshot of another layout or another chart (a compact snapshot does
    not name its chart: its host does)."""
    if snapshot.get("format") not in (FORMAT, COMPACT):
        raise StatechartError(f"unknown snapshot format {snapshot.get('format')!r}")
    name = snapshot.get("chart", chart.name)
    if name != chart.name:
        raise StatechartError(f"snapshot of {name!r} cannot restore chart {chart.name!r}")


def take_snapshot(session: Interpreter) -> Snapshot:
    """The session's state as JSON (children's nested)."""
    data = _checked_datamodel(session)
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


def take_compact(session: Interpreter) -> dict[str, Any]:
    """The session's state as :func:`take_snapshot` has it, without the parts that hold
    their default value and without the chart's and session's names; the datamodel's
    values are the session's own (not copies)."""
    out: dict[str, Any] = {
        "format": COMPACT,
        "configuration": list(session.configuration),
        "datamodel": _checked_datamodel(session),
    }
    if session.ids:
        out["counters"] = {"ids": session.ids}
    if not session._running:
        out["running"] = False
    if not session._started:
        out["started"] = False
    if session._done:
        out["done"] = True
        out["donedata"] = session._donedata
    if session._internal:
        out["internal"] = [e.to_json() for e in session._internal]
    if session._external:
        out["external"] = [e.to_json() for e in session._external]
    states = session.chart.states
    if session._history:
        out["history"] = {
            states[h].id: [states[i].id for i in bits(v)] for h, v in session._history.items()
        }
    if session._delayed:
        out["delayed"] = [PendingSend(**p) for p in session._delayed.values()]
    if session._invoked:
        out["invoked"] = snapshot_invocations(session)
    if session.initialized:
        out["initialized"] = sorted(states[i].id for i in session.initialized)
    return out


def _checked_datamodel(session: Interpreter) -> dict[str, Any]:
    data = session.datamodel
    for key, value in data.items():
        if not is_json(value):
            raise ContextNotSerializableError(
                f"datamodel variable {key!r} of session {session.session_id!r} holds "
                f"{type(value).__name__}, which is not JSON data"
            )
    return data


def load_snapshot(session: Interpreter, snapshot: Mapping[str, Any]) -> None:
    """Put a fresh session in the state ``snapshot`` describes (either form).

    A compact snapshot's datamodel values become the session's own: its host hands
    over a snapshot it has just decoded and keeps no other reference to it.
    """
    compiled = session.chart
    compact = snapshot.get("format") == COMPACT
    session._started = bool(snapshot.get("started", True))
    session._running = bool(snapshot.get("running", True))
    session._done = bool(snapshot.get("done", False))
    donedata = snapshot.get("donedata")
    session._donedata = donedata if compact else copy_json(donedata)
    session._config = compiled.mask_of(snapshot["configuration"])
    session.ids = int((snapshot.get("counters") or {}).get("ids", 0))
    data = snapshot.get("datamodel") or {}
    if session._started and (data or compiled.script is not None or compiled.has_data):
        ns = session.namespace()
        if compiled.script is not None:
            run_global_script(session, ns, report=False)
        ns.update(data if compact else copy_json(data))
    if snapshot.get("internal"):
        session._internal = deque(Event.from_json(e) for e in snapshot["internal"])
    if snapshot.get("external"):
        session._external = deque(Event.from_json(e) for e in snapshot["external"])
    if snapshot.get("history"):
        session._history = {
            compiled.by_id[h].index: compiled.mask_of(ids) for h, ids in snapshot["history"].items()
        }
    delayed: list[PendingSend] = snapshot.get("delayed") or []
    if delayed:
        session._delayed = {p["sendid"]: PendingSend(**p) for p in delayed}
    if snapshot.get("initialized"):
        session.initialized = {compiled.by_id[i].index for i in snapshot["initialized"]}
    if snapshot.get("invoked"):
        restore_invocations(session, dict(snapshot["invoked"]))
