"""What a saga definition is made of: steps, waits, parallel groups, joins, holds.

Re-exported by :mod:`tripwright.flows.saga`; the runtime lives there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from tripwright.engine.flow import StepContext
from tripwright.engine.retry import RetryPolicy
from tripwright.errors import DefinitionError
from tripwright.flows.problems import Problem

__all__ = [
    "ALL",
    "ANY",
    "DEADLINE_PREFIX",
    "RACE",
    "Action",
    "Compensation",
    "Element",
    "Expiry",
    "Holding",
    "Join",
    "ParallelGroup",
    "Problem",
    "SagaContext",
    "SagaStep",
    "WaitFor",
    "at_least",
    "branch",
    "check_hold",
]

Action: TypeAlias = Callable[["SagaContext"], Awaitable[Any]]
Compensation: TypeAlias = Callable[["SagaContext"], Awaitable[Any]]
#: What happens when a hold's deadline passes before the pivot.
Expiry: TypeAlias = Literal["compensate", "reacquire"]
DEADLINE_PREFIX = "deadline:"
#: How often an expired hold is re-acquired (by default) before the saga compensates.
DEFAULT_REACQUIRES = 3


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

    @property
    def label(self) -> str:
        return f"at_least {self.n}" if self.kind == "at_least" else self.kind


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
    #: unless the saga reaches its pivot first.
    deadline: float | None = None
    #: On expiry: ``compensate`` the saga, or ``reacquire`` the hold (release it, run the
    #: action again with a new key) up to ``max_reacquires`` times, then compensate.
    on_expiry: Expiry = "compensate"
    max_reacquires: int = DEFAULT_REACQUIRES
    #: A final pivot: the saga completes when it succeeds (nothing may follow it).
    final: bool = False


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Wait durably for an external event (a signal), optionally with a timeout.

    The event's payload becomes the step's result. A timeout before the pivot compensates
    the saga; after it, the run is parked for an operator.
    """

    name: str
    event: str
    timeout: float | None = None

    @property
    def pivot(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class ParallelGroup:
    """Branches that run at once and join by a policy; optionally a hold with a deadline
    (as for :class:`SagaStep`), covering every branch."""

    name: str
    branches: tuple[SagaStep, ...]
    join: Join = ALL
    timeout: float | None = None
    deadline: float | None = None
    on_expiry: Expiry = "compensate"
    max_reacquires: int = DEFAULT_REACQUIRES

    @property
    def pivot(self) -> bool:
        return False


Element: TypeAlias = SagaStep | ParallelGroup | WaitFor
#: Elements that can hold something with a deadline.
Holding: TypeAlias = SagaStep | ParallelGroup


def check_hold(
    flow: str, step: str, deadline: float | None, on_expiry: str, max_reacquires: int
) -> None:
    """Refuse a hold that cannot mean anything (checked when the element is declared)."""
    if deadline is not None and not deadline > 0:
        raise DefinitionError("a deadline must be > 0", flow=flow, step=step)
    if on_expiry not in ("compensate", "reacquire"):
        raise DefinitionError(
            f"on_expiry must be 'compensate' or 'reacquire', not {on_expiry!r}",
            flow=flow,
            step=step,
        )
    if on_expiry == "reacquire" and deadline is None:
        raise DefinitionError("on_expiry='reacquire' needs a deadline", flow=flow, step=step)
    if max_reacquires < 1:
        raise DefinitionError(
            f"max_reacquires must be >= 1, not {max_reacquires}", flow=flow, step=step
        )


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
