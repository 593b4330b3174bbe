"""Snapshots: the compact form a durable host keeps restores the same session as the full one."""

from __future__ import annotations

import gc
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import drive
from tripwright.engine import Engine, EngineConfig, FlowRegistry, RunStatus, VirtualClock
from tripwright.engine.store import create_store, upgrade
from tripwright.errors import StatechartError
from tripwright.flows.statechart import (
    Assign,
    Event,
    Invoke,
    Log,
    Param,
    Send,
    Statechart,
    final,
    history,
    on,
    state,
    statechart,
)
from tripwright.flows.statechart.durable import SNAPSHOT_KEY, StatechartFlow, send_event
from tripwright.flows.statechart.interpreter import Interpreter
from tripwright.flows.statechart.snapshot import COMPACT

CHILD = statechart(
    "kid",
    state("working", on("ping", "over")),
    final("over"),
    data={"n": 0},
)


def _everything() -> Statechart:
    """History, a delayed send, a late-bound state's data, an invoked child, done data."""
    return statechart(
        "all",
        state(
            "work",
            history("hist", "a", deep=True),
            state("a", on("next", "b", actions=Send(event="late", id="t1", delay=60))),
            state("b", state("b1", on("next", "b2")), state("b2"), data={"seen": 1}),
            on("pause", "paused"),
        ),
        state(
            "paused",
            Invoke(id="kid", content=CHILD, params=(Param("n", expr="7"),)),
            on("resume", "hist", actions=Assign("count", expr="count + 1")),
            on("go", actions=Send(event="ping", target="#_kid")),
            on("stop", "end"),
        ),
        final("end", donedata={"count": "count"}),
        data={"count": 0, "items": [1, {"a": [2]}]},
        binding="late",
    )


def _steps(chart: Statechart, names: list[str]) -> list[Interpreter]:
    """A machine after each event (restored from nothing but its last compact snapshot,
    encoded as a host would store it)."""
    m = Interpreter(chart, session_id="s1", now=lambda: 100.0)
    m.start()
    seen = [m]
    for name in names:
        stored = json.loads(json.dumps(m.compact_snapshot()))
        m = Interpreter.restore(chart, stored, session_id="s1", now=lambda: 100.0)
        m.send(Event(name))
        while m.pending:
            m.step()
        seen.append(m)
    return seen


def test_a_compact_snapshot_restores_what_the_full_one_holds() -> None:
    """Restored from its compact snapshot after every event, a machine holds exactly what
    the one run without snapshots does (configuration, data, history, sends, children)."""
    chart = _everything()
    names = ["next", "next", "pause", "go", "resume", "pause", "stop"]
    plain = Interpreter(chart, session_id="s1", now=lambda: 100.0)
    plain.start()
    expected = [plain.snapshot()]
    for name in names:
        plain.send(Event(name))
        while plain.pending:
            plain.step()
        expected.append(plain.snapshot())
    assert [m.snapshot() for m in _steps(chart, names)] == expected
    assert (expected[-1]["done"], expected[-1]["donedata"]) == (True, {"count": 1})


def test_a_compact_snapshot_leaves_out_what_holds_its_default() -> None:
    """A machine waiting with nothing pending is its configuration and datamodel only."""
    m = Interpreter(_everything(), session_id="s1")
    m.start()
    assert m.compact_snapshot() == {
        "format": COMPACT,
        "configuration": ["work", "a"],
        "datamodel": {"count": 0, "items": [1, {"a": [2]}]},
    }
    m.send(Event("next"))
    compact = m.compact_snapshot()
    assert set(compact) == {"format", "configuration", "datamodel", "delayed", "initialized"}
    assert (compact["initialized"], [p["sendid"] for p in compact["delayed"]]) == (["b"], ["t1"])


def test_a_compact_snapshot_needs_its_session_id_to_be_restored() -> None:
    """A compact snapshot does not name its session: restoring it without one is refused."""
    m = Interpreter(_everything(), session_id="s1")
    m.start()
    with pytest.raises(StatechartError, match="session_id"):
        Interpreter.restore(_everything(), m.compact_snapshot())


def test_a_snapshot_of_another_chart_is_refused() -> None:
    """A full snapshot names its chart; another chart cannot restore it."""
    m = Interpreter(_everything(), session_id="s1")
    m.start()
    other = statechart("other", state("a"))
    with pytest.raises(StatechartError, match="cannot restore"):
        Interpreter.restore(other, m.snapshot())


def _booking() -> Statechart:
    return statechart(
        "booking",
        state("quoted", on("hold", "held", actions=Log(label="held", expr="seats"))),
        state("held", on("pay", "paid")),
        final("paid", donedata={"seats": "seats"}),
        data={"seats": 2},
    )


async def test_a_run_checkpointed_with_a_full_snapshot_carries_on(tmp_path: Path) -> None:
    """A run whose last checkpoint holds the full snapshot layout (as checkpoints written
    before the compact form do) restores from it and goes on; its next checkpoint is
    compact."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url)
    store = create_store(url)
    await store.open()
    clock = VirtualClock()
    chart = _booking()
    engine = Engine(
        store,
        FlowRegistry([StatechartFlow(chart)]),
        clock=clock,
        config=EngineConfig(poll_interval=0.01),
    )
    try:
        run = await engine.start("booking")
        worker = engine.worker()
        await drive(worker, clock)
        stored = await engine.get(run.id)
        full = Interpreter.restore(
            chart, stored.context[SNAPSHOT_KEY]["snapshot"], session_id=run.id
        ).snapshot()
        assert full["format"] == 1
        context: dict[str, Any] = {**stored.context}
        context[SNAPSHOT_KEY] = {**context[SNAPSHOT_KEY], "snapshot": full}
        with sqlite3.connect(tmp_path / "old.db") as db:
            db.execute("UPDATE runs SET context=? WHERE id=?", (json.dumps(context), run.id))
        await send_event(engine, run.id, "hold")
        await drive(worker, clock)
        held = await engine.get(run.id)
        assert held.context[SNAPSHOT_KEY]["snapshot"]["format"] == COMPACT
        assert held.context["configuration"] == ["held"]
        await send_event(engine, run.id, "pay")
        await drive(worker, clock)
        done = await engine.get(run.id)
        assert (done.status, done.result) == (RunStatus.COMPLETED, {"seats": 2})
    finally:
        await store.close()


def test_a_released_session_is_freed_without_the_garbage_collector() -> None:
    """A host done with a session (a durable macrostep after its snapshot) releases it:
    it and its invoked children are freed at once, not left to the garbage collector."""
    chart = _everything()
    gc.collect()
    gc.disable()
    try:
        m = Interpreter(chart, session_id="s1")
        m.start()
        for name in ("next", "next", "pause"):  # the child is invoked
            m.send(Event(name))
        m.compact_snapshot()
        m.release()
        del m
        assert not [o for o in gc.get_objects() if isinstance(o, Interpreter)]
    finally:
        gc.enable()
