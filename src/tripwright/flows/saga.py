"""The sequence model: an orchestrated saga, compiled onto the durable engine.

A saga is an ordered list of steps and parallel groups. Each step has an action and,
usually, a compensation. Before the **pivot** (the point of no return, such as ticketing),
a failure that retries cannot fix compensates every completed step in reverse order,
parallel branches included; after the pivot, failures are retried forward (a group whose
join fails runs its failed branches again) and never compensated. A compensation that
keeps failing, or a post-pivot step or join that does, parks the run for an operator (it
waits for the event ``saga.retry`` or ``saga.resolve``): nothing is silently dropped::

    trip = Saga("book_trip")
    trip.step("hold_flight", hold_flight, compensate=release_flight,
              deadline=900, on_expiry="reacquire")
    trip.parallel("extras", branch("car", hold_car, compensate=release_car),
                  branch("insurance", quote_insurance), join=ALL)
    trip.step("charge", charge, compensate=refund)
    trip.step("ticket", issue_ticket, pivot=True)
    trip.step("notify", send_confirmation)
    flow = trip.to_flow()          # register it like any engine flow

Every engine step is one checkpoint, so each completed saga step, each compensation and
each parallel group's outcome is durable. Actions get an idempotency key that is stable
across retries and crashes; a compensation gets its own key plus the key of the action it
undoes (``ctx.forward_key``), so a provider can find what to release.

Holds can expire: a step or group with a ``deadline`` makes the saga compensate when the
deadline passes before the pivot, or, with ``on_expiry="reacquire"``, release the expired
hold and run the action again with a new key, then carry on where the saga was.

Adding a step means editing the definition and deploying a new version: that is this
model's known cost (running runs keep the version they started with).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from tripwright.engine.executor import idempotency_key
from tripwright.engine.flow import (
    Cancelled,
    Complete,
    Fail,
    Flow,
    Goto,
    Sleep,
    StepContext,
    WaitEvent,
)
from tripwright.engine.records import JournalKind, RunRecord, RunStatus
from tripwright.engine.retry import RetryPolicy
from tripwright.engine.summary import Position
from tripwright.errors import DefinitionError, FinalError
from tripwright.flows._saga_checks import saga_mermaid, saga_problems
from tripwright.flows._saga_elements import (
    ALL,
    ANY,
    DEADLINE_PREFIX,
    DEFAULT_REACQUIRES,
    RACE,
    Action,
    Compensation,
    Element,
    Expiry,
    Holding,
    Join,
    ParallelGroup,
    Problem,
    SagaContext,
    SagaStep,
    WaitFor,
    at_least,
    branch,
    check_hold,
)

__all__ = [
    "ALL",
    "ANY",
    "RACE",
    "Join",
    "ParallelGroup",
    "Problem",
    "Saga",
    "SagaContext",
    "SagaStep",
    "WaitFor",
    "at_least",
    "branch",
]

COMPENSATE = "saga:compensate"
REACQUIRE = "saga:reacquire"
STUCK = "saga:stuck"
OPERATOR = "saga:operator"
FINISH = "saga:finish"
RETRY_EVENT = "saga.retry"
RESOLVE_EVENT = "saga.resolve"


class Saga:
    """An ordered saga definition; :meth:`to_flow` compiles it for the engine."""

    def __init__(
        self,
        name: str,
        version: str = "1",
        *,
        description: str = "",
        default_retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        forward_retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.description = description
        self.default_retry = default_retry or RetryPolicy(max_attempts=3)
        self.compensation_retry = compensation_retry or RetryPolicy(
            max_attempts=10, initial_interval=1.0, max_interval=60.0
        )
        self.forward_retry = forward_retry or RetryPolicy(
            max_attempts=20, initial_interval=1.0, max_interval=300.0
        )
        self._elements: list[Element] = []
        self._flow: Flow | None = None

    # -- definition -------------------------------------------------------------------
    def step(
        self,
        name: str,
        action: Action,
        *,
        compensate: Compensation | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        pivot: bool = False,
        final: bool = False,
        readonly: bool = False,
        deadline: float | None = None,
        on_expiry: Expiry = "compensate",
        max_reacquires: int = DEFAULT_REACQUIRES,
    ) -> SagaStep:
        """Append a step.

        ``pivot=True`` marks the point of no return; ``final=True`` makes it a *final*
        pivot, at which the saga completes (a step after it is an error). ``readonly=True``
        declares a step without side effects (it needs no compensation). ``deadline`` is
        how long what the step holds stays valid; ``on_expiry`` says what an expiry before
        the pivot does: ``"compensate"`` the saga, or ``"reacquire"`` the hold (at most
        ``max_reacquires`` times, then compensate).
        """
        check_hold(self.name, name, deadline, on_expiry, max_reacquires)
        element = SagaStep(
            name,
            action,
            compensate,
            retry,
            timeout,
            pivot or final,
            readonly,
            deadline,
            on_expiry,
            max_reacquires,
            final,
        )
        self._add(element)
        return element

    def wait(self, name: str, event: str, *, timeout: float | None = None) -> WaitFor:
        """Append a durable wait for the external event ``event`` (a signal)."""
        if timeout is not None and not timeout > 0:
            raise DefinitionError("a wait timeout must be > 0", flow=self.name, step=name)
        if not event or "|" in event or event.startswith(DEADLINE_PREFIX):
            raise DefinitionError(f"invalid event name {event!r}", flow=self.name, step=name)
        element = WaitFor(name, event, timeout)
        self._add(element)
        return element

    def parallel(
        self,
        name: str,
        *branches: SagaStep,
        join: Join = ALL,
        timeout: float | None = None,
        deadline: float | None = None,
        on_expiry: Expiry = "compensate",
        max_reacquires: int = DEFAULT_REACQUIRES,
    ) -> ParallelGroup:
        """Append a parallel group of branches (see :func:`branch`) joined by ``join``;
        ``deadline`` and ``on_expiry`` make the whole group a hold (see :meth:`step`)."""
        if not branches:
            raise DefinitionError("a parallel group needs branches", flow=self.name, step=name)
        names = [b.name for b in branches]
        if len(set(names)) != len(names):
            raise DefinitionError("duplicate branch names", flow=self.name, step=name)
        if join.kind == "at_least" and join.n > len(branches):
            raise DefinitionError(
                f"at_least({join.n}) with {len(branches)} branches can never join",
                flow=self.name,
                step=name,
            )
        check_hold(self.name, name, deadline, on_expiry, max_reacquires)
        group = ParallelGroup(
            name, tuple(branches), join, timeout, deadline, on_expiry, max_reacquires
        )
        self._add(group)
        return group

    def _add(self, element: Element) -> None:
        if self._flow is not None:
            raise DefinitionError(
                "the saga is compiled already; define a new version", flow=self.name
            )
        if any(e.name == element.name for e in self._elements):
            raise DefinitionError(f"duplicate step name {element.name!r}", flow=self.name)
        if ":" in element.name:
            raise DefinitionError(
                "step names may not contain ':'", flow=self.name, step=element.name
            )
        self._elements.append(element)

    @property
    def elements(self) -> list[Element]:
        return list(self._elements)

    @property
    def pivot_index(self) -> int | None:
        return next((i for i, e in enumerate(self._elements) if e.pivot), None)

    def element(self, name: str) -> Element:
        for element in self._elements:
            if element.name == name:
                return element
        raise DefinitionError(f"unknown saga step {name!r}", flow=self.name, step=name)

    # -- checks and diagram -----------------------------------------------------------
    def validate(self) -> list[Problem]:
        """Problems with the definition: errors make it unrunnable, warnings are risks."""
        return saga_problems(self.name, self._elements)

    def to_mermaid(self) -> str:
        """A Mermaid flowchart: steps in order, groups as subgraphs, compensations dashed,
        the pivot marked, holds with their deadline and re-acquisition."""
        return saga_mermaid(self._elements)

    # -- compilation ------------------------------------------------------------------
    def to_flow(self) -> Flow:
        """The engine flow that runs this saga (built once)."""
        if self._flow is not None:
            return self._flow
        errors = [p for p in self.validate() if p.severity == "error"]
        if errors:
            raise DefinitionError("; ".join(str(p) for p in errors), flow=self.name)
        flow = Flow(
            self.name,
            self.version,
            description=self.description,
            on_cancel=COMPENSATE,
            position=self.position,
        )
        pivot = self.pivot_index
        names = [e.name for e in self._elements]
        for index, element in enumerate(self._elements):
            following = names[index + 1] if index + 1 < len(names) else None
            after_pivot = pivot is not None and index > pivot
            if isinstance(element, WaitFor):
                flow.add_step(f"step:{element.name}", self._waiter(element))
                flow.add_step(
                    f"got:{element.name}",
                    self._receiver(element, following),
                    retry=RetryPolicy(max_attempts=1),
                    on_failure=STUCK if after_pivot else COMPENSATE,
                )
                continue
            retry = element.retry if isinstance(element, SagaStep) else None
            flow.add_step(
                f"step:{element.name}",
                self._runner(element, following),
                retry=retry or (self.forward_retry if after_pivot else self.default_retry),
                timeout=element.timeout,
                on_failure=STUCK if after_pivot else COMPENSATE,
            )
            if isinstance(element, ParallelGroup) and element.join.kind == "race":
                flow.add_step(
                    f"race:{element.name}",
                    self._race_settler(element, following),
                    retry=self.compensation_retry,
                    on_failure=STUCK,
                )
        flow.add_step(COMPENSATE, self._compensate, retry=self.compensation_retry, on_failure=STUCK)
        if any(not isinstance(e, WaitFor) and e.on_expiry == "reacquire" for e in self._elements):
            # Only sagas that re-acquire have this step (others keep their definition hash).
            flow.add_step(
                REACQUIRE, self._reacquire, retry=self.compensation_retry, on_failure=STUCK
            )
        flow.add_step(STUCK, self._stuck, retry=RetryPolicy(max_attempts=1))
        flow.add_step(OPERATOR, self._operator, retry=RetryPolicy(max_attempts=1))
        flow.add_step(FINISH, self._finish)
        self._flow = flow
        return flow

    # -- engine steps -----------------------------------------------------------------
    def _runner(
        self, element: SagaStep | ParallelGroup, following: str | None
    ) -> Callable[[StepContext], Awaitable[Goto | Complete | Sleep]]:
        next_step = _next_step(following)

        async def run_step(ctx: StepContext) -> Goto | Complete | Sleep:
            state = _saga_state(ctx)
            if not _renewing(state, element.name) and (
                expiry := self._on_expiry(ctx, state, resume=ctx.step)
            ):
                return expiry
            if isinstance(element, ParallelGroup):
                return await self._run_group(ctx, element, next_step)
            result = await element.action(
                SagaContext(ctx, step=element.name, key=ctx.idempotency_key)
            )
            ctx.context.setdefault("results", {})[element.name] = result
            state["done"].append({"name": element.name, "key": ctx.idempotency_key})
            return self._completed(ctx, element, next_step)

        return run_step

    def _completed(
        self, ctx: StepContext, element: SagaStep | ParallelGroup, next_step: str
    ) -> Goto | Complete:
        """After a step or group succeeded (its ``done`` entry appended): start its hold,
        pass the pivot, or finish a re-acquisition; then go on."""
        state = _saga_state(ctx)
        if _renewing(state, element.name):
            job = state["reacquire"]
            current = job.pop("current")
            # The renewed hold keeps its place: compensation order stays the saga's order.
            state["done"].insert(current["index"], state["done"].pop())
            counts = state.setdefault("reacquired", {})
            counts[element.name] = counts.get(element.name, 0) + 1
            _hold(ctx, state, element)
            ctx.record(
                JournalKind.NOTE,
                message="hold re-acquired",
                step=element.name,
                key=ctx.idempotency_key,
                reacquisitions=counts[element.name],
            )
            if job["queue"]:
                return Goto(REACQUIRE)
            resume: str = state.pop("reacquire")["resume"]
            return Goto(resume)
        if element.deadline is not None and not state["pivoted"]:
            _hold(ctx, state, element)
        if element.pivot:
            state["pivoted"] = True
            _clear_deadlines(ctx, state)
        return _onward(ctx, next_step)

    def _on_expiry(self, ctx: StepContext, state: dict[str, Any], *, resume: str) -> Goto | None:
        """Whether a hold expired before the pivot, and what the saga does about it.

        Holds that may be re-acquired are renewed (then the saga goes back to ``resume``);
        a hold that may not (or no more) makes the saga compensate.
        """
        if state.get("pivoted"):
            return None
        deadlines: dict[str, float] = state.get("deadlines", {})
        late = sorted((n for n, t in deadlines.items() if t <= ctx.now), key=deadlines.__getitem__)
        if not late:
            return None
        counts: dict[str, int] = state.get("reacquired", {})
        final = [n for n in late if not self._renewable(n, counts)]
        if final:
            renewed = counts.get(final[0], 0)
            state["failure"] = {
                "step": f"step:{final[0]}",
                "error": {
                    "type": "DeadlineExpired",
                    "message": f"the hold of {final[0]} expired"
                    + (f" (re-acquired {renewed} times already)" if renewed else ""),
                },
            }
            ctx.record(JournalKind.NOTE, message="deadline expired", steps=late)
            return Goto(COMPENSATE)
        state["reacquire"] = {"queue": late, "resume": resume}
        ctx.record(JournalKind.NOTE, message="deadline expired: re-acquiring", steps=late)
        return Goto(REACQUIRE)

    def _renewable(self, name: str, counts: Mapping[str, int]) -> bool:
        element = self.element(name)
        return (
            not isinstance(element, WaitFor)
            and element.on_expiry == "reacquire"
            and counts.get(name, 0) < element.max_reacquires
        )

    async def _reacquire(self, ctx: StepContext) -> Goto:
        """Release the next expired hold (its compensation, with the key of the action it
        undoes), then run its action again, with a new key."""
        state = _saga_state(ctx)
        name = state["reacquire"]["queue"][0]
        entry = next(d for d in state["done"] if d["name"] == name)
        await self._undo_entry(ctx, self.element(name), entry)
        return self._released(ctx, state, name, reason="hold expired")

    def _released(self, ctx: StepContext, state: dict[str, Any], name: str, reason: str) -> Goto:
        """An expired hold is released: forget it, and go and acquire it again."""
        job = state["reacquire"]
        job["queue"].remove(name)
        index = next(i for i, d in enumerate(state["done"]) if d["name"] == name)
        entry = state["done"].pop(index)
        visit = state.get("reacquired", {}).get(name, 0) + 1
        job["current"] = {
            "name": name,
            "index": index,
            "key": idempotency_key(ctx.run_id, f"step:{name}", visit),
        }
        state.get("deadlines", {}).pop(name, None)
        ctx.cancel_timer(f"{DEADLINE_PREFIX}{name}")
        ctx.record(
            JournalKind.COMPENSATION,
            step=name,
            reason=reason,
            branches=list(entry.get("branches", {})) or None,
        )
        return Goto(f"step:{name}")

    def _waiter(self, element: WaitFor) -> Callable[[StepContext], Awaitable[Goto | WaitEvent]]:
        async def wait(ctx: StepContext) -> Goto | WaitEvent:
            state = _saga_state(ctx)
            if expiry := self._on_expiry(ctx, state, resume=ctx.step):
                return expiry
            timeout = None
            if element.timeout is not None:
                # A wait resumed after a re-acquisition keeps its original timeout.
                until = state.setdefault("waits", {}).setdefault(
                    element.name, ctx.now + element.timeout
                )
                timeout = max(0.0, until - ctx.now)
            # A hold's deadline wakes the wait too.
            names = (element.event, *(DEADLINE_PREFIX + n for n in state.get("deadlines", {})))
            return WaitEvent(names=names, timeout=timeout, then=f"got:{element.name}")

        return wait

    def _receiver(
        self, element: WaitFor, following: str | None
    ) -> Callable[[StepContext], Awaitable[Goto | Complete]]:
        next_step = _next_step(following)

        async def receive(ctx: StepContext) -> Goto | Complete:
            state = _saga_state(ctx)
            if ctx.event is not None and ctx.event.name == element.event:
                ctx.context.setdefault("results", {})[element.name] = ctx.event.payload
                state["done"].append({"name": element.name, "key": None, "signal": True})
                state.get("waits", {}).pop(element.name, None)
                if expiry := self._on_expiry(ctx, state, resume=next_step):
                    return expiry
                return _onward(ctx, next_step)
            if expiry := self._on_expiry(ctx, state, resume=f"step:{element.name}"):
                return expiry
            if ctx.timed_out:
                raise FinalError(f"no {element.event!r} within {element.timeout:g}s")
            return Goto(f"step:{element.name}")  # a stale hold timer: wait on

        return receive

    async def _run_group(
        self, ctx: StepContext, group: ParallelGroup, next_step: str
    ) -> Goto | Complete | Sleep:
        state = _saga_state(ctx)
        # After the pivot a failed join is retried forward: what it kept is in ``partial``.
        earlier: dict[str, Any] = state.get("partial", {}).get(group.name) or {}
        keys: dict[str, str] = earlier.get("keys") or {
            b.name: f"{ctx.idempotency_key}/{b.name}" for b in group.branches
        }
        kept: dict[str, Any] = earlier.get("results", {})
        tasks = {
            b.name: asyncio.ensure_future(self._call_branch(ctx, group, b, keys[b.name]))
            for b in group.branches
            if b.name not in kept
        }
        if group.join.kind == "race":
            winner = await _first_success(tasks, [b.name for b in group.branches])
            in_flight = [n for n, t in tasks.items() if not t.done()]
            for name in in_flight:
                tasks[name].cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            if winner is None:
                if state["pivoted"]:
                    return self._join_failed_after_pivot(ctx, group, keys, {}, tasks)
                state["failure"] = _group_failure(group, tasks)
                return Goto(COMPENSATE)
            state.get("partial", {}).pop(group.name, None)
            # Losers that succeeded, and those stopped mid-call (they may have taken
            # effect), are compensated by the next (durable) step.
            losers = [n for n in keys if n != winner and (n in in_flight or not _failed(tasks[n]))]
            ctx.context.setdefault("results", {})[group.name] = {winner: tasks[winner].result()}
            state["done"].append({"name": group.name, "branches": {winner: keys[winner]}})
            state["race_losers"] = {n: keys[n] for n in losers}
            return Goto(f"race:{group.name}")
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        results = {
            n: kept[n] if n in kept else tasks[n].result()
            for n in keys
            if n in kept or not _failed(tasks[n])
        }
        if len(results) < group.join.needed(len(group.branches)):
            if state["pivoted"]:
                return self._join_failed_after_pivot(ctx, group, keys, results, tasks)
            state["done"].append({"name": group.name, "branches": {n: keys[n] for n in results}})
            state["failure"] = _group_failure(group, tasks)
            return Goto(COMPENSATE)
        state.get("partial", {}).pop(group.name, None)
        state["done"].append({"name": group.name, "branches": {n: keys[n] for n in results}})
        ctx.context.setdefault("results", {})[group.name] = results
        return self._completed(ctx, group, next_step)

    def _join_failed_after_pivot(
        self,
        ctx: StepContext,
        group: ParallelGroup,
        keys: dict[str, str],
        results: dict[str, Any],
        tasks: Mapping[str, asyncio.Future[Any]],
    ) -> Sleep | Goto:
        """Past the pivot a join that failed is never compensated: the group keeps what
        succeeded and runs the failed branches again (same keys) after a ``forward_retry``
        backoff; when those attempts run out, the run is parked for an operator."""
        state = _saga_state(ctx)
        partial = state.setdefault("partial", {})
        attempt = int((partial.get(group.name) or {}).get("attempt", 0)) + 1
        partial[group.name] = {"keys": keys, "results": results, "attempt": attempt}
        failure = _group_failure(group, tasks)
        if attempt < self.forward_retry.max_attempts:
            delay = self.forward_retry.delay(attempt)
            ctx.note(
                "join not reached: retrying forward",
                step=group.name,
                attempt=attempt,
                retry_in=round(delay, 6),
                error=failure["error"],
            )
            return Sleep(seconds=delay, then=f"step:{group.name}")
        state["parked"] = {**failure, "attempts": attempt}
        return Goto(STUCK)

    async def _call_branch(
        self, ctx: StepContext, group: ParallelGroup, item: SagaStep, key: str
    ) -> Any:
        policy = item.retry or self.default_retry
        attempt = 1
        sub = SagaContext(ctx, step=f"{group.name}/{item.name}", key=key)
        while True:
            try:
                return await ctx.clock.run_with_timeout(item.action(sub), item.timeout)
            except Exception as exc:
                if not policy.should_retry(exc, attempt):
                    raise
                await ctx.clock.sleep(policy.delay(attempt))
                attempt += 1

    def _race_settler(
        self, group: ParallelGroup, following: str | None
    ) -> Callable[[StepContext], Awaitable[Goto | Complete]]:
        next_step = _next_step(following)
        branches = {b.name: b for b in group.branches}

        async def settle(ctx: StepContext) -> Goto | Complete:
            state = _saga_state(ctx)
            losers: dict[str, str] = state.pop("race_losers", {})
            for name, key in losers.items():
                await _undo(ctx, branches[name].compensate, f"{group.name}/{name}", key)
                ctx.record(
                    JournalKind.COMPENSATION, step=f"{group.name}/{name}", reason="lost race"
                )
            return self._completed(ctx, group, next_step)

        return settle

    async def _compensate(self, ctx: StepContext) -> Goto | Fail | Cancelled:
        state = _saga_state(ctx)
        if state.get("failure") is None:
            state["failure"] = ctx.failure
            if _cancelled(state) and state.get("pivoted"):
                raise FinalError(
                    "cancel requested after the pivot: nothing is compensated past the point "
                    "of no return"
                )
            self._add_in_doubt(ctx, state)
        state.pop("reacquire", None)
        compensated: list[str] = state["compensated"]
        pending = [d for d in state["done"] if d["name"] not in compensated]
        if not pending:
            _clear_deadlines(ctx, state)
            if _cancelled(state):
                return Cancelled(str(state["failure"]["error"].get("message", "cancelled")))
            return Fail(
                "saga failed and was compensated",
                {"failure": state["failure"], "compensated": compensated},
            )
        item = pending[-1]
        await self._undo_entry(ctx, self.element(item["name"]), item)
        compensated.append(item["name"])
        ctx.record(
            JournalKind.COMPENSATION,
            step=item["name"],
            branches=list(item.get("branches", {})) or None,
        )
        return Goto(COMPENSATE)

    async def _undo_entry(self, ctx: StepContext, element: Element, item: dict[str, Any]) -> None:
        """Undo what a ``done`` entry did: a step's compensation, or every branch's (last
        first); a wait took nothing."""
        if isinstance(element, ParallelGroup):
            by_name = {b.name: b for b in element.branches}
            for name, key in reversed(list(item["branches"].items())):
                await _undo(ctx, by_name[name].compensate, f"{element.name}/{name}", key)
        elif isinstance(element, SagaStep):
            await _undo(ctx, element.compensate, element.name, item["key"])

    def _add_in_doubt(self, ctx: StepContext, state: dict[str, Any]) -> None:
        """A step that timed out may have taken effect at the provider: undo it too.

        A step that failed with a definite error did not complete and is not compensated;
        one whose last attempt timed out is *in doubt*, so its compensation runs (first),
        with the key the action used. Compensations must tolerate an action that never
        took effect, as they must tolerate being retried.
        """
        failure = ctx.failure or {}
        engine_step = str(failure.get("step") or "")
        if not engine_step.startswith("step:"):
            return
        # Timed out, or cancelled mid-step: the provider may have applied it.
        if (failure.get("error") or {}).get("type") not in ("StepTimeoutError", "Cancelled"):
            return
        name = engine_step.split(":", 1)[1]
        if any(d["name"] == name for d in state["done"]):
            return
        element = self.element(name)
        if isinstance(element, WaitFor):
            return
        current = (state.get("reacquire") or {}).get("current") or {}
        # A re-acquisition in doubt used a later visit's key.
        key = (
            current["key"]
            if current.get("name") == name
            else idempotency_key(ctx.run_id, engine_step, 0)
        )
        if isinstance(element, ParallelGroup):
            branches = {b.name: f"{key}/{b.name}" for b in element.branches}
            state["done"].append({"name": name, "branches": branches, "in_doubt": True})
        else:
            state["done"].append({"name": name, "key": key, "in_doubt": True})

    async def _stuck(self, ctx: StepContext) -> WaitEvent:
        state = _saga_state(ctx)
        # The engine's failure, or one the saga parked itself (a join after the pivot).
        failure = ctx.failure or state.pop("parked", None) or {}
        state["attention"] = failure
        ctx.note("needs_attention", failure=failure)
        return WaitEvent(
            names=(RETRY_EVENT, RESOLVE_EVENT),
            then=OPERATOR,
            attention=True,
            retry=RETRY_EVENT,
            resolve=RESOLVE_EVENT,
        )

    async def _operator(self, ctx: StepContext) -> Goto | Complete | WaitEvent:
        state = _saga_state(ctx)
        attention = state.pop("attention", None) or {}
        stuck = str(attention.get("step") or COMPENSATE)
        assert ctx.event is not None
        ctx.note(f"operator {ctx.event.name}", step=stuck)
        if ctx.event.name == RETRY_EVENT:
            if stuck.startswith("got:"):
                # A wait that timed out is retried by waiting again, for as long again.
                state.get("waits", {}).pop(stuck[4:], None)
                return Goto("step:" + stuck[4:])
            if partial := state.get("partial", {}).get(stuck.partition(":")[2]):
                partial["attempt"] = 0  # a fresh set of forward attempts for the join
            return Goto(stuck)
        # Resolved by hand: treat the stuck step as done and carry on after it.
        if stuck == COMPENSATE:
            pending = [d for d in state["done"] if d["name"] not in state["compensated"]]
            if pending:
                state["compensated"].append(pending[-1]["name"])
            return Goto(COMPENSATE)
        if stuck == REACQUIRE:
            name = state["reacquire"]["queue"][0]
            return self._released(ctx, state, name, reason="released by an operator")
        name = stuck.split(":", 1)[1]
        names = [e.name for e in self._elements]
        index = names.index(name)
        next_step = _next_step(names[index + 1] if index + 1 < len(names) else None)
        if stuck.startswith("race:"):
            # The race has its winner (in ``done``); the losers left are the operator's.
            # The group completes as a settled race does: its hold starts, a
            # re-acquisition finishes, and the saga goes on after it.
            losers = state.pop("race_losers", {})
            ctx.note("race losers left to the operator", step=name, branches=sorted(losers))
            group = self.element(name)
            assert isinstance(group, ParallelGroup)
            return self._completed(ctx, group, next_step)
        if partial := state.get("partial", {}).pop(name, None):
            # A group resolved by hand keeps what its branches achieved.
            ctx.context.setdefault("results", {})[name] = partial["results"]
            branches = {n: partial["keys"][n] for n in partial["results"]}
            state["done"].append({"name": name, "branches": branches, "resolved": True})
        elif stuck.startswith(("step:", "got:")):
            state["done"].append({"name": name, "key": None, "resolved": True})
        return Goto(next_step)

    async def _finish(self, ctx: StepContext) -> Complete:
        return _complete(ctx)

    # -- run control ------------------------------------------------------------------
    def position(self, run: RunRecord) -> Position:
        """Where a run of this saga is: its element and phase (the hook run control uses)."""
        state: dict[str, Any] = run.context.get("saga") or {}
        step = run.step or ""
        kind, _, name = step.partition(":")
        details: dict[str, Any] = {
            "pivoted": bool(state.get("pivoted")),
            "done": [d["name"] for d in state.get("done", [])],
            "compensated": list(state.get("compensated", [])),
            "holds": dict(state.get("deadlines", {})),
            "reacquired": dict(state.get("reacquired", {})),
        }
        at: tuple[str, ...] = (name,) if kind in ("step", "got", "race") else ()
        if run.is_terminal:
            phase = run.status.value
        elif run.status is RunStatus.NEEDS_ATTENTION or step in (STUCK, OPERATOR):
            phase = "needs_attention"
            stuck = str((state.get("attention") or {}).get("step") or "")
            at = (stuck.partition(":")[2],) if stuck.startswith(("step:", "got:")) else at
        elif step == COMPENSATE:
            phase = "compensating"
            pending = [n for n in details["done"] if n not in details["compensated"]]
            at = (pending[-1],) if pending else ()
        elif step == REACQUIRE or "reacquire" in state:
            phase = "reacquiring"
            job = state.get("reacquire") or {}
            current = (job.get("current") or {}).get("name")
            at = (current,) if current else tuple(job.get("queue", ())[:1])
        elif run.status is RunStatus.WAITING:
            phase = "waiting"
        else:
            phase = "forward"
        details["phase"] = phase
        return Position("sequence", at, details)


def _saga_state(ctx: StepContext) -> dict[str, Any]:
    state: dict[str, Any] = ctx.context.setdefault(
        "saga", {"done": [], "compensated": [], "pivoted": False, "failure": None}
    )
    return state


def _renewing(state: dict[str, Any], name: str) -> bool:
    """Whether the saga is re-acquiring the hold of ``name`` right now."""
    current = (state.get("reacquire") or {}).get("current") or {}
    return bool(current.get("name") == name)


def _hold(ctx: StepContext, state: dict[str, Any], element: Holding) -> None:
    """Start the hold of ``element``: its deadline, as a durable timer."""
    assert element.deadline is not None
    expires = ctx.now + element.deadline
    state.setdefault("deadlines", {})[element.name] = expires
    ctx.set_timer(f"{DEADLINE_PREFIX}{element.name}", at=expires)


def _next_step(following: str | None) -> str:
    """The engine step after a saga element (the finish after the last)."""
    return f"step:{following}" if following else FINISH


async def _undo(
    ctx: StepContext, compensate: Compensation | None, step: str, forward_key: str | None
) -> None:
    """Run a compensation with its own key, handing it the key of the action it undoes."""
    if compensate is not None:
        await compensate(
            SagaContext(
                ctx, step=step, key=f"{ctx.run_id}:undo:{forward_key}", forward_key=forward_key
            )
        )


def _complete(ctx: StepContext) -> Complete:
    _clear_deadlines(ctx, _saga_state(ctx))
    return Complete({"results": ctx.context.get("results", {})})


def _onward(ctx: StepContext, next_step: str) -> Goto | Complete:
    """Go on to the next step; after the last one, complete in the same checkpoint."""
    return _complete(ctx) if next_step == FINISH else Goto(next_step)


def _cancelled(state: dict[str, Any]) -> bool:
    failure = state.get("failure") or {}
    return bool((failure.get("error") or {}).get("type") == "Cancelled")


def _clear_deadlines(ctx: StepContext, state: dict[str, Any]) -> None:
    for name in state.pop("deadlines", {}):
        ctx.cancel_timer(f"{DEADLINE_PREFIX}{name}")


def _failed(task: asyncio.Future[Any]) -> bool:
    return task.cancelled() or task.exception() is not None


def _group_failure(
    group: ParallelGroup, tasks: Mapping[str, asyncio.Future[Any]]
) -> dict[str, Any]:
    errors = {}
    for name, task in tasks.items():
        if task.cancelled():
            errors[name] = {"type": "Cancelled", "message": "stopped"}
        elif (exc := task.exception()) is not None:
            errors[name] = {"type": type(exc).__name__, "message": str(exc)}
    return {
        "step": f"step:{group.name}",
        "error": {
            "type": "JoinFailed",
            "message": f"{group.name}: join {group.join.label} not reached",
            "branches": errors,
        },
    }


async def _first_success(
    tasks: Mapping[str, asyncio.Future[Any]], order: Sequence[str]
) -> str | None:
    pending = set(tasks.values())
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        winners = [n for n in order if tasks[n] in done and not _failed(tasks[n])]
        if winners:
            return winners[0]
    return None
