"""Writing a statechart as an SCXML document (see :mod:`tripwright.flows.statechart.scxml`)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any

from tripwright.errors import StatechartError
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

__all__ = ["SCXML_NS", "TRIPWRIGHT_NS", "format_delay", "to_scxml"]

SCXML_NS = "http://www.w3.org/2005/07/scxml"
#: Namespace of Tripwright's own attributes (``tw:version``, ``tw:max-microsteps``).
TRIPWRIGHT_NS = "https://tripwright.dev/scxml"
_VERSION = f"{{{TRIPWRIGHT_NS}}}version"
_LIMIT = f"{{{TRIPWRIGHT_NS}}}max-microsteps"

# ---------------------------------------------------------------- writing


def format_delay(seconds: float) -> str:
    """A delay in the largest unit that writes it exactly: ``"2h"``, ``"15m"``, ``"0.5s"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and (seconds / size).is_integer() and (seconds / size) * size == seconds:
            return f"{int(seconds / size)}{unit}"
    text = f"{Decimal(repr(float(seconds))):f}"
    return f"{text.removesuffix('.0')}s"


def _words(words: tuple[str, ...]) -> str | None:
    return " ".join(words) if words else None


class _Writer:
    def __init__(self, chart: Statechart) -> None:
        self.chart = chart
        self.where = chart.name

    def el(self, parent: ET.Element, tag: str, **attrs: str | None) -> ET.Element:
        return ET.SubElement(
            parent,
            f"{{{SCXML_NS}}}{tag}",
            {k.rstrip("_"): v for k, v in attrs.items() if v is not None},
        )

    def fail_callable(self, what: str) -> StatechartError:
        return not_writable(self.chart, self.where, what)

    def cond(self, cond: Condition | None) -> str | None:
        return source_condition(self.chart, self.where, cond)

    def document(self, parent: ET.Element | None = None) -> ET.Element:
        chart = self.chart
        attrs = {"version": "1.0", "datamodel": "python", "name": chart.name}
        if chart.initial is not None:
            if chart.initial.actions:
                raise StatechartError(
                    f"statechart {chart.name!r}: a top-level initial transition with actions "
                    "has no SCXML form",
                    flow=chart.name,
                )
            attrs["initial"] = " ".join(chart.initial.targets)
        if chart.binding != "early":
            attrs["binding"] = chart.binding
        if chart.version != 1:
            attrs[_VERSION] = str(chart.version)
        if chart.max_microsteps is not None:
            attrs[_LIMIT] = str(chart.max_microsteps)
        tag = f"{{{SCXML_NS}}}scxml"
        root = ET.Element(tag, attrs) if parent is None else ET.SubElement(parent, tag, attrs)
        self.datamodel(root, chart.datamodel)
        if chart.script is not None:
            self.el(root, "script").text = chart.script.source
        for state in chart.states:
            self.state(root, state)
        return root

    def datamodel(self, parent: ET.Element, data: tuple[Data, ...]) -> None:
        if not data:
            return
        holder = self.el(parent, "datamodel")
        for item in data:
            node = self.el(holder, "data", id=item.id, expr=item.expr)
            self.inline(node, item.value, both=item.expr is not None, what=f"data {item.id!r}")

    def inline(self, node: ET.Element, value: Any, *, both: bool, what: str) -> None:
        if value is None:
            return
        if both:
            raise StatechartError(
                f"statechart {self.chart.name!r}: {what} has both an expression and a value",
                flow=self.chart.name,
            )
        node.text = json.dumps(value, ensure_ascii=False)

    def state(self, parent: ET.Element, state: State) -> None:
        self.where = state.id
        if state.kind is StateKind.HISTORY:
            node = self.el(parent, "history", id=state.id, type=state.history)
            for transition in state.transitions:
                self.transition(node, transition)
            return
        node = self.el(parent, state.kind.value, id=state.id)
        if state.initial is not None:
            if state.initial.actions or state.initial.type != "external":
                holder = self.el(node, "initial")
                self.transition(holder, state.initial)
            else:
                node.set("initial", " ".join(state.initial.targets))
        self.datamodel(node, state.datamodel)
        for block in state.on_entry:
            self.actions(self.el(node, "onentry"), block)
        for block in state.on_exit:
            self.actions(self.el(node, "onexit"), block)
        for transition in state.transitions:
            self.transition(node, transition)
        for invoke in state.invokes:
            self.invoke(node, invoke)
        if state.donedata is not None:
            holder = self.el(node, "donedata")
            self.payload(holder, state.donedata.params, state.donedata.content)
        for child in state.children:
            self.state(node, child)
            self.where = state.id

    def transition(self, parent: ET.Element, transition: Transition) -> None:
        node = self.el(
            parent,
            "transition",
            event=_words(transition.events),
            cond=self.cond(transition.cond),
            target=_words(transition.targets),
            type=transition.type if transition.type != "external" else None,
        )
        self.actions(node, transition.actions)

    def payload(self, node: ET.Element, params: tuple[Param, ...], content: Content | None) -> None:
        for param in params:
            self.el(node, "param", name=param.name, expr=param.expr, location=param.location)
        if content is not None:
            holder = self.el(node, "content", expr=content.expr)
            self.inline(holder, content.value, both=content.expr is not None, what="a content")

    def invoke(self, parent: ET.Element, invoke: Invoke) -> None:
        node = self.el(
            parent,
            "invoke",
            id=invoke.id,
            idlocation=invoke.idlocation,
            type=invoke.type if invoke.type != "scxml" else None,
            typeexpr=invoke.typeexpr,
            src=invoke.src,
            srcexpr=invoke.srcexpr,
            namelist=_words(invoke.namelist),
            autoforward="true" if invoke.autoforward else None,
        )
        for param in invoke.params:
            self.el(node, "param", name=param.name, expr=param.expr, location=param.location)
        if invoke.finalize:
            self.actions(self.el(node, "finalize"), invoke.finalize)
        if invoke.content is not None:
            where = self.where
            _Writer(invoke.content).document(self.el(node, "content"))
            self.where = where

    def actions(self, parent: ET.Element, actions: tuple[Executable, ...]) -> None:
        for action in actions:
            self.action(parent, action)

    def action(self, parent: ET.Element, action: Executable) -> None:
        if isinstance(action, Raise):
            self.el(parent, "raise", event=action.event)
        elif isinstance(action, Send):
            node = self.el(
                parent,
                "send",
                event=action.event,
                eventexpr=action.eventexpr,
                target=action.target,
                targetexpr=action.targetexpr,
                type_=action.type,
                typeexpr=action.typeexpr,
                id=action.id,
                idlocation=action.idlocation,
                delay=format_delay(action.delay) if action.delay is not None else None,
                delayexpr=action.delayexpr,
                namelist=_words(action.namelist),
            )
            self.payload(node, action.params, action.content)
        elif isinstance(action, Cancel):
            self.el(parent, "cancel", sendid=action.sendid, sendidexpr=action.sendidexpr)
        elif isinstance(action, Assign):
            node = self.el(parent, "assign", location=action.location, expr=action.expr)
            self.inline(node, action.value, both=action.expr is not None, what="an assign")
        elif isinstance(action, Log):
            self.el(parent, "log", label=action.label, expr=action.expr)
        elif isinstance(action, If):
            node = self.el(parent, "if", cond=self.cond(action.branches[0][0]))
            self.actions(node, action.branches[0][1])
            for cond, body in action.branches[1:]:
                self.el(node, "elseif", cond=self.cond(cond))
                self.actions(node, body)
            if action.orelse:
                self.el(node, "else")
                self.actions(node, action.orelse)
        elif isinstance(action, Foreach):
            node = self.el(
                parent, "foreach", array=action.array, item=action.item, index=action.index
            )
            self.actions(node, action.actions)
        elif isinstance(action, Script):
            self.el(parent, "script").text = action.source
        elif isinstance(action, Call):
            raise self.fail_callable(f"the action {action.name}")


def to_scxml(chart: Statechart) -> str:
    """The chart as an SCXML document (UTF-8 text, indented).

    Charts holding Python callables (guards or actions from the Python API) cannot be
    written: :class:`StatechartError` names the state. ``load_scxml(to_scxml(c)) == c``.
    """
    ET.register_namespace("", SCXML_NS)
    ET.register_namespace("tw", TRIPWRIGHT_NS)
    root = _Writer(chart).document()
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode", xml_declaration=False) + "\n"
