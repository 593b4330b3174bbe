"""The sequence model: an orchestrated saga, compiled onto the durable engine.

A saga is an ordered list of steps and parallel groups. Each step has an action and,
usually, a compensation. Before the **pivot** (the point of no return, such as ticketing),
a failure that retries cannot fix compensates every completed step in reverse order,
parallel branches included; after the pivot, failures are retried forward. A compensation
that keeps failing, or a post-pivot step that does, parks the run for an operator (it
waits for the event ``saga.retry`` or ``saga.resolve``): nothing is silently dropped::

    trip = Saga("book_trip")
    trip.step("hold_flight", hold_flight, compensate=release_flight)
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

Adding a step means editing the definition and deploying a new version: that is this
model's known cost (running runs keep the version they started with).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tripwright.engine.executor import idempotency_key
from tripwright.engine.flow import (
    Cancelled,
    Complete,
    Fail,
    Flow,
    Goto,
    StepContext,
    WaitEvent,
)
from tripwright.engine.records import JournalKind
from tripwright.engine.retry import RetryPolicy
from tripwright.errors import DefinitionError, FinalError

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

Action = Callable[["SagaContext"], Awaitable[Any]]
Compensation = Callable[["SagaContext"], Awaitable[Any]]

COMPENSATE = "saga:compensate"
STUCK = "saga:stuck"
OPERATOR = "saga:operator"
FINISH = "saga:finish"
RETRY_EVENT = "saga.retry"
RESOLVE_EVENT = "saga.resolve"


@dataclass(frozen=True, slots=True)
class Join:
    """How a parallel group joins: ``all``, ``any``, ``at_least`` n, or a ``race``."""

    kind: Literal["all", "any", "at_least", "race"]
    n: int = 1

    def needed(self, branches: int) -> int:
        if self.kind == "all":
            return branches
        if self.kind == "at_least":
            return self.n
        return 1


ALL = Join("all")
ANY = Join("any")
#: The first branch to succeed wins; the other branches are stopped and compensated.
RACE = Join("race")


def at_least(n: int) -> Join:
    """Join once ``n`` branches succeeded."""
    if n < 1:
        raise DefinitionError(f"at_least needs n >= 1, not {n}")
    return Join("at_least", n)


@dataclass(frozen=True, slots=True)
class SagaStep:
    """A saga step (or a parallel branch): an action and what undoes it."""

    name: str
    action: Action
    compensate: Compensation | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    pivot: bool = False
    readonly: bool = False
    #: Seconds after completion that what the step holds expires (a fare or room hold),
    #: unless the saga reaches its pivot first; on expiry the saga compensates.
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Wait durably for an external event (a signal), optionally with a timeout.

    The event's payload becomes the step's result. A timeout before the pivot compensates
    the saga; after it, the run is parked for an operator.
    """

    name: str
    event: str
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ParallelGroup:
    """Branches that run at once and join by a policy."""

    name: str
    branches: tuple[SagaStep, ...]
    join: Join = ALL
    timeout: float | None = None


Element = SagaStep | ParallelGroup | WaitFor
DEADLINE_PREFIX = "deadline:"


def branch(
    name: str,
    action: Action,
    *,
    compensate: Compensation | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    readonly: bool = False,
) -> SagaStep:
    """A branch of a parallel group."""
    return SagaStep(name, action, compensate, retry, timeout, readonly=readonly)


@dataclass(frozen=True, slots=True)
class Problem:
    """A finding of :meth:`Saga.validate`."""

    severity: Literal["error", "warning"]
    element: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.element}: {self.message}"


