"""Events end to end over RabbitMQ and NATS JetStream, next to the brokers' bare rate.

One command (from the repository root; PostgreSQL, RabbitMQ and NATS on this machine)::

    python benchmarks/broker_pipeline.py [--json FILE] [--subjects 300] [--per-subject 10]

For each transport, in one run:

- ``system: bare``: the broker's own durable rate, a bare aio-pika / nats-py loop that
  publishes with confirmation and consumes with acknowledgements (``_bare_brokers``),
  with 1 and 2 consumer processes;
- ``system: tripwright``: ``subjects * per_subject`` events committed to the outbox of a
  fresh PostgreSQL database, then carried by real ``tripwright worker --broker …``
  processes (1 and 2) on broker names of their own: outbox -> relay (publish, confirm,
  mark) -> broker -> consumer -> the group's inbox (one transaction per batch) -> each
  event handled by its mailbox run (a handler checkpoint). ``events_per_s`` is until the
  last event is in the inbox, ``handled_per_s`` until the last one is handled,
  ``relayed_per_s`` until the relay marked the last outbox row published.

After every Tripwright run the store is checked: every outbox event published, in the
group's inbox exactly once and handled once, each subject's events queued and handled in
publish order, no dead letters. A failed check is printed and makes the command exit 1.

``--json`` writes ``{"rows": [...]}``, each row with ``system``, ``transport``,
``consumers``, ``events_per_s`` and: ``cpu_us`` (CPU of the client processes per event:
the workers, or the bare publisher and consumers), ``broker_cpu_us`` (the broker
server's), ``pg_cpu_us`` (the PostgreSQL backends serving the workers), ``seconds``,
``events``; Tripwright rows also ``handled_per_s``, ``relayed_per_s``, ``correct`` and
``problems`` (what a failed check found).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.brokers import AMQP_URL, NATS_URL, Backend, NatsBackend, RabbitBackend
from tests.integration.processes import WorkerProcesses

from benchmarks._bare_brokers import bare_rate
from benchmarks._broker_flows import Hop, ledger, pipeline
from benchmarks._proc_cpu import cpu_seconds, pids_named
from benchmarks.engine_throughput import PG_BASE, _ensure_pg_db
from tripwright.bus import BrokerOptions
from tripwright.bus.nats import NatsTransport
from tripwright.bus.rabbitmq import RabbitMQTransport
from tripwright.demo.job import spawn_worker
from tripwright.engine.store import create_store
from tripwright.flows.events import EventBus

ROOT = Path(__file__).resolve().parent.parent
FLOWS_REF = "benchmarks._broker_flows:pipeline"
SERVERS = {"rabbitmq": ("beam.smp", AMQP_URL), "nats": ("nats-server", NATS_URL)}
TIMEOUT = 600.0


@dataclass
class Checks:
    """What the store holds after a run, against what was published."""

    problems: list[str] = field(default_factory=list)

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)


async def _drop_db(name: str) -> None:
    admin = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname=$1 AND pid <> pg_backend_pid()",
            name,
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await admin.close()


def _backend(transport: str, partitions: int) -> Backend:
    options = BrokerOptions(partitions=partitions, prefix=f"bench-{uuid.uuid4().hex[:10]}")
    made: Backend = (RabbitBackend if transport == "rabbitmq" else NatsBackend)(options)
    made.groups.add(ledger.name)
    made.topics.add(Hop.topic)
    return made


async def _subscribed(backend: Backend, consumers: int) -> bool:
    """Whether ``consumers`` processes consume every partition of the group."""
    transport = backend.make()
    await transport.connect()
    try:
        if isinstance(transport, RabbitMQTransport):
            # A queue with a single active consumer reports only that one: ask the node.
            listed = await asyncio.to_thread(
                subprocess.run,
                ["rabbitmqctl", "list_consumers", "-q", "--formatter", "json", "queue_name"],
                capture_output=True,
                check=True,
            )
            queues = [c["queue_name"] for c in json.loads(listed.stdout or b"[]")]
            return all(
                queues.count(name) >= consumers for name in transport.queue_names(ledger.name)
            )
        assert isinstance(transport, NatsTransport)
        js = transport._live()
        stream = transport.stream_name(Hop.topic)
        for index in range(transport.options.partitions):
            info = await js.consumer_info(stream, f"{ledger.name}_{index}")
            if (info.num_waiting or 0) < consumers:
                return False
        return True
    except Exception:  # not declared yet
        return False
    finally:
        await transport.close()
        backend.made.remove(transport)


async def _wait_until(check: Any, what: str, workers: WorkerProcesses, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        workers.assert_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _backend_pids(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    return [int(r[0]) for r in rows]


async def _check(url: str, subjects: list[str], per_subject: int) -> list[str]:
    """Every event published once, in the inbox once, handled once, in subject order."""
    events = len(subjects) * per_subject
    checks = Checks()
    conn = await asyncpg.connect(url)
    store = create_store(url)
    await store.open()
    try:
        checks.expect(await store.outbox_count() == events, "outbox rows != events")
        unpublished = await store.outbox_count(published=False)
        checks.expect(unpublished == 0, f"{unpublished} outbox rows never published")
        rows = await conn.fetch(
            "SELECT run_id, dedupe_key, status FROM run_events WHERE kind='event' ORDER BY id"
        )
        keys = [r["dedupe_key"] for r in rows]
        checks.expect(len(keys) == events, f"{len(keys)} inbox rows for {events} events")
        checks.expect(len(set(keys)) == len(keys), "an event is in the inbox twice")
        expected = {f"{s}-{n}" for s in subjects for n in range(per_subject)}
        missing = expected - set(keys)
        checks.expect(not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:3]}")
        pending = sum(1 for r in rows if r["status"] != "consumed")
        checks.expect(pending == 0, f"{pending} inbox events not handled")
        queued: dict[str, list[str]] = {}
        for r in rows:
            queued.setdefault(r["run_id"], []).append(r["dedupe_key"])
        for subject in subjects:
            order = [f"{subject}-{n}" for n in range(per_subject)]
            mailbox = ledger.mailbox(subject)
            checks.expect(queued.get(mailbox) == order, f"{subject}: queued out of order")
            run = await store.get_run(mailbox)
            seen = run.context.get("seen") if run is not None else None
            checks.expect(seen == list(range(per_subject)), f"{subject}: handled as {seen}")
        dead = await store.list_dead_letters()
        checks.expect(not dead, f"{len(dead)} dead letters")
    finally:
        await store.close()
        await conn.close()
    return checks.problems[:10]


async def tripwright_run(
    transport: str, consumers: int, subjects: int, per_subject: int, partitions: int, work: Path
) -> dict[str, Any]:
    """One end-to-end run on a fresh database and fresh broker names."""
    db_name = f"tripwright_bench_broker_{uuid.uuid4().hex[:10]}"
    url = await _ensure_pg_db(db_name)
    backend = _backend(transport, partitions)
    workers = WorkerProcesses(work)
    names = [f"S{s:04d}" for s in range(subjects)]
    events = subjects * per_subject
    try:
        for index in range(consumers):
            worker_id = f"{transport}-{consumers}-w{index}-{uuid.uuid4().hex[:6]}"
            proc = spawn_worker(
                url,
                worker_id,
                work / "unused-ledger",
                lease_ttl=10.0,
                concurrency=64,
                flows=FLOWS_REF,
                broker=backend.url(),
            )
            workers.adopt(worker_id, proc)

        async def ready() -> bool:
            return await _subscribed(backend, consumers)

        await _wait_until(ready, "the workers to subscribe", workers, 60)
        store = create_store(url)
        await store.open()
        conn = await asyncpg.connect(url)
        try:
            pg_pids = await _backend_pids(conn)
            server = pids_named(SERVERS[transport][0])
            client = [p.pid for p in workers.procs.values()]
            before = cpu_seconds([*client, *server, *pg_pids])
            began = time.time()
            bus = EventBus(store, pipeline, source="/bench")
            order = [(n, s) for n in range(per_subject) for s in names]
            for start in range(0, events, 1000):
                chunk = order[start : start + 1000]
                await bus.publish_many(
                    [Hop(n=n) for n, _ in chunk],
                    subjects=[s for _, s in chunk],
                    ids=[f"{s}-{n}" for n, s in chunk],
                )
            in_inbox_at: float | None = None

            async def handled() -> bool:
                nonlocal in_inbox_at
                row = await conn.fetchrow(
                    "SELECT count(*), count(*) FILTER (WHERE status='consumed'), "
                    "max(created_at) FROM run_events WHERE kind='event'"
                )
                assert row is not None
                total, done, last = row
                if in_inbox_at is None and total >= events:
                    in_inbox_at = float(last)
                return bool(done >= events)

            await _wait_until(handled, "every event to be handled", workers, TIMEOUT)
            handled_at = time.time()
            after = cpu_seconds(before)
            relayed_at = float(await conn.fetchval("SELECT max(published_at) FROM outbox"))
        finally:
            await conn.close()
            await store.close()
        codes = await workers.terminate_all()
        bad = {w: c for w, c in codes.items() if c != 0}
        if bad:
            raise RuntimeError(f"workers exited with {bad}: {workers.log(next(iter(bad)))}")
        problems = await _check(url, names, per_subject)
    finally:
        workers.kill_all()
        await backend.cleanup()
        await _drop_db(db_name)
    assert in_inbox_at is not None

    def spent(pids: list[int]) -> float:
        return sum(after[p] - before[p] for p in pids) / events * 1e6

    return {
        "system": "tripwright",
        "transport": transport,
        "consumers": consumers,
        "events_per_s": round(events / (in_inbox_at - began), 1),
        "handled_per_s": round(events / (handled_at - began), 1),
        "relayed_per_s": round(events / (relayed_at - began), 1),
        "events": events,
        "subjects": subjects,
        "partitions": partitions,
        "seconds": round(handled_at - began, 2),
        "cpu_us": round(spent(client), 1),
        "broker_cpu_us": round(spent(server), 1),
        "pg_cpu_us": round(spent(pg_pids), 1),
        "correct": not problems,
        "problems": problems,
    }


async def bare_run(transport: str, consumers: int, events: int) -> dict[str, Any]:
    """One bare broker loop (see ``_bare_brokers``)."""
    process, url = SERVERS[transport]
    result = await bare_rate(transport, url, events, consumers, watch=pids_named(process))
    return {
        "system": "bare",
        "transport": transport,
        "consumers": consumers,
        "events_per_s": round(result.events_per_s, 1),
        "events": events,
        "seconds": round(events / result.events_per_s, 2),
        "cpu_us": round((result.publisher_cpu + result.consumer_cpu) / events * 1e6, 1),
        "broker_cpu_us": round(result.watched_cpu / events * 1e6, 1),
    }


async def measure(
    transports: list[str],
    consumer_counts: list[int],
    subjects: int,
    per_subject: int,
    partitions: int,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="tripwright-brokers-"))
    events = subjects * per_subject
    console = Console(stderr=True)
    for transport in transports:
        for consumers in consumer_counts:
            console.print(f"bare {transport}, {consumers} consumer(s), {events} messages")
            rows.append(await bare_run(transport, consumers, events))
            console.print(f"tripwright {transport}, {consumers} worker(s), {events} events")
            row = await tripwright_run(
                transport, consumers, subjects, per_subject, partitions, work
            )
            if not row["correct"]:
                console.print(f"[bold red]CHECK FAILED[/] {transport} x{consumers}:")
                for problem in row["problems"]:
                    console.print(f"  - {problem}")
            rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Events end to end over a broker, on PostgreSQL (same run)")
    columns = (
        "system",
        "transport",
        "consumers",
        "events/s",
        "vs bare",
        "handled/s",
        "relayed/s",
        "CPU µs client",
        "broker",
        "postgres",
        "checks",
    )
    for column in columns:
        table.add_column(column)
    bare = {
        (r["transport"], r["consumers"]): float(r["events_per_s"])
        for r in rows
        if r["system"] == "bare"
    }
    for row in rows:
        ratio = float(row["events_per_s"]) / bare[(row["transport"], row["consumers"])]
        checks = "-" if "correct" not in row else "ok" if row["correct"] else "FAILED"
        table.add_row(
            row["system"],
            row["transport"],
            str(row["consumers"]),
            f"{row['events_per_s']:,.0f}",
            f"{ratio:.2f}x",
            f"{row['handled_per_s']:,.0f}" if "handled_per_s" in row else "-",
            f"{row['relayed_per_s']:,.0f}" if "relayed_per_s" in row else "-",
            f"{row['cpu_us']}",
            f"{row['broker_cpu_us']}",
            f"{row.get('pg_cpu_us', '-')}",
            checks,
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--per-subject", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=BrokerOptions().partitions)
    parser.add_argument("--transport", choices=sorted(SERVERS), action="append")
    parser.add_argument("--consumers", type=int, action="append")
    args = parser.parse_args()
    # The worker processes import the benchmark's flows from the repository root.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    rows = asyncio.run(
        measure(
            args.transport or ["rabbitmq", "nats"],
            args.consumers or [1, 2],
            args.subjects,
            args.per_subject,
            args.partitions,
        )
    )
    Console(width=150).print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    if not all(row.get("correct", True) for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
