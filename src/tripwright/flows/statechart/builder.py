"""The typed Python API: build a :class:`~.model.Statechart` from nested calls.

::

    from tripwright.flows.statechart import after, final, on, state, statechart

    def has_seats(ctx):
        return ctx.data["seats"] > 0

    booking = statechart(
        "booking",
        state("quoted", on("hold", "held", cond=has_seats)),
        state("held", on("pay", "paid"), after(900, "expired")),
        final("paid"),
        final("expired"),
        data={"seats": 2},
    )

Guards and actions are Python callables given an
:class:`~.context.ActionContext`, or model elements (:class:`~.model.Assign`,
:class:`~.model.Send`, ...), or, for guards, Python expressions over the datamodel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from tripwright.errors import StatechartError
from tripwright.flows.statechart.context import ActionContext
from tripwright.flows.statechart.model import (
    Assign,
    Call,
    Cancel,
    Condition,
    Content,
    Data,
    DoneData,
    Executable,
    Foreach,
    If,
    Invoke,
    Log,
    Param,
    Raise,
    Script,
    Send,
    State,
    Statechart,
    StateKind,
    Transition,
    parse_delay,
)

__all__ = [
    "Action",
    "After",
    "after",
    "always",
    "final",
    "history",
    "on",
    "parallel",
    "state",
    "statechart",
]

#: An action: a model element or a Python callable given the context.
Action: TypeAlias = "Executable | Callable[[ActionContext], object]"
Actions: TypeAlias = "Action | Iterable[Action] | None"
Targets: TypeAlias = "str | Iterable[str] | None"

_EXECUTABLE = (Raise, Send, Cancel, Assign, Log, If, Foreach, Script, Call)


@dataclass(frozen=True, slots=True)
class After:
    """A timer: ``transition`` is taken ``delay`` seconds after the state is entered,
    unless the state is left first (leaving it cancels the timer)."""

    delay: float
    transition: Transition


def _actions(actions: Actions) -> tuple[Executable, ...]:
    if actions is None:
        return ()
    items: Iterable[Action] = (
        [actions] if isinstance(actions, _EXECUTABLE) or callable(actions) else actions
    )
    out: list[Executable] = []
    for item in items:
        if isinstance(item, _EXECUTABLE):
            out.append(item)
        elif callable(item):
            out.append(Call(item))
        else:
            raise StatechartError(f"not an action: {item!r}")
    return tuple(out)


def _targets(targets: Targets) -> tuple[str, ...]:
    if targets is None:
        return ()
    if isinstance(targets, str):
        return tuple(targets.split())
    return tuple(targets)


def _events(events: str | Iterable[str]) -> tuple[str, ...]:
    result = tuple(events.split()) if isinstance(events, str) else tuple(events)
    if not result:
        raise StatechartError("on() needs at least one event descriptor (use always())")
    return result


def _data(data: Mapping[str, Any] | Iterable[Data] | None) -> tuple[Data, ...]:
    if data is None:
        return ()
    if isinstance(data, Mapping):
        return tuple(Data(id=key, value=value) for key, value in data.items())
    return tuple(data)


def on(
    events: str | Iterable[str],
    target: Targets = None,
    *,
    cond: Condition | None = None,
    actions: Actions = None,
    internal: bool = False,
) -> Transition:
    """A transition taken on ``events`` (space-separated descriptors, or a list)."""
    return Transition(
        events=_events(events),
        cond=cond,
        targets=_targets(target),
        type="internal" if internal else "external",
        actions=_actions(actions),
    )


def always(
    target: Targets = None,
    *,
    cond: Condition | None = None,
    actions: Actions = None,
    internal: bool = False,
) -> Transition:
    """An eventless transition: taken as soon as ``cond`` holds (or at once, without one)."""
    return Transition(
        cond=cond,
        targets=_targets(target),
        type="internal" if internal else "external",
        actions=_actions(actions),
    )


def after(
    delay: float | str,
    target: Targets = None,
    *,
    cond: Condition | None = None,
    actions: Actions = None,
) -> After:
    """A timer: after ``delay`` (seconds or ``"15m"``) in the state, take this transition."""
    return After(
        delay=parse_delay(delay),
        transition=Transition(targets=_targets(target), cond=cond, actions=_actions(actions)),
    )


Part: TypeAlias = "State | Transition | Invoke | After"


def _compose(
    state_id: str,
    kind: StateKind,
    parts: Iterable[Part],
    *,
    initial: Targets,
    on_entry: Actions,
    on_exit: Actions,
    data: Mapping[str, Any] | Iterable[Data] | None,
) -> State:
    children: list[State] = []
    transitions: list[Transition] = []
    invokes: list[Invoke] = []
    entry = list(_actions(on_entry))
    exit_ = list(_actions(on_exit))
    timers = 0
    for part in parts:
        if isinstance(part, State):
            children.append(part)
        elif isinstance(part, Transition):
            transitions.append(part)
        elif isinstance(part, Invoke):
            invokes.append(part)
        elif isinstance(part, After):
            timers += 1
            name = f"tripwright.after.{state_id}.{timers}"
            entry.append(Send(event=name, id=name, delay=part.delay))
            exit_.append(Cancel(sendid=name))
            transitions.append(
                Transition(
                    events=(name,),
                    cond=part.transition.cond,
                    targets=part.transition.targets,
                    actions=part.transition.actions,
                )
            )
        else:
            raise StatechartError(
                f"state {state_id!r}: not a state, transition, invoke or timer: {part!r}",
                element=state_id,
            )
    initial_targets = _targets(initial)
    if initial_targets and kind is not StateKind.STATE:
        raise StatechartError(f"only compound states have an initial ({state_id!r})")
    return State(
        id=state_id,
        kind=kind,
        children=tuple(children),
        initial=Transition(targets=initial_targets) if initial_targets else None,
        transitions=tuple(transitions),
        on_entry=(tuple(entry),) if entry else (),
        on_exit=(tuple(exit_),) if exit_ else (),
        invokes=tuple(invokes),
        datamodel=_data(data),
    )


def state(
    state_id: str,
    *parts: Part,
    initial: Targets = None,
    on_entry: Actions = None,
    on_exit: Actions = None,
    data: Mapping[str, Any] | Iterable[Data] | None = None,
) -> State:
    """A state: atomic, or compound when ``parts`` include child states.

    ``parts`` are child states, transitions (:func:`on`, :func:`always`), timers
    (:func:`after`) and :class:`~.model.Invoke` elements, in document order.
    ``initial`` names the initial child (default: the first child state).
    """
    return _compose(
        state_id,
        StateKind.STATE,
        parts,
        initial=initial,
        on_entry=on_entry,
        on_exit=on_exit,
        data=data,
    )


def parallel(
    state_id: str,
    *parts: Part,
    on_entry: Actions = None,
    on_exit: Actions = None,
    data: Mapping[str, Any] | Iterable[Data] | None = None,
) -> State:
    """A parallel state: all its child states (regions) are active together."""
    return _compose(
        state_id,
        StateKind.PARALLEL,
        parts,
        initial=None,
        on_entry=on_entry,
        on_exit=on_exit,
        data=data,
    )


def final(
    state_id: str,
    *,
    donedata: Mapping[str, str] | Content | DoneData | None = None,
    on_entry: Actions = None,
    on_exit: Actions = None,
) -> State:
    """A final state. ``donedata`` maps names to expressions, or is a Content/DoneData."""
    done: DoneData | None
    if donedata is None or isinstance(donedata, DoneData):
        done = donedata
    elif isinstance(donedata, Content):
        done = DoneData(content=donedata)
    else:
        done = DoneData(params=tuple(Param(k, expr=v) for k, v in donedata.items()))
    return State(
        id=state_id,
        kind=StateKind.FINAL,
        on_entry=(_actions(on_entry),) if on_entry is not None else (),
        on_exit=(_actions(on_exit),) if on_exit is not None else (),
        donedata=done,
    )


def history(
    state_id: str, default: Targets = None, *, deep: bool = False, actions: Actions = None
) -> State:
    """A history pseudo-state (shallow, or ``deep``) with its default targets."""
    targets = _targets(default)
    return State(
        id=state_id,
        kind=StateKind.HISTORY,
        history="deep" if deep else "shallow",
        transitions=(Transition(targets=targets, actions=_actions(actions)),)
        if targets or actions
        else (),
    )


def statechart(
    name: str,
    *states: State,
    initial: Targets = None,
    data: Mapping[str, Any] | Iterable[Data] | None = None,
    script: str | None = None,
    binding: str = "early",
    version: int = 1,
    max_microsteps: int | None = None,
) -> Statechart:
    """A statechart of top-level ``states`` (the first is initial unless ``initial``);
    ``max_microsteps`` bounds one macrostep (see :class:`~.model.Statechart`)."""
    if binding not in ("early", "late"):
        raise StatechartError(f"binding must be 'early' or 'late', not {binding!r}")
    initial_targets = _targets(initial)
    return Statechart(
        name=name,
        states=tuple(states),
        initial=Transition(targets=initial_targets) if initial_targets else None,
        datamodel=_data(data),
        script=Script(script) if script is not None else None,
        binding="early" if binding == "early" else "late",
        version=version,
        max_microsteps=max_microsteps,
    )
