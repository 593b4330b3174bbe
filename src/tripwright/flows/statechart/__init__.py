"""Statecharts with the W3C SCXML semantics: the model, the Python API, the interpreter.

Definitions are immutable data (:mod:`.model`) built with the typed Python API
(:mod:`.builder`) or loaded from YAML (:mod:`.yaml`) and SCXML (:mod:`.scxml`), checked by
:func:`validate` and drawn by :func:`to_mermaid`; :class:`Interpreter` runs one session of a
chart a macrostep at a time (:mod:`.outputs` says what it returns, :mod:`.snapshot` how
it is checkpointed); :mod:`.memory` runs it on virtual time. Definitions are trusted code: their
expressions and scripts run as Python in the loading process.
"""

from __future__ import annotations

from tripwright.errors import StatechartLoopError
from tripwright.flows.statechart.builder import (
    Action,
    After,
    after,
    always,
    final,
    history,
    on,
    parallel,
    state,
    statechart,
)
from tripwright.flows.statechart.context import ActionContext, DataView
from tripwright.flows.statechart.durable import StatechartFlow, send_event
from tripwright.flows.statechart.events import Event, EventType, matches
from tripwright.flows.statechart.interpreter import Interpreter
from tripwright.flows.statechart.invokers import InvokeHost, Invoker, Invokers, Stale
from tripwright.flows.statechart.memory import MachineRunner, SimulationResult, simulate
from tripwright.flows.statechart.mermaid import to_mermaid
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
    HistoryType,
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
    TransitionType,
    parse_delay,
)
from tripwright.flows.statechart.outputs import (
    DelayedSend,
    ErrorEntry,
    GuardOutcome,
    InvokeCancel,
    InvokeForward,
    InvokeRequest,
    LogEntry,
    Macrostep,
    Microstep,
    OutgoingEvent,
    Output,
    SendCancel,
    TakenTransition,
)
from tripwright.flows.statechart.processors import OutboxProcessor, Processor
from tripwright.flows.statechart.scxml import load_scxml, to_scxml
from tripwright.flows.statechart.snapshot import ChildSnapshot, PendingSend, Snapshot
from tripwright.flows.statechart.validate import validate
from tripwright.flows.statechart.yaml import dump_yaml, load_yaml

__all__ = [
    "Action",
    "ActionContext",
    "After",
    "Assign",
    "Call",
    "Cancel",
    "ChildSnapshot",
    "Condition",
    "Content",
    "Data",
    "DataView",
    "DelayedSend",
    "DoneData",
    "ErrorEntry",
    "Event",
    "EventType",
    "Executable",
    "Foreach",
    "GuardOutcome",
    "HistoryType",
    "If",
    "Interpreter",
    "Invoke",
    "InvokeCancel",
    "InvokeForward",
    "InvokeHost",
    "InvokeRequest",
    "Invoker",
    "Invokers",
    "Log",
    "LogEntry",
    "MachineRunner",
    "Macrostep",
    "Microstep",
    "OutboxProcessor",
    "OutgoingEvent",
    "Output",
    "Param",
    "PendingSend",
    "Processor",
    "Raise",
    "Script",
    "Send",
    "SendCancel",
    "SimulationResult",
    "Snapshot",
    "Stale",
    "State",
    "StateKind",
    "Statechart",
    "StatechartFlow",
    "StatechartLoopError",
    "TakenTransition",
    "Transition",
    "TransitionType",
    "after",
    "always",
    "dump_yaml",
    "final",
    "history",
    "load_scxml",
    "load_yaml",
    "matches",
    "on",
    "parallel",
    "parse_delay",
    "send_event",
    "simulate",
    "state",
    "statechart",
    "to_mermaid",
    "to_scxml",
    "validate",
]
