"""Event I/O processors: how a machine's sends reach targets outside it, by send type.

A ``send`` whose target is not the machine itself, its parent or one of its child
charts is an :class:`~.outputs.OutgoingEvent` for the host. The durable host hands it to
the :class:`Processor` registered for the send's ``type`` (``StatechartFlow(chart,
processors={...})``); whatever the processor does commits with the macrostep. Without
one, :data:`OUTBOX` queues an outbox message on the topic named by the target, of the
event's name and data, with the run as its subject.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from tripwright.flows.statechart.invokers import InvokeHost
from tripwright.flows.statechart.outputs import OutgoingEvent

__all__ = ["OUTBOX", "OutboxProcessor", "Processor"]


class Processor(ABC):
    """Delivers outgoing events of one send type; subclasses implement :meth:`send`."""

    @abstractmethod
    def send(self, host: InvokeHost, output: OutgoingEvent) -> None:
        """Deliver ``output`` with the macrostep's checkpoint."""


class OutboxProcessor(Processor):
    """An outbox message: topic = the target, type = the event's name, subject = the run."""

    def send(self, host: InvokeHost, output: OutgoingEvent) -> None:
        host.publish(output.target, output.event.name, output.event.data, subject=host.run_id)


#: The processor of send types nobody registered.
OUTBOX = OutboxProcessor()
