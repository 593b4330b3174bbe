"""The context a Python guard or action receives from the interpreter."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, Protocol

from tripwright.flows.statechart.datamodel import RESERVED
from tripwright.flows.statechart.events import Event

__all__ = ["ActionContext", "DataView"]


class _Session(Protocol):
    """What the context needs from the interpreter running it."""

    session_id: str

    @property
    def current_event(self) -> Event | None: ...

    def namespace(self) -> dict[str, Any]: ...

    def data_names(self) -> list[str]: ...

    def is_active(self, state_id: str) -> bool: ...

    def raise_event(self, name: str, data: Any) -> None: ...

    def send_event(
        self,
        name: str,
        data: Any,
        *,
        delay: float,
        target: str | None,
        type: str | None,
        sendid: str | None,
    ) -> str: ...

    def cancel_send(self, sendid: str) -> None: ...

    def check_value(self, name: str, value: Any) -> None: ...


class DataView(MutableMapping[str, Any]):
    """The datamodel as a mapping: reads and writes go to the running session.

    Values written must be JSON (``dict``, ``list``, ``str``, numbers, ``bool``,
    ``None``): anything else raises, which fails the action (``error.execution``).
    """

    __slots__ = ("_session",)

    def __init__(self, session: _Session) -> None:
        self._session = session

    def __getitem__(self, key: str) -> Any:
        if key in RESERVED:
            raise KeyError(key)
        return self._session.namespace()[key]

    def __contains__(self, key: object) -> bool:
        return key not in RESERVED and key in self._session.namespace()

    def __setitem__(self, key: str, value: Any) -> None:
        self._session.check_value(key, value)
        self._session.namespace()[key] = value

    def __delitem__(self, key: str) -> None:
        if key in RESERVED:
            raise KeyError(key)
        del self._session.namespace()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._session.data_names())

    def __len__(self) -> int:
        return len(self._session.data_names())


class ActionContext:
    """Given to Python guards and actions: the datamodel, the event, ``In`` and sends.

    ``data`` is the datamodel (JSON values only). ``event`` is the event being processed
    (``None`` during the initial entry and eventless transitions that follow it). Actions
    may raise events on the internal queue, send events (optionally delayed, to a target)
    and cancel delayed sends; an exception from an action or a guard becomes an
    ``error.execution`` event (a failing guard counts as false).
    """

    __slots__ = ("_session", "data")

    def __init__(self, session: _Session) -> None:
        self._session = session
        self.data: MutableMapping[str, Any] = DataView(session)

    @property
    def event(self) -> Event | None:
        """The event being processed."""
        return self._session.current_event

    @property
    def session_id(self) -> str:
        """This session's id."""
        return self._session.session_id

    def In(self, state_id: str) -> bool:
        """Whether ``state_id`` is active."""
        return self._session.is_active(state_id)

    def raise_event(self, name: str, data: Any = None) -> None:
        """Put an internal event on the internal queue (processed in this macrostep)."""
        self._session.raise_event(name, data)

    def send(
        self,
        name: str,
        data: Any = None,
        *,
        delay: float = 0.0,
        target: str | None = None,
        type: str | None = None,
        id: str | None = None,
    ) -> str:
        """Send an event (see :class:`~.model.Send` for targets); returns its send id."""
        return self._session.send_event(
            name, data, delay=delay, target=target, type=type, sendid=id
        )

    def cancel(self, sendid: str) -> None:
        """Cancel a pending delayed send of this session."""
        self._session.cancel_send(sendid)
