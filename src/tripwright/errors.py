"""Exceptions raised by Tripwright.

Every exception derives from :class:`TripwrightError`; most also inherit the builtin they
resemble, so ``except LookupError`` keeps working::

    TripwrightError
    ├── ConfigurationError (ValueError)         bad settings or URLs
    ├── DefinitionError (ValueError)            a malformed flow definition
    │   └── StatechartError                     a malformed statechart (element id, line)
    ├── UnknownFlowError (LookupError)          no flow registered under that name/version
    ├── UnknownEventError (ValueError)          no transition of a statechart can take that event
    ├── RunNotFoundError (LookupError)          no run with that id
    ├── ContextNotSerializableError (TypeError) run context or payload is not JSON
    ├── InvalidRunStateError (RuntimeError)     operation not allowed in the run's status
    ├── LeaseLostError (RuntimeError)           another worker owns the run now
    ├── StepTimeoutError (TimeoutError)         a step exceeded its timeout
    ├── FinalError                              raised by a step: fail now, never retry
    │   └── StatechartLoopError (RuntimeError)  a statechart macrostep did not end
    ├── StoreError (RuntimeError)               a storage backend failed
    │   ├── StoreClosedError                    the store was closed
    │   ├── StoreDataError (ValueError)         the database rejected a value
    │   └── SchemaError                         the schema is missing or out of date
    ├── EnvelopeError (ValueError)              a message is not a valid CloudEvents envelope
    ├── EventSchemaError (ValueError)           an event's data or version does not fit its type
    ├── DeadLetterNotFoundError (LookupError)   no dead letter with that id
    └── TransportError (ConnectionError)        an event transport (broker) failed
        └── TransportClosedError                the transport was closed or never connected

Backend errors (``sqlite3``, ``asyncpg``, ``aio_pika``, ``nats``) are translated into
:class:`StoreError` or :class:`TransportError` at the adapter boundary, so no flow ever
handles a driver exception.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "ContextNotSerializableError",
    "DeadLetterNotFoundError",
    "DefinitionError",
    "EnvelopeError",
    "EventSchemaError",
    "FinalError",
    "InvalidRunStateError",
    "LeaseLostError",
    "RunNotFoundError",
    "SchemaError",
    "StatechartError",
    "StatechartLoopError",
    "StepTimeoutError",
    "StoreClosedError",
    "StoreDataError",
    "StoreError",
    "TransportClosedError",
    "TransportError",
    "TripwrightError",
    "UnknownEventError",
    "UnknownFlowError",
]


class TripwrightError(Exception):
    """Root of every exception Tripwright raises; carries optional run context."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        flow: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id
        self.flow = flow
        self.step = step

    def __str__(self) -> str:
        where = [
            f"{label}={value}"
            for label, value in (("run", self.run_id), ("flow", self.flow), ("step", self.step))
            if value is not None
        ]
        return f"{self.message} ({', '.join(where)})" if where else self.message

    def context(self) -> dict[str, Any]:
        """The error as a JSON-friendly dict, as journaled."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "run_id": self.run_id,
            "flow": self.flow,
            "step": self.step,
        }


class ConfigurationError(TripwrightError, ValueError):
    """Settings, a URL or an argument are not usable."""


class DefinitionError(TripwrightError, ValueError):
    """A flow definition is malformed (names, targets, policies)."""


class StatechartError(DefinitionError):
    """A statechart definition is malformed; names the element and its source line."""

    def __init__(
        self,
        message: str,
        *,
        element: str | None = None,
        line: int | None = None,
        flow: str | None = None,
    ) -> None:
        super().__init__(message, flow=flow)
        self.element = element
        self.line = line

    def __str__(self) -> str:
        text = super().__str__()
        return f"line {self.line}: {text}" if self.line is not None else text

    def context(self) -> dict[str, Any]:
        return {**super().context(), "element": self.element, "line": self.line}


class UnknownEventError(TripwrightError, ValueError):
    """An event sent to a statechart run that no transition of its chart can ever take."""

    def __init__(
        self,
        message: str,
        *,
        event: str,
        run_id: str | None = None,
        flow: str | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, flow=flow)
        self.event = event

    def context(self) -> dict[str, Any]:
        return {**super().context(), "event": self.event}


class UnknownFlowError(TripwrightError, LookupError):
    """No flow is registered under the requested name (and version)."""


class RunNotFoundError(TripwrightError, LookupError):
    """No run exists with the given id."""


class ContextNotSerializableError(TripwrightError, TypeError):
    """A run's context, input, result or a payload cannot be encoded as JSON."""


