"""The YAML form of a statechart: readable, and exactly the model (load and dump round-trip).

::

    statechart: booking
    data:
      seats: 2                      # a literal value; {expr: "..."} for an expression
    states:
      quoted:
        on:
          - {event: hold, cond: "seats > 0", target: held}
          - {event: hold, target: rejected}
      held:
        after:
          15m: expired              # a timer: cancelled when the state is left
        on:
          - {event: pay, target: paid}
      paid: {type: final}
      expired: {type: final}
      rejected: {type: final}

States are nested mappings keyed by id (``states:`` inside a state makes it compound);
``type`` is ``state`` (the default), ``parallel``, ``final`` or ``history``. ``on:`` lists
transitions (``event``, ``cond``, ``target``, ``type: internal``, ``actions``); one without
``event`` is eventless. ``entry:``/``exit:`` list actions, each a one-key mapping:
``raise``, ``send``, ``cancel``, ``assign``, ``log``, ``if`` (with ``else``), ``foreach``,
``script``. ``after: {DELAY: TARGET}`` is the Python API's ``after()``: a delayed send on
entry, its cancel on exit and a transition on its event. ``load_yaml(dump_yaml(c)) == c``.

Like SCXML, a YAML definition is trusted code: its expressions and scripts are Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import yaml

from tripwright.errors import StatechartError
from tripwright.flows.statechart._yaml_style import Loader, timer_event
from tripwright.flows.statechart._yaml_writer import dump_yaml
from tripwright.flows.statechart.model import (
    Assign,
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
from tripwright.flows.statechart.walk import check_python

__all__ = ["dump_yaml", "load_yaml", "timer_event"]

Node = yaml.Node


# ---------------------------------------------------------------- reading


class _Reader:
    def __init__(self, loader: Loader, source: str) -> None:
        self.loader = loader
        self.source = source

    def fail(self, node: Node, message: str, element: str | None = None) -> StatechartError:
        return StatechartError(
            f"{self.source}: {message}", element=element, line=node.start_mark.line + 1
        )

    @staticmethod
    def line(node: Node) -> int:
        return int(node.start_mark.line) + 1

    def mapping(
        self, node: Node, what: str, keys: Iterable[str] | None = None
    ) -> dict[str, tuple[Node, Node]]:
        """A mapping's entries by key (key node, value node); unknown keys are errors."""
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        allowed = set(keys) if keys is not None else None
        out: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self.fail(key, f"{what}: keys must be plain text")
            name = str(key.value)
            if name in out:
                raise self.fail(key, f"{what}: duplicate key {name!r}")
            if allowed is not None and name not in allowed:
                raise self.fail(
                    key, f"{what}: unknown key {name!r} (allowed: {', '.join(sorted(allowed))})"
                )
            out[name] = (key, value)
        return out

    def sequence(self, node: Node, what: str) -> list[Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return list(node.value)

    def text(self, node: Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.fail(node, f"{what} must be text")
        return str(node.value)

    def words(self, node: Node, what: str) -> tuple[str, ...]:
        if isinstance(node, yaml.SequenceNode):
            return tuple(self.text(item, what) for item in node.value)
        return tuple(self.text(node, what).split())

    def value(self, node: Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def opt(self, entries: dict[str, tuple[Node, Node]], key: str, what: str) -> str | None:
        return self.text(entries[key][1], f"{what}: {key}") if key in entries else None

    def need(self, node: Node, entries: dict[str, tuple[Node, Node]], key: str, what: str) -> str:
        if key not in entries:
            raise self.fail(node, f"{what}: missing required key {key!r}")
        return self.text(entries[key][1], f"{what}: {key}")

    # -- the chart

    def chart(self, node: Node) -> Statechart:
        top = self.mapping(
            node,
            "a statechart",
            (
                "statechart",
                "version",
                "initial",
                "binding",
                "max_microsteps",
                "script",
                "data",
                "states",
            ),
        )
        name = self.need(node, top, "statechart", "a statechart")
        version = 1
        if "version" in top:
            raw = self.value(top["version"][1])
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise self.fail(top["version"][1], "version must be an integer")
            version = raw
        binding = self.opt(top, "binding", "a statechart") or "early"
        if binding not in ("early", "late"):
            raise self.fail(
                top["binding"][1], f"binding must be 'early' or 'late', not {binding!r}"
            )
        limit = None
        if "max_microsteps" in top:
            raw = self.value(top["max_microsteps"][1])
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
                raise self.fail(
                    top["max_microsteps"][1], "max_microsteps must be a whole number of at least 1"
                )
            limit = raw
        if "states" not in top:
            raise self.fail(node, f"statechart {name!r} has no states")
        initial = top.get("initial")
        script = top.get("script")
        return Statechart(
            name=name,
            states=self.states(top["states"][1]),
            initial=Transition(
                targets=self.words(initial[1], "initial"), line=self.line(initial[1])
            )
            if initial
            else None,
            datamodel=self.data(top["data"][1]) if "data" in top else (),
            script=Script(self.text(script[1], "script"), line=self.line(script[1]))
            if script
            else None,
            binding="early" if binding == "early" else "late",
            version=version,
            max_microsteps=limit,
            line=self.line(node),
        )

    def states(self, node: Node) -> tuple[State, ...]:
        entries = self.mapping(node, "states")
        if not entries:
            raise self.fail(node, "states must not be empty")
        return tuple(self.state(name, key, value) for name, (key, value) in entries.items())

    def data(self, node: Node) -> tuple[Data, ...]:
        out = []
        for name, (key, value) in self.mapping(node, "data").items():
            if isinstance(value, yaml.MappingNode):
                spec = self.mapping(value, f"data {name!r}", ("expr", "value"))
                out.append(
                    Data(
                        id=name,
                        expr=self.opt(spec, "expr", f"data {name!r}"),
                        value=self.value(spec["value"][1]) if "value" in spec else None,
                        line=self.line(key),
                    )
                )
            else:
                out.append(Data(id=name, value=self.value(value), line=self.line(key)))
        return tuple(out)

    _STATE_KEYS = (
        "type", "initial", "states", "on", "after", "entry", "exit", "invoke", "data",
        "donedata", "history", "default",
    )  # fmt: skip

    def state(self, state_id: str, key: Node, node: Node) -> State:
        what = f"state {state_id!r}"
        spec = self.mapping(node, what, self._STATE_KEYS)
        kind_text = self.opt(spec, "type", what) or "state"
        try:
            kind = StateKind(kind_text)
        except ValueError:
            raise self.fail(
                spec["type"][1],
                f"{what}: type must be state, parallel, final or history, not {kind_text!r}",
                state_id,
            ) from None
        line = self.line(key)
        allowed = {
            StateKind.STATE: set(self._STATE_KEYS) - {"donedata", "history", "default"},
            StateKind.PARALLEL: set(self._STATE_KEYS)
            - {"donedata", "history", "default", "initial"},
            StateKind.FINAL: {"type", "entry", "exit", "donedata"},
            StateKind.HISTORY: {"type", "history", "default"},
        }[kind]
        for name, (key_node, _) in spec.items():
            if name not in allowed:
                raise self.fail(key_node, f"{what}: a {kind.value} state has no {name!r}", state_id)
        try:
            if kind is StateKind.HISTORY:
                return self.history(state_id, spec, line)
            transitions = [self.transition(n, what) for n in self.seq(spec, "on", what)]
            entry = self.blocks(spec, "entry", what)
            exit_ = self.blocks(spec, "exit", what)
            if "after" in spec:
                self.timers(state_id, spec["after"][1], entry, exit_, transitions)
            return State(
                id=state_id,
                kind=kind,
                children=self.states(spec["states"][1]) if "states" in spec else (),
                initial=self.initial(spec["initial"][1], what) if "initial" in spec else None,
                transitions=tuple(transitions),
                on_entry=tuple(entry),
                on_exit=tuple(exit_),
                invokes=tuple(self.invoke(n, what) for n in self.seq(spec, "invoke", what)),
                datamodel=self.data(spec["data"][1]) if "data" in spec else (),
                donedata=self.donedata(spec["donedata"][1], what) if "donedata" in spec else None,
                line=line,
            )
        except StatechartError as exc:
            if exc.line is not None:
                raise
            raise StatechartError(
                f"{self.source}: {exc.message}", element=state_id, line=line
            ) from None

    def initial(self, node: Node, what: str) -> Transition:
        if isinstance(node, yaml.MappingNode):
            return self.transition(node, f"{what}: initial")
        return Transition(targets=self.words(node, "initial"), line=self.line(node))

    def seq(self, spec: dict[str, tuple[Node, Node]], key: str, what: str) -> list[Node]:
        return self.sequence(spec[key][1], f"{what}: {key}") if key in spec else []

    def history(self, state_id: str, spec: dict[str, tuple[Node, Node]], line: int) -> State:
        depth = self.opt(spec, "history", f"history {state_id!r}") or "shallow"
        if depth not in ("shallow", "deep"):
            raise self.fail(spec["history"][1], "history must be 'shallow' or 'deep'", state_id)
        transitions: tuple[Transition, ...] = ()
        if "default" in spec:
            value = spec["default"][1]
            if isinstance(value, yaml.MappingNode):
                transitions = (self.transition(value, f"history {state_id!r}"),)
            else:
                transitions = (
                    Transition(targets=self.words(value, "default"), line=self.line(value)),
                )
        return State(
            id=state_id,
            kind=StateKind.HISTORY,
            history="deep" if depth == "deep" else "shallow",
            transitions=transitions,
            line=line,
        )

    def blocks(
        self, spec: dict[str, tuple[Node, Node]], key: str, what: str
    ) -> list[tuple[Executable, ...]]:
        """``entry``/``exit``: a list of actions (one block) or a list of lists (blocks)."""
        if key not in spec:
            return []
        items = self.sequence(spec[key][1], f"{what}: {key}")
        if items and all(isinstance(item, yaml.SequenceNode) for item in items):
            return [self.actions(item, f"{what}: {key}") for item in items]
        return [self.actions(spec[key][1], f"{what}: {key}")]

    def timers(
        self,
        state_id: str,
        node: Node,
        entry: list[tuple[Executable, ...]],
        exit_: list[tuple[Executable, ...]],
        transitions: list[Transition],
    ) -> None:
        sends: list[Executable] = []
        cancels: list[Executable] = []
        for number, (delay, (key, value)) in enumerate(
            self.mapping(node, f"state {state_id!r}: after").items(), start=1
        ):
            try:
                seconds = parse_delay(delay)
            except StatechartError as exc:
                raise self.fail(key, exc.message, state_id) from None
            name = timer_event(state_id, number)
            sends.append(Send(event=name, id=name, delay=seconds, line=self.line(key)))
            cancels.append(Cancel(sendid=name, line=self.line(key)))
            if isinstance(value, yaml.MappingNode):
                spec = self.mapping(value, f"timer {delay!r}", ("target", "cond", "actions"))
                transitions.append(
                    Transition(
                        events=(name,),
                        cond=self.opt(spec, "cond", "timer"),
                        targets=self.words(spec["target"][1], "target") if "target" in spec else (),
                        actions=self.actions(spec["actions"][1], "timer")
                        if "actions" in spec
                        else (),
                        line=self.line(key),
                    )
                )
            else:
                transitions.append(
                    Transition(
                        events=(name,), targets=self.words(value, "target"), line=self.line(key)
                    )
                )
        _append_to_last(entry, sends)
        _append_to_last(exit_, cancels)

    def transition(self, node: Node, what: str) -> Transition:
        spec = self.mapping(
            node, f"{what}: a transition", ("event", "cond", "target", "type", "actions")
        )
        kind = self.opt(spec, "type", "transition") or "external"
        if kind not in ("external", "internal"):
            raise self.fail(spec["type"][1], f"type must be 'external' or 'internal', not {kind!r}")
        return Transition(
            events=self.words(spec["event"][1], "event") if "event" in spec else (),
            cond=self.opt(spec, "cond", "transition"),
            targets=self.words(spec["target"][1], "target") if "target" in spec else (),
            type="internal" if kind == "internal" else "external",
            actions=self.actions(spec["actions"][1], what) if "actions" in spec else (),
            line=self.line(node),
        )

    # -- payloads

    def params(self, node: Node, what: str) -> tuple[Param, ...]:
        if isinstance(node, yaml.MappingNode):
            return tuple(
                Param(name=name, expr=self.text(value, f"param {name!r}"), line=self.line(key))
                for name, (key, value) in self.mapping(node, f"{what}: params").items()
            )
        out = []
        for item in self.sequence(node, f"{what}: params"):
            spec = self.mapping(item, "a param", ("name", "expr", "location"))
            out.append(
                Param(
                    name=self.need(item, spec, "name", "a param"),
                    expr=self.opt(spec, "expr", "a param"),
                    location=self.opt(spec, "location", "a param"),
                    line=self.line(item),
                )
            )
        return tuple(out)

    def content(self, node: Node) -> Content:
        spec = self.mapping(node, "content", ("expr", "value"))
        return Content(
            expr=self.opt(spec, "expr", "content"),
            value=self.value(spec["value"][1]) if "value" in spec else None,
            line=self.line(node),
        )

    def donedata(self, node: Node, what: str) -> DoneData:
        spec = self.mapping(node, f"{what}: donedata", ("params", "content"))
        return DoneData(
            params=self.params(spec["params"][1], what) if "params" in spec else (),
            content=self.content(spec["content"][1]) if "content" in spec else None,
            line=self.line(node),
        )

    def invoke(self, node: Node, what: str) -> Invoke:
        keys = (
            "id", "idlocation", "type", "typeexpr", "src", "srcexpr", "content", "params",
            "namelist", "autoforward", "finalize",
        )  # fmt: skip
        spec = self.mapping(node, f"{what}: an invoke", keys)
        autoforward = self.value(spec["autoforward"][1]) if "autoforward" in spec else False
        if not isinstance(autoforward, bool):
            raise self.fail(spec["autoforward"][1], "autoforward must be true or false")
        return Invoke(
            id=self.opt(spec, "id", "invoke"),
            idlocation=self.opt(spec, "idlocation", "invoke"),
            type=self.opt(spec, "type", "invoke") or "scxml",
            typeexpr=self.opt(spec, "typeexpr", "invoke"),
            src=self.opt(spec, "src", "invoke"),
            srcexpr=self.opt(spec, "srcexpr", "invoke"),
            content=self.chart(spec["content"][1]) if "content" in spec else None,
            params=self.params(spec["params"][1], "invoke") if "params" in spec else (),
            namelist=self.words(spec["namelist"][1], "namelist") if "namelist" in spec else (),
            autoforward=autoforward,
            finalize=self.actions(spec["finalize"][1], "finalize") if "finalize" in spec else (),
            line=self.line(node),
        )

    # -- actions

    def actions(self, node: Node, what: str) -> tuple[Executable, ...]:
        return tuple(self.action(item, what) for item in self.sequence(node, f"{what}: actions"))

    def action(self, node: Node, what: str) -> Executable:
        spec = self.mapping(node, f"{what}: an action")
        kinds = [k for k in spec if k in self.ACTIONS]
        if len(kinds) != 1 or (set(spec) - {kinds[0]} and set(spec) != {"if", "else"}):
            raise self.fail(
                node,
                f"{what}: an action is a mapping with one key of "
                f"{', '.join(sorted(self.ACTIONS))} (and 'else' beside 'if')",
            )
        return self.ACTIONS[kinds[0]](self, spec, self.line(node))

    def raise_(self, spec: dict[str, tuple[Node, Node]], line: int) -> Executable:
        return Raise(event=self.text(spec["raise"][1], "raise"), line=line)

    def send(self, spec: dict[str, tuple[Node, Node]], line: int) -> Executable:
        keys = (
            "event", "eventexpr", "target", "targetexpr", "type", "typeexpr", "id",
            "idlocation", "delay", "delayexpr", "namelist", "params", "content",
        )  # fmt: skip
        node = spec["send"][1]
        body = self.mapping(node, "send", keys)
        delay: float | None = None
        if "delay" in body:
            try:
                delay = parse_delay(self.text(body["delay"][1], "delay"))
            except StatechartError as exc:
                raise self.fail(body["delay"][1], exc.message) from None
        return Send(
            event=self.opt(body, "event", "send"),
            eventexpr=self.opt(body, "eventexpr", "send"),
            target=self.opt(body, "target", "send"),
            targetexpr=self.opt(body, "targetexpr", "send"),
            type=self.opt(body, "type", "send"),
            typeexpr=self.opt(body, "typeexpr", "send"),
            id=self.opt(body, "id", "send"),
            idlocation=self.opt(body, "idlocation", "send"),
            delay=delay,
            delayexpr=self.opt(body, "delayexpr", "send"),
            namelist=self.words(body["namelist"][1], "namelist") if "namelist" in body else (),
            params=self.params(body["params"][1], "send") if "params" in body else (),
            content=self.content(body["content"][1]) if "content" in body else None,
            line=line,
        )

    def cancel(self, spec: dict[str, tuple[Node, Node]], line: int) -> Executable:
        node = spec["cancel"][1]
        if isinstance(node, yaml.MappingNode):
            body = self.mapping(node, "cancel", ("sendid", "sendidexpr"))
            if not body:
                raise self.fail(node, "cancel needs 'sendid' or 'sendidexpr'")
            return Cancel(
                sendid=self.opt(body, "sendid", "cancel"),
                sendidexpr=self.opt(body, "sendidexpr", "cancel"),
                line=line,
            )
        return Cancel(sendid=self.text(node, "cancel"), line=line)

    def assign(self, spec: dict[str, tuple[Node, Node]], line: int) -> Executable:
        node = spec["assign"][1]
        body = self.mapping(node, "assign", ("location", "expr", "value"))
        return Assign(
            location=self.need(node, body, "location", "assign"),
            expr=self.opt(body, "expr", "assign"),
            value=self.value(body["value"][1]) if "value" in body else None,
            line=line,
        )

    def log(self, spec: dict[str, tuple[Node, Node]], line: int) -> Executable:
        body = self.mapping(spec["log"][1], "log", ("label", "expr"))
        return Log(
            label=self.opt(body, "label", "log"), expr=self.opt(body, "expr", "log"), line=line
        )

    def if_(self, spec: dict[str, tuple[Node, Node]], line: int) -> Executable:
        branches: list[tuple[Condition, tuple[Executable, ...]]] = []
        for item in self.sequence(spec["if"][1], "if"):
            body = self.mapping(item, "an if branch", ("cond", "actions"))
            branches.append(
                (
                    self.need(item, body, "cond", "an if branch"),
                    self.actions(body["actions"][1], "if") if "actions" in body else (),
                )
            )
        if not branches:
            raise self.fail(spec["if"][1], "if needs at least one branch")
        return If(
            branches=tuple(branches),
            orelse=self.actions(spec["else"][1], "else") if "else" in spec else (),
            line=line,
        )

    def foreach(self, spec: dict[str, tuple[Node, Node]], line: int) -> Executable:
        node = spec["foreach"][1]
        body = self.mapping(node, "foreach", ("array", "item", "index", "actions"))
        return Foreach(
            array=self.need(node, body, "array", "foreach"),
            item=self.need(node, body, "item", "foreach"),
            index=self.opt(body, "index", "foreach"),
            actions=self.actions(body["actions"][1], "foreach") if "actions" in body else (),
            line=line,
        )

    def script(self, spec: dict[str, tuple[Node, Node]], line: int) -> Executable:
        return Script(source=self.text(spec["script"][1], "script"), line=line)

    ACTIONS: dict[str, Callable[[_Reader, dict[str, tuple[Node, Node]], int], Executable]] = {  # noqa: RUF012
        "raise": raise_,
        "send": send,
        "cancel": cancel,
        "assign": assign,
        "log": log,
        "if": if_,
        "foreach": foreach,
        "script": script,
    }


def _append_to_last(blocks: list[tuple[Executable, ...]], actions: list[Executable]) -> None:
    if not actions:
        return
    if blocks:
        blocks[-1] = (*blocks[-1], *actions)
    else:
        blocks.append(tuple(actions))


def load_yaml(text: str, *, source: str = "document") -> Statechart:
    """A statechart from its YAML form; :class:`StatechartError` with the line and the
    reason for a malformed document (``source`` names it in messages, e.g. its path)."""
    loader = Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise StatechartError(
                f"{source}: not valid YAML: {exc.problem or exc.context}",
                line=mark.line + 1 if mark is not None else None,
            ) from None
        if root is None:
            raise StatechartError(f"{source}: the document is empty")
        chart = _Reader(loader, source).chart(root)
    finally:
        loader.dispose()
    try:
        check_python(chart)
    except StatechartError as exc:
        raise StatechartError(f"{source}: {exc.message}", line=exc.line, flow=chart.name) from None
    return chart
