"""Hybrid runs survive a SIGKILLed worker: machines whose sagas were mid-way when the
worker died reach their final configuration on the next worker, each saga step and
compensation applied once per idempotency key, each confirmation notified once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_eventually, assert_gapless
from tests.integration.hybrid_flows import NOTIFY, lifecycle
from tests.integration.processes import WorkerProcesses, db_sessions, sessions_ended
from tests.integration.saga_flows import FORWARD
from tests.integration.test_saga_crash import check_saga, ledger_rows
from tripwright.demo.flow import EffectLedger
from tripwright.demo.job import spawn_worker
from tripwright.engine import Engine, RunRecord, RunStatus
from tripwright.engine.store import Store, create_store
from tripwright.loading import load_flows

pytestmark = pytest.mark.slow

FLOWS_REF = "tests.integration.hybrid_flows:flows"
LEASE_TTL = 1.5
RUNS = 40
#: Where a trip's saga fails for good, by trip number: nowhere, mid-way, at the pivot.
FATES: tuple[str | None, ...] = (None, "room", None, "ticket")


async def machines(store: Store) -> list[RunRecord]:
    return await store.list_runs(flow=lifecycle.name, limit=4 * RUNS)


async def sagas(store: Store) -> list[RunRecord]:
    return await store.list_runs(flow="test.saga_crash", limit=4 * RUNS)


def spawn(workers: WorkerProcesses, db_url: str, worker_id: str, ledger: Path) -> None:
    workers.adopt(
        worker_id, spawn_worker(db_url, worker_id, ledger, lease_ttl=LEASE_TTL, flows=FLOWS_REF)
    )


async def test_machines_whose_sagas_were_mid_way_finish_on_the_next_worker(
    db_url: str, tmp_path: Path, workers: WorkerProcesses
) -> None:
    """Worker A is SIGKILLed while sagas invoked by machines are mid-way; worker B
    finishes: every machine is confirmed or failed as its saga's fate says, every saga
    applied (and undid) each step once per key, and every confirmation was notified once."""
    ledger = tmp_path / "provider-ledger.db"
    EffectLedger(ledger)
    store = create_store(db_url)
    await store.open()
    try:
        engine = Engine(store, load_flows([FLOWS_REF]))
        inputs = [{"trip": f"T{i}", "fail_at": FATES[i % len(FATES)]} for i in range(RUNS)]
        await engine.start_many(lifecycle.name, inputs)
        before = await db_sessions(db_url)
        spawn(workers, db_url, "worker-A", ledger)

        async def sagas_mid_way() -> bool:
            children = await sagas(store)
            ended = sum(r.is_terminal for r in children)
            running = [r for r in children if not r.is_terminal and r.lease_owner == "worker-A"]
            return ended >= RUNS // 4 and bool(running)

        await workers.kill_when("worker-A", sagas_mid_way)
        await sessions_ended(db_url, before)
        at_kill = await sagas(store)
        in_flight = {r.id for r in at_kill if r.lease_owner == "worker-A" and not r.is_terminal}
        assert in_flight, "worker A held no saga when it was killed"
        assert not all(m.is_terminal for m in await machines(store)), "A finished first"

        spawn(workers, db_url, "worker-B", ledger)

        async def all_settled() -> bool:
            workers.assert_alive("worker-B")
            done = [m for m in await machines(store) if m.is_terminal]
            notified = sum(e.step == NOTIFY for rows in ledger_rows(ledger).values() for e in rows)
            confirmed = sum(m.context.get("configuration") == ["confirmed"] for m in done)
            return len(done) == RUNS and notified == confirmed

        await assert_eventually(all_settled, timeout=90)
        assert await workers.terminate("worker-B") == 0, workers.log("worker-B")

        effects = ledger_rows(ledger)
        children = {r.id: r for r in await sagas(store)}
        for machine in await machines(store):
            fail_at = machine.input["fail_at"]
            child = children[f"{machine.id}.book"]
            await check_saga(store, child, effects.get(child.id, []))
            journal = await store.journal(machine.id)
            assert_gapless(journal)
            taken = [
                e.data["event"]["name"]
                for e in journal
                if e.kind == "transition" and not e.data.get("ignored") and e.data.get("event")
            ]
            notes = effects.get(machine.input["trip"], [])
            assert machine.status is RunStatus.COMPLETED
            if fail_at is None:
                assert (machine.context["configuration"], taken) == (
                    ["confirmed"],
                    ["done.invoke.book"],
                )
                # One notification per confirmed trip: one effect under one key.
                assert [e.step for e in notes] == [NOTIFY]
            else:
                undone = list(reversed(FORWARD[: FORWARD.index(fail_at)]))
                assert (machine.context["configuration"], taken, machine.result) == (
                    ["failed"],
                    ["error.invoke.book"],
                    {"undone": undone},
                )
                assert notes == []
    finally:
        await store.close()
