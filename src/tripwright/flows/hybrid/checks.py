"""Checks of a hybrid definition: its parts' own, and the wiring between them.

* the chart's, each saga's and the consumer groups' own problems (prefixed by the part);
* an ``invoke`` of type ``saga`` naming no saga of the definition (error), one whose
  ``src`` or type is an expression (warning: not checkable), ``autoforward`` to a saga
  with no signals (error); a saga no state invokes (warning);
* an ``event`` send of a type the definition does not declare in ``publishes``, or on
  another topic than its class's (errors);
* a published type that no group consumes and that is not declared ``external`` (error);
  a declared type no send publishes, in a chart without Python actions (warning);
* a group subscribing to a type nobody publishes (error, the choreography's check).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tripwright.flows.hybrid.invoker import SAGA, signals
from tripwright.flows.hybrid.publishing import EVENT
from tripwright.flows.problems import Problem
from tripwright.flows.statechart.executable import SCXML_TYPES
from tripwright.flows.statechart.model import Call, Script, Send
from tripwright.flows.statechart.validate import validate as validate_chart
from tripwright.flows.statechart.walk import executables, state_actions

if TYPE_CHECKING:
    from tripwright.flows.hybrid.definition import Hybrid

__all__ = ["hybrid_problems"]


def hybrid_problems(hybrid: Hybrid) -> list[Problem]:
    """Every problem of ``hybrid``, errors first."""
    problems = [_within(hybrid.chart.name, p) for p in validate_chart(hybrid.chart)]
    for saga in hybrid.sagas:
        problems.extend(_within(saga.name, p) for p in saga.validate())
    problems.extend(_invokes(hybrid))
    problems.extend(_sends(hybrid))
    problems.extend(_subscribers(hybrid))
    return sorted(problems, key=lambda p: p.severity != "error")


def _within(part: str, problem: Problem) -> Problem:
    return replace(problem, element=f"{part}/{problem.element}")


def _invokes(hybrid: Hybrid) -> list[Problem]:
    sagas = {saga.name: saga for saga in hybrid.sagas}
    invoked: set[str] = set()
    problems: list[Problem] = []
    for state in hybrid.chart.walk():
        for invoke in state.invokes:
            where = f"{hybrid.chart.name}/{state.id}"
            label = f"invoke {invoke.id!r}" if invoke.id else "invoke"
            if invoke.typeexpr is not None:
                problems.append(
                    Problem("warning", where, f"{label}: its type is an expression", invoke.line)
                )
                continue
            if invoke.type in SCXML_TYPES:
                continue
            if invoke.type != SAGA:
                problems.append(
                    Problem(
                        "warning",
                        where,
                        f"{label}: no invoker serves type {invoke.type!r} (the machine gets "
                        "error.execution)",
                        invoke.line,
                    )
                )
                continue
            if invoke.src is None:
                problems.append(
                    Problem("warning", where, f"{label}: its saga is an expression", invoke.line)
                    if invoke.srcexpr
                    else Problem("error", where, f"{label}: it names no saga", invoke.line)
                )
                continue
            saga = sagas.get(invoke.src)
            if saga is None:
                known = ", ".join(sorted(sagas)) or "none"
                problems.append(
                    Problem(
                        "error",
                        where,
                        f"{label}: no saga {invoke.src!r} in the definition (sagas: {known})",
                        invoke.line,
                    )
                )
                continue
            invoked.add(saga.name)
            if invoke.autoforward and not signals(saga):
                problems.append(
                    Problem(
                        "error",
                        where,
                        f"{label}: autoforward to saga {saga.name!r}, which waits for no signal",
                        invoke.line,
                    )
                )
    for name in sorted(set(sagas) - invoked):
        problems.append(Problem("warning", name, "no state of the chart invokes this saga"))
    return problems


def _sends(hybrid: Hybrid) -> list[Problem]:
    declared = {k.type_name: k for k in hybrid.publishes}
    sent: set[str] = set()
    opaque = False
    problems: list[Problem] = []
    for state in hybrid.chart.walk():
        where = f"{hybrid.chart.name}/{state.id}"
        for action in executables(state_actions(state)):
            opaque = opaque or isinstance(action, Call | Script)
            if not isinstance(action, Send) or action.type != EVENT:
                continue
            if action.event is None:
                problems.append(
                    Problem("warning", where, "an event send's type is an expression", action.line)
                )
                continue
            kind = declared.get(action.event)
            if kind is None:
                problems.append(
                    Problem(
                        "error",
                        where,
                        f"sends event {action.event!r}, which the definition does not declare "
                        "in publishes=",
                        action.line,
                    )
                )
                continue
            sent.add(kind.type_name)
            if action.target is not None and action.target != kind.topic:
                problems.append(
                    Problem(
                        "error",
                        where,
                        f"sends {kind.type_name!r} to topic {action.target!r}; its topic is "
                        f"{kind.topic!r}",
                        action.line,
                    )
                )
    if not opaque:
        for type_name in sorted(set(declared) - sent):
            problems.append(
                Problem(
                    "warning", hybrid.name, f"{type_name!r} is declared but no send publishes it"
                )
            )
    return problems


def _subscribers(hybrid: Hybrid) -> list[Problem]:
    consumed = {t for g in hybrid.groups for t in g.consumes}
    external = {k.type_name for k in hybrid.external}
    problems: list[Problem] = []
    for kind in hybrid.publishes:
        if kind.type_name not in consumed and kind.type_name not in external:
            problems.append(
                Problem(
                    "error",
                    hybrid.name,
                    f"the chart publishes {kind.type_name!r} but no group subscribes to it "
                    "(add a group, or declare it in external=)",
                )
            )
    ours = {k.type_name for k in (*hybrid.publishes, *hybrid.external)}
    for finding in hybrid.choreography().validate():
        if any(finding.message == f"{t!r} is published but nobody consumes it" for t in ours):
            continue  # reported above, with the remedy
        problems.append(Problem(finding.severity, finding.where, finding.message))
    return problems
