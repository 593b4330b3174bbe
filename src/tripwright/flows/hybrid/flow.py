"""The machine's engine flow in a hybrid: a statechart flow whose ``saga`` invokes start
child runs, whose ``event`` sends publish typed events, whose sends to ``#_<invokeid>``
signal a saga, and whose cancel cancels its sagas.

``Engine.cancel`` (``tripwright runs cancel RUN --flows ...``) of a machine does not exit
its states: the machine's run goes on at its clean-up step, :data:`CANCEL`, which cancels
every saga the machine is running (each compensates) and ends the machine as cancelled.
Run control shows the machine's configuration and its running sagas.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tripwright.bus.event import Event
from tripwright.engine.flow import Cancelled, StepContext
from tripwright.engine.records import RunRecord
from tripwright.engine.retry import RetryPolicy
from tripwright.engine.summary import Position
from tripwright.flows.hybrid.invoker import INVOKED_KEY, SAGA, SagaInvoker, SagaSends
from tripwright.flows.hybrid.publishing import EVENT, TypedEvents
from tripwright.flows.saga import Saga
from tripwright.flows.statechart.durable import StatechartFlow
from tripwright.flows.statechart.model import Statechart

__all__ = ["CANCEL", "HybridFlow"]

#: The machine's clean-up step: cancel its sagas, then end as cancelled.
CANCEL = "hybrid:cancel"


class HybridFlow(StatechartFlow):
    """A statechart flow serving ``saga`` invokes and ``event`` sends (see the package)."""

    def __init__(
        self,
        chart: Statechart,
        *,
        sagas: Sequence[Saga] = (),
        publishes: Iterable[type[Event]] = (),
        description: str = "",
    ) -> None:
        self.sagas = SagaInvoker(sagas)
        super().__init__(
            chart,
            invokers={SAGA: self.sagas},
            processors={EVENT: TypedEvents(publishes), "": SagaSends(self.sagas)},
            description=description,
        )
        self.add_step(CANCEL, self._cancel, retry=RetryPolicy(max_attempts=3))
        self.on_cancel = CANCEL

    def position_of(self, run: RunRecord) -> Position:
        """The machine's configuration, with its running sagas by invoke id."""
        position = super().position_of(run)
        runs: dict[str, Any] = (run.context.get(INVOKED_KEY) or {}).get("runs") or {}
        details = {**position.details, "sagas": {k: dict(v) for k, v in sorted(runs.items())}}
        return Position("hybrid", position.at, details)

    async def _cancel(self, ctx: StepContext) -> Cancelled:
        error = (ctx.failure or {}).get("error") or {}
        reason = str(error.get("message") or "cancelled")
        box: dict[str, Any] = ctx.context.get(INVOKED_KEY) or {}
        runs: dict[str, Any] = box.get("runs") or {}
        for invokeid, entry in sorted(runs.items()):
            saga = self.sagas.sagas.get(entry["saga"])
            ctx.cancel_child(
                entry["run"],
                f"machine cancelled: {reason}",
                flow=saga.to_flow() if saga is not None else None,
            )
            ctx.note("saga cancelled", invokeid=invokeid, saga=entry["saga"], run=entry["run"])
        runs.clear()
        return Cancelled(reason)
