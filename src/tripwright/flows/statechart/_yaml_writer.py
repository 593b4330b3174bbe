"""Writing a statechart in its YAML form (see :mod:`tripwright.flows.statechart.yaml`)."""

from __future__ import annotations

from typing import Any

import yaml

from tripwright.errors import StatechartError
from tripwright.flows.statechart._scxml_writer import format_delay
from tripwright.flows.statechart._yaml_style import Dumper, timer_event
from tripwright.flows.statechart.model import (
    Assign,
    Call,
    Cancel,
    Condition,
    Content,
    Data,
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
)
from tripwright.flows.statechart.walk import not_writable, source_condition

__all__ = ["dump_yaml"]


# ---------------------------------------------------------------- writing


class _Writer:
    def __init__(self, chart: Statechart) -> None:
        self.chart = chart
        self.where = chart.name

    def fail_callable(self, what: str) -> StatechartError:
        return not_writable(self.chart, self.where, what)

    def cond(self, cond: Condition | None) -> str | None:
        return source_condition(self.chart, self.where, cond)

    def document(self) -> dict[str, Any]:
        chart = self.chart
        out: dict[str, Any] = {"statechart": chart.name}
        if chart.version != 1:
            out["version"] = chart.version
        if chart.initial is not None:
            if chart.initial.actions or chart.initial.cond is not None or chart.initial.events:
                raise StatechartError(
                    f"statechart {chart.name!r}: a top-level initial transition with actions "
                    "has no YAML form",
                    flow=chart.name,
                )
            out["initial"] = _join(chart.initial.targets)
        if chart.binding != "early":
            out["binding"] = chart.binding
        if chart.max_microsteps is not None:
            out["max_microsteps"] = chart.max_microsteps
        if chart.script is not None:
            out["script"] = chart.script.source
        if chart.datamodel:
            out["data"] = self.data(chart.datamodel)
        out["states"] = self.states(chart.states)
        return out

    def data(self, items: tuple[Data, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in items:
            if item.id in out:
                raise StatechartError(
                    f"statechart {self.chart.name!r}: duplicate data id {item.id!r} in "
                    f"{self.where!r} has no YAML form (data are a mapping by id)",
                    element=self.where,
                    flow=self.chart.name,
                )
            if item.expr is None and not isinstance(item.value, dict):
                out[item.id] = item.value
            else:
                spec: dict[str, Any] = {}
                if item.expr is not None:
                    spec["expr"] = item.expr
                if item.value is not None or item.expr is None:
                    spec["value"] = item.value
                out[item.id] = spec
        return out

    def states(self, states: tuple[State, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for state in states:
            self.where = state.id
            out[state.id] = self.state(state)
        return out

    def state(self, state: State) -> dict[str, Any]:
        if state.kind is StateKind.HISTORY:
            spec: dict[str, Any] = {"type": "history"}
            if state.history == "deep":
                spec["history"] = "deep"
            for transition in state.transitions:
                spec["default"] = self.target_or_transition(transition)
            return spec
        sugared = self.with_timers(state)
        if sugared is not None:
            return sugared
        return self.plain(state, state.on_entry, state.on_exit, state.transitions, {})

    def plain(
        self,
        state: State,
        entry: tuple[tuple[Executable, ...], ...],
        exit_: tuple[tuple[Executable, ...], ...],
        transitions: tuple[Transition, ...],
        timers: dict[str, Any],
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if state.kind is not StateKind.STATE:
            spec["type"] = state.kind.value
        if state.initial is not None:
            spec["initial"] = self.target_or_transition(state.initial)
        if state.datamodel:
            spec["data"] = self.data(state.datamodel)
        for key, blocks in (("entry", entry), ("exit", exit_)):
            if len(blocks) == 1:
                spec[key] = self.actions(blocks[0])
            elif blocks:
                spec[key] = [self.actions(block) for block in blocks]
        if timers:
            spec["after"] = timers
        if transitions:
            spec["on"] = [self.transition(t) for t in transitions]
        if state.invokes:
            spec["invoke"] = [self.invoke(i) for i in state.invokes]
        if state.donedata is not None:
            spec["donedata"] = self.payload(state.donedata.params, state.donedata.content)
        if state.children:
            spec["states"] = self.states(state.children)
            self.where = state.id
        return spec

    def with_timers(self, state: State) -> dict[str, Any] | None:
        """The state with ``after:`` sugar, when its timers are exactly what it means."""
        count = 0
        while any(t.events == (timer_event(state.id, count + 1),) for t in state.transitions):
            count += 1
        if not count or not state.on_entry or not state.on_exit:
            return None
        names = [timer_event(state.id, n) for n in range(1, count + 1)]
        entry, exit_ = state.on_entry[-1], state.on_exit[-1]
        timers = state.transitions[len(state.transitions) - count :]
        sends = entry[len(entry) - count :]
        if len(timers) != count or len(sends) != count or len(exit_) < count:
            return None
        after: dict[str, Any] = {}
        for name, send, transition in zip(names, sends, timers, strict=True):
            if not isinstance(send, Send) or send.delay is None:
                return None
            spec: dict[str, Any] = {}
            if transition.cond is not None:
                spec["cond"] = self.cond(transition.cond)
            if transition.targets:
                spec["target"] = _join(transition.targets)
            if transition.actions:
                spec["actions"] = self.actions(transition.actions)
            delay = format_delay(send.delay)
            if delay in after:
                return None
            after[delay] = spec["target"] if set(spec) == {"target"} else spec
            del name
        candidate = self.plain(
            state,
            _drop_tail(state.on_entry, count),
            _drop_tail(state.on_exit, count),
            state.transitions[: len(state.transitions) - count],
            after,
        )
        # Only use the sugar if reading it back gives exactly this state.
        from tripwright.flows.statechart.yaml import load_yaml

        reloaded = load_yaml(
            yaml.dump({"statechart": "x", "states": {state.id: candidate}}, Dumper=Dumper)
        )
        return candidate if reloaded.states[0] == state else None

    def target_or_transition(self, transition: Transition) -> Any:
        simple = not (transition.actions or transition.events or transition.cond is not None)
        if simple and transition.type == "external" and transition.targets:
            return _join(transition.targets)
        return self.transition(transition)

    def transition(self, transition: Transition) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if transition.events:
            spec["event"] = _join(transition.events)
        if transition.cond is not None:
            spec["cond"] = self.cond(transition.cond)
        if transition.targets:
            spec["target"] = _join(transition.targets)
        if transition.type != "external":
            spec["type"] = transition.type
        if transition.actions:
            spec["actions"] = self.actions(transition.actions)
        return spec

    def payload(self, params: tuple[Param, ...], content: Content | None) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if params:
            spec["params"] = self.params(params)
        if content is not None:
            spec["content"] = self.content(content)
        return spec

    def params(self, params: tuple[Param, ...]) -> Any:
        names = [p.name for p in params]
        if len(set(names)) == len(names) and all(
            p.location is None and p.expr is not None for p in params
        ):
            return {p.name: p.expr for p in params}
        out = []
        for param in params:
            item: dict[str, Any] = {"name": param.name}
            if param.expr is not None:
                item["expr"] = param.expr
            if param.location is not None:
                item["location"] = param.location
            out.append(item)
        return out

    @staticmethod
    def content(content: Content) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if content.expr is not None:
            spec["expr"] = content.expr
        if content.value is not None or content.expr is None:
            spec["value"] = content.value
        return spec

    def invoke(self, invoke: Invoke) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        for key in ("id", "idlocation", "typeexpr", "src", "srcexpr"):
            if getattr(invoke, key) is not None:
                spec[key] = getattr(invoke, key)
        if invoke.type != "scxml":
            spec["type"] = invoke.type
        if invoke.content is not None:
            where = self.where
            spec["content"] = _Writer(invoke.content).document()
            self.where = where
        if invoke.params:
            spec["params"] = self.params(invoke.params)
        if invoke.namelist:
            spec["namelist"] = list(invoke.namelist)
        if invoke.autoforward:
            spec["autoforward"] = True
        if invoke.finalize:
            spec["finalize"] = self.actions(invoke.finalize)
        return spec

    def actions(self, actions: tuple[Executable, ...]) -> list[dict[str, Any]]:
        return [self.action(action) for action in actions]

    def action(self, action: Executable) -> dict[str, Any]:
        if isinstance(action, Raise):
            return {"raise": action.event}
        if isinstance(action, Send):
            spec: dict[str, Any] = {}
            for key in (
                "event", "eventexpr", "target", "targetexpr", "type", "typeexpr", "id",
                "idlocation",
            ):  # fmt: skip
                if getattr(action, key) is not None:
                    spec[key] = getattr(action, key)
            if action.delay is not None:
                spec["delay"] = format_delay(action.delay)
            if action.delayexpr is not None:
                spec["delayexpr"] = action.delayexpr
            if action.namelist:
                spec["namelist"] = list(action.namelist)
            spec.update(self.payload(action.params, action.content))
            return {"send": spec}
        if isinstance(action, Cancel):
            if action.sendidexpr is None and action.sendid is not None:
                return {"cancel": action.sendid}
            body = {"sendid": action.sendid, "sendidexpr": action.sendidexpr}
            return {"cancel": {k: v for k, v in body.items() if v is not None}}
        if isinstance(action, Assign):
            spec = {"location": action.location}
            if action.expr is not None:
                spec["expr"] = action.expr
            if action.value is not None or action.expr is None:
                spec["value"] = action.value
            return {"assign": spec}
        if isinstance(action, Log):
            body = {"label": action.label, "expr": action.expr}
            return {"log": {k: v for k, v in body.items() if v is not None}}
        if isinstance(action, If):
            out: dict[str, Any] = {
                "if": [
                    {"cond": self.cond(cond), "actions": self.actions(body)}
                    for cond, body in action.branches
                ]
            }
            if action.orelse:
                out["else"] = self.actions(action.orelse)
            return out
        if isinstance(action, Foreach):
            spec = {"array": action.array, "item": action.item}
            if action.index is not None:
                spec["index"] = action.index
            spec["actions"] = self.actions(action.actions)
            return {"foreach": spec}
        if isinstance(action, Script):
            return {"script": action.source}
        assert isinstance(action, Call)
        raise self.fail_callable(f"the action {action.name}")


def _join(words: tuple[str, ...]) -> str:
    return " ".join(words)


def _drop_tail(
    blocks: tuple[tuple[Executable, ...], ...], count: int
) -> tuple[tuple[Executable, ...], ...]:
    last = blocks[-1][: len(blocks[-1]) - count]
    return (*blocks[:-1], last) if last or len(blocks) > 1 else blocks[:-1]


def dump_yaml(chart: Statechart) -> str:
    """The chart's YAML form. Charts holding Python callables cannot be written:
    :class:`StatechartError` names the state. ``load_yaml(dump_yaml(c)) == c``."""
    return yaml.dump(
        _Writer(chart).document(),
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
