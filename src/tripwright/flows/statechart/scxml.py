"""W3C SCXML documents with the Python datamodel: read into the model, and write back.

::

    chart = load_scxml(Path("booking.scxml").read_text())
    text = to_scxml(chart)

Expressions and conditions are Python expressions over the datamodel and the system
variables ``_event``, ``_sessionid``, ``_name`` and ``In(state)``; ``<script>`` holds
Python statements. An SCXML document is therefore trusted code: loading one and running
it runs its Python with the full power of the process. Never load a document from an
untrusted source.

Every model element keeps the line of its element. A malformed document -- not
well-formed XML, an unknown element or attribute in the SCXML namespace, a missing
required attribute, Python that does not compile -- raises :class:`StatechartError` with
the line and the reason. Elements and attributes of other namespaces are ignored, as the
recommendation allows, except ``tw:version`` and ``tw:max-microsteps``
(``xmlns:tw="https://tripwright.dev/scxml"``) on the root, which carry the chart's
version and its microstep limit.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

from tripwright.errors import StatechartError
from tripwright.flows.statechart._scxml_writer import (
    SCXML_NS,
    TRIPWRIGHT_NS,
    format_delay,
    to_scxml,
)
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
from tripwright.flows.statechart.xmltree import XmlNode, parse_xml

__all__ = ["SCXML_NS", "TRIPWRIGHT_NS", "format_delay", "load_scxml", "to_scxml"]

_VERSION = f"{{{TRIPWRIGHT_NS}}}version"
_LIMIT = f"{{{TRIPWRIGHT_NS}}}max-microsteps"

_ATTRIBUTES: dict[str, frozenset[str]] = {
    name: frozenset(attrs.split())
    for name, attrs in {
        "scxml": "initial name version datamodel binding",
        "state": "id initial",
        "parallel": "id",
        "final": "id",
        "history": "id type",
        "initial": "",
        "transition": "event cond target type",
        "onentry": "",
        "onexit": "",
        "datamodel": "",
        "data": "id src expr",
        "donedata": "",
        "content": "expr",
        "param": "name expr location",
        "invoke": "type typeexpr src srcexpr id idlocation namelist autoforward",
        "finalize": "",
        "raise": "event",
        "send": "event eventexpr target targetexpr type typeexpr id idlocation delay "
        "delayexpr namelist",
        "cancel": "sendid sendidexpr",
        "assign": "location expr",
        "log": "label expr",
        "if": "cond",
        "elseif": "cond",
        "else": "",
        "foreach": "array item index",
        "script": "src",
    }.items()
}
_STATES = ("state", "parallel", "final", "history")


# ---------------------------------------------------------------- reading


class _Reader:
    """Turns an :class:`XmlNode` tree into model elements."""

    def __init__(self, source: str, taken: set[str]) -> None:
        self.source = source
        self.taken = taken
        self.generated = 0

    def fail(self, node: XmlNode, message: str) -> StatechartError:
        return StatechartError(
            f"{self.source}: <{node.tag}>: {message}", element=node.attrs.get("id"), line=node.line
        )

    def scxml_children(self, node: XmlNode) -> list[XmlNode]:
        """The children in the SCXML namespace (or in none); checks their attributes."""
        out = []
        for child in node.children:
            if child.ns not in (SCXML_NS, ""):
                continue
            if child.tag not in _ATTRIBUTES:
                raise self.fail(child, "unknown SCXML element")
            for key in child.attrs:
                if not key.startswith("{") and key not in _ATTRIBUTES[child.tag]:
                    raise self.fail(child, f"unknown attribute {key!r}")
            out.append(child)
        return out

    def check_text(self, node: XmlNode) -> None:
        if node.text.strip():
            raise self.fail(node, f"unexpected text {node.text.strip()[:40]!r}")

    def only(self, node: XmlNode, allowed: tuple[str, ...]) -> list[XmlNode]:
        children = self.scxml_children(node)
        for child in children:
            if child.tag not in allowed:
                raise self.fail(child, f"not allowed inside <{node.tag}>")
        return children

    def required(self, node: XmlNode, name: str) -> str:
        value = node.attrs.get(name)
        if value is None:
            raise self.fail(node, f"missing required attribute {name!r}")
        return value

    def exclusive(self, node: XmlNode, *names: str) -> None:
        given = [name for name in names if name in node.attrs]
        if len(given) > 1:
            raise self.fail(node, f"attributes {' and '.join(map(repr, given))} exclude each other")

    def unsupported(self, node: XmlNode, name: str, why: str) -> None:
        if name in node.attrs:
            raise self.fail(node, f"attribute {name!r} is not supported: {why}")

    # -- the document

    def chart(self, node: XmlNode, *, name: str) -> Statechart:
        if node.tag != "scxml" or node.ns not in (SCXML_NS, ""):
            raise self.fail(node, "the root element must be <scxml>")
        for key in node.attrs:
            if not key.startswith("{") and key not in _ATTRIBUTES["scxml"]:
                raise self.fail(node, f"unknown attribute {key!r}")
        version = node.attrs.get("version", "1.0")
        if version != "1.0":
            raise self.fail(node, f"version must be '1.0', not {version!r}")
        datamodel = node.attrs.get("datamodel", "python")
        if datamodel != "python":
            raise self.fail(node, f"only the 'python' datamodel is supported, not {datamodel!r}")
        binding = node.attrs.get("binding", "early")
        if binding not in ("early", "late"):
            raise self.fail(node, f"binding must be 'early' or 'late', not {binding!r}")
        chart_version = 1
        if _VERSION in node.attrs:
            try:
                chart_version = int(node.attrs[_VERSION])
            except ValueError:
                raise self.fail(node, "tw:version must be an integer") from None
        limit = None
        if _LIMIT in node.attrs:
            try:
                limit = int(node.attrs[_LIMIT])
            except ValueError:
                limit = 0
            if limit < 1:
                raise self.fail(node, "tw:max-microsteps must be a whole number of at least 1")
        self.check_text(node)
        states: list[State] = []
        data: list[Data] = []
        script: Script | None = None
        for child in self.only(node, (*_STATES[:3], "datamodel", "script")):
            if child.tag == "datamodel":
                if data:
                    raise self.fail(child, "only one <datamodel> per element")
                data = self.datamodel(child)
            elif child.tag == "script":
                if script is not None:
                    raise self.fail(child, "only one <script> in <scxml>")
                script = self.script(child)
            else:
                states.append(self.state(child))
        if not states:
            raise self.fail(node, "an <scxml> document needs at least one state")
        initial = node.attrs.get("initial")
        return Statechart(
            name=node.attrs.get("name", name),
            states=tuple(states),
            initial=Transition(targets=tuple(initial.split()), line=node.line) if initial else None,
            datamodel=tuple(data),
            script=script,
            binding="early" if binding == "early" else "late",
            version=chart_version,
            max_microsteps=limit,
            line=node.line,
        )

    # -- states

    def state_id(self, node: XmlNode) -> str:
        given = node.attrs.get("id")
        if given is not None:
            if not given.strip():
                raise self.fail(node, "an id cannot be empty")
            return given
        while True:
            self.generated += 1
            candidate = f"_state{self.generated}"
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate

    def state(self, node: XmlNode) -> State:
        self.check_text(node)
        if node.tag == "history":
            return self.history(node)
        state_id = self.state_id(node)
        kind = StateKind(node.tag)
        allowed: tuple[str, ...]
        if kind is StateKind.FINAL:
            allowed = ("onentry", "onexit", "donedata")
        else:
            allowed = ("onentry", "onexit", "transition", "datamodel", "invoke", *_STATES)
            if kind is StateKind.STATE:
                allowed = (*allowed, "initial")
        children: list[State] = []
        transitions: list[Transition] = []
        entry: list[tuple[Executable, ...]] = []
        exit_: list[tuple[Executable, ...]] = []
        invokes: list[Invoke] = []
        data: list[Data] = []
        donedata: DoneData | None = None
        initial: Transition | None = None
        if "initial" in node.attrs:
            initial = Transition(targets=tuple(node.attrs["initial"].split()), line=node.line)
        for child in self.only(node, allowed):
            tag = child.tag
            if tag in _STATES:
                children.append(self.state(child))
            elif tag == "transition":
                transitions.append(self.transition(child))
            elif tag == "onentry":
                entry.append(self.block(child))
            elif tag == "onexit":
                exit_.append(self.block(child))
            elif tag == "invoke":
                invokes.append(self.invoke(child))
            elif tag == "datamodel":
                if data:
                    raise self.fail(child, "only one <datamodel> per element")
                data = self.datamodel(child)
            elif tag == "donedata":
                if donedata is not None:
                    raise self.fail(child, "only one <donedata> per final state")
                donedata = self.donedata(child)
            else:  # initial
                if initial is not None:
                    raise self.fail(child, "a state has an initial attribute or element, not both")
                initial = self.initial(child)
        return State(
            id=state_id,
            kind=kind,
            children=tuple(children),
            initial=initial,
            transitions=tuple(transitions),
            on_entry=tuple(entry),
            on_exit=tuple(exit_),
            invokes=tuple(invokes),
            datamodel=tuple(data),
            donedata=donedata,
            line=node.line,
        )

    def history(self, node: XmlNode) -> State:
        kind = node.attrs.get("type", "shallow")
        if kind not in ("shallow", "deep"):
            raise self.fail(node, f"type must be 'shallow' or 'deep', not {kind!r}")
        transitions = [self.transition(c) for c in self.only(node, ("transition",))]
        if len(transitions) > 1:
            raise self.fail(node, "a history state has one default <transition>")
        return State(
            id=self.state_id(node),
            kind=StateKind.HISTORY,
            history="deep" if kind == "deep" else "shallow",
            transitions=tuple(transitions),
            line=node.line,
        )

    def initial(self, node: XmlNode) -> Transition:
        self.check_text(node)
        children = self.only(node, ("transition",))
        if len(children) != 1:
            raise self.fail(node, "<initial> holds exactly one <transition>")
        transition = self.transition(children[0])
        if transition.events or transition.cond is not None:
            raise self.fail(children[0], "an initial transition has no event and no cond")
        if not transition.targets:
            raise self.fail(children[0], "an initial transition needs a target")
        return transition

    def transition(self, node: XmlNode) -> Transition:
        self.check_text(node)
        kind = node.attrs.get("type", "external")
        if kind not in ("external", "internal"):
            raise self.fail(node, f"type must be 'external' or 'internal', not {kind!r}")
        return Transition(
            events=tuple(node.attrs.get("event", "").split()),
            cond=node.attrs.get("cond"),
            targets=tuple(node.attrs.get("target", "").split()),
            type="internal" if kind == "internal" else "external",
            actions=self.actions(node),
            line=node.line,
        )

    # -- data

    def datamodel(self, node: XmlNode) -> list[Data]:
        self.check_text(node)
        return [self.data(child) for child in self.only(node, ("data",))]

    def inline(self, node: XmlNode) -> Any:
        """Inline content: JSON if it parses as JSON, else the text (stripped)."""
        text = node.text.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def data(self, node: XmlNode) -> Data:
        self.unsupported(node, "src", "put the value in expr or inline")
        self.only(node, ())
        value = self.inline(node)
        if "expr" in node.attrs and value is not None:
            raise self.fail(node, "a <data> has expr or inline content, not both")
        return Data(
            id=self.required(node, "id"), expr=node.attrs.get("expr"), value=value, line=node.line
        )

    def donedata(self, node: XmlNode) -> DoneData:
        self.check_text(node)
        params, content = self.payload(node)
        return DoneData(params=params, content=content, line=node.line)

    def payload(self, node: XmlNode) -> tuple[tuple[Param, ...], Content | None]:
        params: list[Param] = []
        content: Content | None = None
        for child in self.only(node, ("param", "content")):
            if child.tag == "param":
                params.append(self.param(child))
            elif content is not None:
                raise self.fail(child, f"only one <content> in <{node.tag}>")
            else:
                content = self.content(child)
        if content is not None and (params or "namelist" in node.attrs):
            raise self.fail(node, "<content> excludes <param> and namelist")
        return tuple(params), content

    def param(self, node: XmlNode) -> Param:
        self.check_text(node)
        self.only(node, ())
        self.exclusive(node, "expr", "location")
        return Param(
            name=self.required(node, "name"),
            expr=node.attrs.get("expr"),
            location=node.attrs.get("location"),
            line=node.line,
        )

    def content(self, node: XmlNode) -> Content:
        if self.scxml_children(node):
            raise self.fail(node, "only an <invoke>'s <content> may hold an SCXML document")
        value = self.inline(node)
        if "expr" in node.attrs and value is not None:
            raise self.fail(node, "a <content> has expr or inline content, not both")
        return Content(expr=node.attrs.get("expr"), value=value, line=node.line)

    def invoke(self, node: XmlNode) -> Invoke:
        self.check_text(node)
        for pair in (("type", "typeexpr"), ("src", "srcexpr"), ("id", "idlocation")):
            self.exclusive(node, *pair)
        params: list[Param] = []
        finalize: tuple[Executable, ...] = ()
        chart: Statechart | None = None
        seen_finalize = False
        for child in self.only(node, ("param", "finalize", "content")):
            if child.tag == "param":
                params.append(self.param(child))
            elif child.tag == "finalize":
                if seen_finalize:
                    raise self.fail(child, "only one <finalize> per <invoke>")
                seen_finalize = True
                self.check_text(child)
                finalize = self.actions(child)
            else:
                if chart is not None:
                    raise self.fail(child, "only one <content> per <invoke>")
                chart = self.invoked_chart(child)
        if params and "namelist" in node.attrs:
            raise self.fail(node, "<param> and namelist exclude each other")
        autoforward = node.attrs.get("autoforward", "false")
        if autoforward not in ("true", "false"):
            raise self.fail(node, f"autoforward must be 'true' or 'false', not {autoforward!r}")
        return Invoke(
            id=node.attrs.get("id"),
            idlocation=node.attrs.get("idlocation"),
            type=node.attrs.get("type", "scxml"),
            typeexpr=node.attrs.get("typeexpr"),
            src=node.attrs.get("src"),
            srcexpr=node.attrs.get("srcexpr"),
            content=chart,
            params=tuple(params),
            namelist=tuple(node.attrs.get("namelist", "").split()),
            autoforward=autoforward == "true",
            finalize=finalize,
            line=node.line,
        )

    def invoked_chart(self, node: XmlNode) -> Statechart:
        if "expr" in node.attrs:
            raise self.fail(node, "an <invoke>'s content is an inline <scxml> document")
        self.check_text(node)
        documents = self.only(node, ("scxml",))
        if len(documents) != 1:
            raise self.fail(node, "an <invoke>'s <content> holds one <scxml> document")
        return _Reader(self.source, set(_ids(documents[0]))).chart(documents[0], name="child")

    # -- executable content

    def block(self, node: XmlNode) -> tuple[Executable, ...]:
        self.check_text(node)
        return self.actions(node)

    def actions(self, node: XmlNode) -> tuple[Executable, ...]:
        out: list[Executable] = []
        for child in self.scxml_children(node):
            reader = self.ACTIONS.get(child.tag)
            if reader is None:
                raise self.fail(child, f"not allowed inside <{node.tag}>")
            out.append(reader(self, child))
        return tuple(out)

    def raise_(self, node: XmlNode) -> Raise:
        self.only(node, ())
        self.check_text(node)
        return Raise(event=self.required(node, "event"), line=node.line)

    def send(self, node: XmlNode) -> Send:
        self.check_text(node)
        for pair in (
            ("event", "eventexpr"),
            ("target", "targetexpr"),
            ("type", "typeexpr"),
            ("id", "idlocation"),
            ("delay", "delayexpr"),
        ):
            self.exclusive(node, *pair)
        params, content = self.payload(node)
        delay: float | None = None
        if "delay" in node.attrs:
            try:
                delay = parse_delay(node.attrs["delay"])
            except StatechartError as exc:
                raise self.fail(node, exc.message) from None
        return Send(
            event=node.attrs.get("event"),
            eventexpr=node.attrs.get("eventexpr"),
            target=node.attrs.get("target"),
            targetexpr=node.attrs.get("targetexpr"),
            type=node.attrs.get("type"),
            typeexpr=node.attrs.get("typeexpr"),
            id=node.attrs.get("id"),
            idlocation=node.attrs.get("idlocation"),
            delay=delay,
            delayexpr=node.attrs.get("delayexpr"),
            namelist=tuple(node.attrs.get("namelist", "").split()),
            params=params,
            content=content,
            line=node.line,
        )

    def cancel(self, node: XmlNode) -> Cancel:
        self.only(node, ())
        self.check_text(node)
        self.exclusive(node, "sendid", "sendidexpr")
        if "sendid" not in node.attrs and "sendidexpr" not in node.attrs:
            raise self.fail(node, "missing required attribute 'sendid' (or 'sendidexpr')")
        return Cancel(
            sendid=node.attrs.get("sendid"),
            sendidexpr=node.attrs.get("sendidexpr"),
            line=node.line,
        )

    def assign(self, node: XmlNode) -> Assign:
        self.only(node, ())
        value = self.inline(node)
        if "expr" in node.attrs and value is not None:
            raise self.fail(node, "an <assign> has expr or inline content, not both")
        return Assign(
            location=self.required(node, "location"),
            expr=node.attrs.get("expr"),
            value=value,
            line=node.line,
        )

    def log(self, node: XmlNode) -> Log:
        self.only(node, ())
        self.check_text(node)
        return Log(label=node.attrs.get("label"), expr=node.attrs.get("expr"), line=node.line)

    def if_(self, node: XmlNode) -> If:
        self.check_text(node)
        branches: list[tuple[Condition, list[Executable]]] = [(self.required(node, "cond"), [])]
        orelse: list[Executable] | None = None
        for child in self.scxml_children(node):
            if child.tag == "elseif":
                self.only(child, ())
                if orelse is not None:
                    raise self.fail(child, "<elseif> after <else>")
                branches.append((self.required(child, "cond"), []))
            elif child.tag == "else":
                self.only(child, ())
                if orelse is not None:
                    raise self.fail(child, "only one <else> per <if>")
                orelse = []
            else:
                reader = self.ACTIONS.get(child.tag)
                if reader is None:
                    raise self.fail(child, "not allowed inside <if>")
                (orelse if orelse is not None else branches[-1][1]).append(reader(self, child))
        return If(
            branches=tuple((cond, tuple(body)) for cond, body in branches),
            orelse=tuple(orelse or ()),
            line=node.line,
        )

    def foreach(self, node: XmlNode) -> Foreach:
        self.check_text(node)
        return Foreach(
            array=self.required(node, "array"),
            item=self.required(node, "item"),
            index=node.attrs.get("index"),
            actions=self.actions(node),
            line=node.line,
        )

    def script(self, node: XmlNode) -> Script:
        self.unsupported(node, "src", "put the Python inline")
        self.only(node, ())
        return Script(source=textwrap.dedent(node.text), line=node.line)

    ACTIONS: dict[str, Callable[[_Reader, XmlNode], Executable]] = {  # noqa: RUF012
        "raise": raise_,
        "send": send,
        "cancel": cancel,
        "assign": assign,
        "log": log,
        "if": if_,
        "foreach": foreach,
        "script": script,
    }


def _ids(node: XmlNode) -> Iterator[str]:
    """Explicit state ids of a document, not descending into invoked documents."""
    if node.tag in _STATES and "id" in node.attrs:
        yield node.attrs["id"]
    if node.tag == "invoke":
        return
    for child in node.children:
        yield from _ids(child)


def load_scxml(text: str | bytes, *, name: str = "scxml", source: str = "document") -> Statechart:
    """A statechart from an SCXML document (``name`` if the root has no ``name``).

    ``source`` names the document in error messages (e.g. its path). Raises
    :class:`StatechartError` with the line and the reason for a malformed document.
    """
    root = parse_xml(text, source=source)
    chart = _Reader(source, set(_ids(root))).chart(root, name=name)
    try:
        check_python(chart)
    except StatechartError as exc:
        raise StatechartError(f"{source}: {exc.message}", line=exc.line, flow=chart.name) from None
    return chart
