"""Values the stores cannot keep fail their own run, never a whole group commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tripwright.engine import (
    Checkpoint,
    Complete,
    Engine,
    Fail,
    Flow,
    FlowRegistry,
    RunStatus,
    StepContext,
    VirtualClock,
)
from tripwright.engine.committer import GroupCommitter
from tripwright.engine.records import RunStatus as Status
from tripwright.engine.store import Store
from tripwright.errors import StoreDataError

MakeEngine = Callable[..., Engine]


async def test_unencodable_result_or_details_fail_the_run_once(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A Complete result or Fail details that are not JSON fail the run, executing once."""
    calls: list[str] = []
    flow = Flow("bad.result")

    @flow.step
    async def only(ctx: StepContext) -> Complete | Fail:
        calls.append(ctx.input)
        if ctx.input == "result":
            return Complete({"when": object()})
        return Fail("nope", details={"x": {1, 2}})

    engine = make_engine(flow)
    runs = [await engine.start("bad.result", kind) for kind in ("result", "details")]
    worker = engine.worker()
    for _ in range(3):
        await worker.run_until_idle()
        await clock.advance(engine.config.lease_ttl + 1)
    for run in runs:
        after = await engine.get(run.id)
        assert after.status is RunStatus.FAILED
        assert after.error is not None
        assert after.error["type"] == "ContextNotSerializableError"
    assert sorted(calls) == ["details", "result"]


async def test_a_run_parked_at_a_step_no_longer_deployed_fails_clearly(
    store: Store, clock: VirtualClock
) -> None:
    """A run whose current step is missing from the deployed definition fails, saying so."""

    async def noop(ctx: StepContext) -> None:
        return None

    old = Flow("renamed")
    old.add_step("a", noop)
    new = Flow("renamed")
    new.add_step("b", noop)
    run = await Engine(store, FlowRegistry([old]), clock=clock).start("renamed")
    engine = Engine(store, FlowRegistry([new]), clock=clock)
    await engine.worker().run_until_idle()
    after = await engine.get(run.id)
    assert after.status is RunStatus.FAILED
    assert after.error is not None
    assert "step 'a' is not in renamed@1" in after.error["message"]


async def test_one_bad_note_or_nul_does_not_sink_other_runs(
    make_engine: MakeEngine, clock: VirtualClock
) -> None:
    """A step writing a non-JSON note or a NUL character fails alone; its batch commits."""
    flow = Flow("noted")

    @flow.step
    async def first(ctx: StepContext) -> None:
        await asyncio.sleep(0)
        if ctx.input == "note":
            ctx.note("diagnostic", blob=object())
        if ctx.input == "nul":
            ctx.context["name"] = "a\x00b"

    @flow.step
    async def second(ctx: StepContext) -> None:
        await asyncio.sleep(0)

    engine = make_engine(flow)
    runs = await engine.start_many("noted", ["good"] * 20 + ["note", "nul"] + ["good"] * 20)
    await engine.worker().run_until_idle()
    for run in runs:
        after = await engine.get(run.id)
        expected = RunStatus.COMPLETED if run.input == "good" else RunStatus.FAILED
        assert after.status is expected, (run.input, after.status)


class _RejectingStore:
    """A store double whose database refuses any batch holding run 'bad'."""

    max_inflight_commits = 1

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def commit(self, checkpoints: Sequence[Checkpoint]) -> list[bool]:
        ids = [cp.run_id for cp in checkpoints]
        self.batches.append(ids)
        await asyncio.sleep(0.01)  # a commit takes time: the next batch forms meanwhile
        if "bad" in ids:
            raise StoreDataError("value too long for type character varying(200)")
        return [True] * len(ids)


def _cp(run_id: str) -> Checkpoint:
    return Checkpoint(
        run_id=run_id,
        lease_owner="w",
        lease_epoch=1,
        status=Status.RUNNING,
        step="s",
        state="{}",
        context="{}",
        now=0.0,
        lease_expires_at=None,
    )


async def test_group_commit_isolates_a_rejected_checkpoint() -> None:
    """When the database rejects a batch, each checkpoint is retried alone: only the
    offending one fails."""
    store = _RejectingStore()
    committer = GroupCommitter(store, max_inflight=1)  # type: ignore[arg-type]
    gate = asyncio.create_task(committer.commit(_cp("first")))
    others = [asyncio.create_task(committer.commit(_cp(n))) for n in ("a", "bad", "b")]
    await gate
    results = await asyncio.gather(*others, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType", "StoreDataError", "NoneType"]
    assert ["a", "bad", "b"] in store.batches