class InvalidRunStateError(TripwrightError, RuntimeError):
    """The operation is not allowed in the run's current status."""


class LeaseLostError(TripwrightError, RuntimeError):
    """The worker no longer holds the run's lease; its checkpoint was refused."""


class StepTimeoutError(TripwrightError, TimeoutError):
    """A step did not finish within its timeout."""


class FinalError(TripwrightError):
    """Raise from a step to fail it at once: the retry policy is not consulted."""


class StatechartLoopError(FinalError, RuntimeError):
    """A statechart macrostep ran past its microstep limit without becoming stable.

    An eventless-transition cycle, a ``raise`` or ``send`` chain or a failing eventless
    guard can keep one macrostep going forever. Past ``limit`` steps the session stops:
    ``chart`` and ``session`` name it, ``configuration`` is where it was, ``stimulus``
    what started the macrostep, ``recent`` its last transitions (oldest first) and
    ``last_error`` the last error event it raised, if any. As a :class:`FinalError` it
    fails a durable run at once, without retries.
    """

    def __init__(
        self,
        *,
        chart: str,
        session: str,
        configuration: tuple[str, ...],
        limit: int,
        stimulus: str,
        recent: tuple[str, ...],
        last_error: str | None = None,
    ) -> None:
        where = ", ".join(configuration) or "(none)"
        moves = "; ".join(recent) or "none (only events no transition takes)"
        message = (
            f"statechart {chart!r} (session {session}) did not become stable within "
            f"{limit} microsteps of one macrostep ({stimulus}); configuration: {where}; "
            f"last transitions: {moves}"
        )
        if last_error is not None:
            message += f"; last error: {last_error}"
        message += (
            ". Some eventless transition, raise or send keeps the macrostep going; if the "
            "chart needs longer macrosteps, raise its max_microsteps"
        )
        super().__init__(message, flow=chart)
        self.chart = chart
        self.session = session
        self.configuration = configuration
        self.limit = limit
        self.stimulus = stimulus
        self.recent = recent
        self.last_error = last_error

    def context(self) -> dict[str, Any]:
        return {
            **super().context(),
            "session": self.session,
            "configuration": list(self.configuration),
            "limit": self.limit,
            "stimulus": self.stimulus,
            "recent": list(self.recent),
            "last_error": self.last_error,
        }


class StoreError(TripwrightError, RuntimeError):
    """The storage backend failed; the driver's exception is the ``__cause__``."""


class StoreClosedError(StoreError):
    """The store was used after :meth:`close`."""


class StoreDataError(StoreError, ValueError):
    """The database rejected a value (too long, a character it cannot store, ...)."""


class SchemaError(StoreError):
    """The database schema is missing or older than this version of Tripwright."""


class EnvelopeError(TripwrightError, ValueError):
    """A message is not a valid CloudEvents 1.0 envelope (``reason`` says why)."""


class EventSchemaError(TripwrightError, ValueError):
    """An event's data does not fit its type, or its schema version has no upcaster path."""


class DeadLetterNotFoundError(TripwrightError, LookupError):
    """No dead letter exists with the given id."""


class TransportError(TripwrightError, ConnectionError):
    """An event transport failed (connect, publish, consume); the driver's exception is the
    ``__cause__``. Nothing committed is lost: the outbox relay publishes again."""


class TransportClosedError(TransportError):
    """The transport was used before :meth:`connect` or after :meth:`close`."""