class SagaContext:
    """What a saga action or compensation sees.

    ``data`` is the saga's own JSON working state (committed with each step); ``results``
    holds what earlier steps returned, by step name.
    """

    __slots__ = ("_ctx", "forward_key", "idempotency_key", "step")

    def __init__(
        self, ctx: StepContext, *, step: str, key: str, forward_key: str | None = None
    ) -> None:
        self._ctx = ctx
        self.step = step
        self.idempotency_key = key
        self.forward_key = forward_key

    @property
    def run_id(self) -> str:
        return self._ctx.run_id

    @property
    def input(self) -> Any:
        return self._ctx.input

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self._ctx.context.setdefault("data", {})
        return data

    @property
    def results(self) -> dict[str, Any]:
        results: dict[str, Any] = self._ctx.context.setdefault("results", {})
        return results

    @property
    def attempt(self) -> int:
        return self._ctx.attempt

    @property
    def correlation_id(self) -> str:
        return self._ctx.correlation_id

    @property
    def clock(self) -> Any:
        return self._ctx.clock

    def publish(self, topic: str, type: str, data: Any, *, subject: str | None = None) -> str:
        """Queue an event in the outbox, committed with this step."""
        return self._ctx.publish(topic, type, data, subject=subject)

    def note(self, message: str, **data: Any) -> None:
        self._ctx.note(message, **data)


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
        readonly: bool = False,
        deadline: float | None = None,
    ) -> SagaStep:
        """Append a step. ``pivot=True`` marks the point of no return;
        ``readonly=True`` declares a step without side effects (it needs no compensation);
        ``deadline`` is how long what it holds stays valid (see :class:`SagaStep`)."""
        if deadline is not None and not deadline > 0:
            raise DefinitionError("a deadline must be > 0", flow=self.name, step=name)
        element = SagaStep(name, action, compensate, retry, timeout, pivot, readonly, deadline)
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
        self, name: str, *branches: SagaStep, join: Join = ALL, timeout: float | None = None
    ) -> ParallelGroup:
        """Append a parallel group of branches (see :func:`branch`) joined by ``join``."""
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
        group = ParallelGroup(name, tuple(branches), join, timeout)
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
        for index, element in enumerate(self._elements):
            if isinstance(element, SagaStep) and element.pivot:
                return index
        return None

    def element(self, name: str) -> Element:
        for element in self._elements:
            if element.name == name:
                return element
        raise DefinitionError(f"unknown saga step {name!r}", flow=self.name, step=name)

    # -- checks -----------------------------------------------------------------------
    def validate(self) -> list[Problem]:
        """Problems with the definition: errors make it unrunnable, warnings are risks."""
        problems: list[Problem] = []
        if not self._elements:
            problems.append(Problem("error", self.name, "the saga has no steps"))
            return problems
        pivots = [e.name for e in self._elements if isinstance(e, SagaStep) and e.pivot]
        if len(pivots) > 1:
            problems.append(
                Problem("error", pivots[1], f"a saga has one pivot; also marked: {pivots[0]}")
            )
        for element in self._elements:
            if (
                isinstance(element, SagaStep)
                and element.deadline is not None
                and element.timeout is not None
                and element.deadline <= element.timeout
            ):
                problems.append(
                    Problem(
                        "error",
                        element.name,
                        f"deadline {element.deadline:g}s is not longer than the step's "
                        f"timeout {element.timeout:g}s",
                    )
                )
            if (
                isinstance(element, SagaStep)
                and element.deadline is not None
                and self.pivot_index is not None
                and self._elements.index(element) >= self.pivot_index
            ):
                problems.append(
                    Problem("warning", element.name, "a deadline only applies before the pivot")
                )
        end = self.pivot_index if self.pivot_index is not None else len(self._elements)
        for element in self._elements[:end]:
            if isinstance(element, WaitFor):
                continue
            for item in element.branches if isinstance(element, ParallelGroup) else (element,):
                if item.compensate is None and not item.readonly:
                    where = (
                        f"{element.name}/{item.name}"
                        if isinstance(element, ParallelGroup)
                        else item.name
                    )
                    problems.append(
                        Problem(
                            "warning",
                            where,
                            "side-effecting step before the pivot has no compensation "
                            "(mark it readonly=True if it changes nothing)",
                        )
                    )
        return problems

    # -- compilation ------------------------------------------------------------------
    def to_flow(self) -> Flow:
        """The engine flow that runs this saga (built once)."""
        if self._flow is not None:
            return self._flow
        errors = [p for p in self.validate() if p.severity == "error"]
        if errors:
            raise DefinitionError("; ".join(str(p) for p in errors), flow=self.name)
        flow = Flow(self.name, self.version, description=self.description, on_cancel=COMPENSATE)
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
        flow.add_step(STUCK, self._stuck, retry=RetryPolicy(max_attempts=1))
        flow.add_step(OPERATOR, self._operator, retry=RetryPolicy(max_attempts=1))
        flow.add_step(FINISH, self._finish)
        self._flow = flow
        return flow

    # -- engine steps -----------------------------------------------------------------
    def _runner(
        self, element: Element, following: str | None
    ) -> Callable[[StepContext], Awaitable[Goto | Complete]]:
        next_step = _next_step(following)

        async def run_step(ctx: StepContext) -> Goto | Complete:
            state = _saga_state(ctx)
            if _expired(ctx, state):
                return Goto(COMPENSATE)
            if isinstance(element, ParallelGroup):
                return await self._run_group(ctx, element, next_step)
            assert isinstance(element, SagaStep)
            result = await element.action(
                SagaContext(ctx, step=element.name, key=ctx.idempotency_key)
            )
            ctx.context.setdefault("results", {})[element.name] = result
            state["done"].append({"name": element.name, "key": ctx.idempotency_key})
            if element.deadline is not None and not state["pivoted"]:
                expires = ctx.now + element.deadline
                state.setdefault("deadlines", {})[element.name] = expires
                ctx.set_timer(f"{DEADLINE_PREFIX}{element.name}", at=expires)
            if element.pivot:
                state["pivoted"] = True
                _clear_deadlines(ctx, state)
            return _onward(ctx, next_step)

        return run_step

    def _waiter(self, element: WaitFor) -> Callable[[StepContext], Awaitable[Goto | WaitEvent]]:
        async def wait(ctx: StepContext) -> Goto | WaitEvent:
            state = _saga_state(ctx)
            if _expired(ctx, state):
                return Goto(COMPENSATE)
            # A hold's deadline wakes the wait too.
            names = (element.event, *(DEADLINE_PREFIX + n for n in state.get("deadlines", {})))
            return WaitEvent(names=names, timeout=element.timeout, then=f"got:{element.name}")

        return wait

    def _receiver(
        self, element: WaitFor, following: str | None
    ) -> Callable[[StepContext], Awaitable[Goto | Complete]]:
        next_step = _next_step(following)

        async def receive(ctx: StepContext) -> Goto | Complete:
            state = _saga_state(ctx)
            if _expired(ctx, state):
                return Goto(COMPENSATE)
            if ctx.event is None or ctx.event.name != element.event:
                raise FinalError(
                    f"no {element.event!r} within {element.timeout:g}s"
                    if ctx.timed_out and element.timeout is not None
                    else f"woken without {element.event!r}"
                )
            ctx.context.setdefault("results", {})[element.name] = ctx.event.payload
            state["done"].append({"name": element.name, "key": None, "signal": True})
            return _onward(ctx, next_step)

        return receive

    async def _run_group(
        self, ctx: StepContext, group: ParallelGroup, next_step: str
    ) -> Goto | Complete:
        state = _saga_state(ctx)
        keys = {b.name: f"{ctx.idempotency_key}/{b.name}" for b in group.branches}
        tasks = {
            b.name: asyncio.ensure_future(self._call_branch(ctx, group, b, keys[b.name]))
            for b in group.branches
        }
        if group.join.kind == "race":
            winner = await _first_success(tasks, [b.name for b in group.branches])
            in_flight = [n for n, t in tasks.items() if not t.done()]
            for name in in_flight:
                tasks[name].cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            if winner is None:
                state["failure"] = _group_failure(group, tasks)
                return Goto(COMPENSATE)
            # Losers that succeeded, and those stopped mid-call (they may have taken
            # effect), are compensated by the next (durable) step.
            losers = [n for n in keys if n != winner and (n in in_flight or not _failed(tasks[n]))]
            ctx.context.setdefault("results", {})[group.name] = {winner: tasks[winner].result()}
            state["done"].append({"name": group.name, "branches": {winner: keys[winner]}})
            state["race_losers"] = {n: keys[n] for n in losers}
            return Goto(f"race:{group.name}")
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        succeeded = [n for n in keys if not _failed(tasks[n])]
        state["done"].append({"name": group.name, "branches": {n: keys[n] for n in succeeded}})
        if len(succeeded) < group.join.needed(len(group.branches)):
            state["failure"] = _group_failure(group, tasks)
            return Goto(COMPENSATE)
        ctx.context.setdefault("results", {})[group.name] = {
            n: tasks[n].result() for n in succeeded
        }
        return _onward(ctx, next_step)

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
            return _onward(ctx, next_step)

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
        element = self.element(item["name"])
        if isinstance(element, WaitFor):
            pass  # waiting took nothing: nothing to undo
        elif isinstance(element, ParallelGroup):
            by_name = {b.name: b for b in element.branches}
            for name, key in reversed(list(item["branches"].items())):
                await _undo(ctx, by_name[name].compensate, f"{element.name}/{name}", key)
        else:
            await _undo(ctx, element.compensate, element.name, item["key"])
        compensated.append(item["name"])
        ctx.record(
            JournalKind.COMPENSATION,
            step=item["name"],
            branches=list(item.get("branches", {})) or None,
        )
        return Goto(COMPENSATE)

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
        key = idempotency_key(ctx.run_id, engine_step, 0)
        element = self.element(name)
        if isinstance(element, WaitFor):
            return
        if isinstance(element, ParallelGroup):
            branches = {b.name: f"{key}/{b.name}" for b in element.branches}
            state["done"].append({"name": name, "branches": branches, "in_doubt": True})
        else:
            state["done"].append({"name": name, "key": key, "in_doubt": True})

    async def _stuck(self, ctx: StepContext) -> WaitEvent:
        state = _saga_state(ctx)
        failure = ctx.failure or {}
        state["attention"] = failure
        ctx.note("needs_attention", failure=failure)
        return WaitEvent(names=(RETRY_EVENT, RESOLVE_EVENT), then=OPERATOR, attention=True)

    async def _operator(self, ctx: StepContext) -> Goto | WaitEvent:
        state = _saga_state(ctx)
        attention = state.pop("attention", None) or {}
        stuck = str(attention.get("step") or COMPENSATE)
        assert ctx.event is not None
        ctx.note(f"operator {ctx.event.name}", step=stuck)
        if ctx.event.name == RETRY_EVENT:
            # A wait that timed out is retried by waiting again.
            return Goto("step:" + stuck[4:] if stuck.startswith("got:") else stuck)
        # Resolved by hand: treat the stuck step as done and carry on after it.
        if stuck == COMPENSATE:
            pending = [d for d in state["done"] if d["name"] not in state["compensated"]]
            if pending:
                state["compensated"].append(pending[-1]["name"])
            return Goto(COMPENSATE)
        if stuck.startswith("race:"):
            state.pop("race_losers", None)
        name = stuck.split(":", 1)[1]
        names = [e.name for e in self._elements]
        if stuck.startswith(("step:", "got:")):
            state["done"].append({"name": name, "key": None, "resolved": True})
        index = names.index(name)
        return Goto(f"step:{names[index + 1]}" if index + 1 < len(names) else FINISH)

    async def _finish(self, ctx: StepContext) -> Complete:
        return _complete(ctx)

    # -- diagram ----------------------------------------------------------------------
    def to_mermaid(self) -> str:
        """A Mermaid flowchart: steps in order, groups as subgraphs, compensations dashed,
        the pivot marked."""
        lines = ["flowchart TD", "  start((start))"]
        previous = "start"
        for element in self._elements:
            node = _node_id(element.name)
            if isinstance(element, ParallelGroup):
                lines.append(
                    f'  subgraph {node}["{element.name} (join: {_join_label(element.join)})"]'
                )
                for item in element.branches:
                    lines.append(f'    {node}_{_node_id(item.name)}["{item.name}"]')
                lines.append("  end")
                for item in element.branches:
                    if item.compensate is not None:
                        undo = f"{node}_{_node_id(item.name)}_undo"
                        lines.append(f'  {undo}(["undo {item.name}"])')
                        lines.append(f"  {node}_{_node_id(item.name)} -.-> {undo}")
            elif isinstance(element, WaitFor):
                wait = f" ≤ {element.timeout:g}s" if element.timeout else ""
                lines.append(f'  {node}[/"wait {element.event}{wait}"/]')
            else:
                label = f"{element.name} ⟂ pivot" if element.pivot else element.name
                if element.deadline is not None:
                    label += f" ⏳ {element.deadline:g}s"
                shape = f'{{{{"{label}"}}}}' if element.pivot else f'["{label}"]'
                lines.append(f"  {node}{shape}")
                if element.compensate is not None:
                    lines.append(f'  {node}_undo(["undo {element.name}"])')
                    lines.append(f"  {node} -.-> {node}_undo")
            lines.append(f"  {previous} --> {node}")
            previous = node
        lines.append("  done((done))")
        lines.append(f"  {previous} --> done")
        return "\n".join(lines) + "\n"


def _saga_state(ctx: StepContext) -> dict[str, Any]:
    state: dict[str, Any] = ctx.context.setdefault(
        "saga", {"done": [], "compensated": [], "pivoted": False, "failure": None}
    )
    return state


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


def _expired(ctx: StepContext, state: dict[str, Any]) -> bool:
    """Whether a hold's deadline passed before the pivot; if so, record the failure."""
    if state.get("pivoted"):
        return False
    late = sorted(n for n, t in state.get("deadlines", {}).items() if t <= ctx.now)
    if not late:
        return False
    state["failure"] = {
        "step": f"step:{late[0]}",
        "error": {"type": "DeadlineExpired", "message": f"the hold of {late[0]} expired"},
    }
    ctx.record(JournalKind.NOTE, message="deadline expired", steps=late)
    return True


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
            "message": f"{group.name}: join {_join_label(group.join)} not reached",
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


def _join_label(join: Join) -> str:
    return f"at_least {join.n}" if join.kind == "at_least" else join.kind


def _node_id(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
