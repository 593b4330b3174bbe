"""Load flow definitions from ``module:attribute`` references and definition files.

A reference ending in ``.yaml``, ``.yml`` or ``.scxml`` is a statechart document (see
:func:`load_chart_file`); anything else is ``module:attribute``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path

from tripwright.engine.flow import Flow
from tripwright.engine.registry import FlowRegistry
from tripwright.errors import ConfigurationError
from tripwright.flows.events import Choreography, ConsumerGroup
from tripwright.flows.hybrid import Hybrid
from tripwright.flows.saga import Saga
from tripwright.flows.statechart.durable import StatechartFlow
from tripwright.flows.statechart.model import Statechart

__all__ = [
    "CHART_SUFFIXES",
    "Definition",
    "choreography_of",
    "is_chart_file",
    "load_chart_file",
    "load_definitions",
    "load_flows",
    "load_reference",
]

#: What a reference may name: an engine flow or a model definition.
#: (A lone consumer group is loaded as a choreography of its own.)
Definition = Flow | Saga | Statechart | Choreography | Hybrid

#: File suffixes read as statechart documents.
CHART_SUFFIXES = (".yaml", ".yml", ".scxml")


def is_chart_file(reference: str) -> bool:
    """Whether a reference names a statechart document rather than ``module:attribute``."""
    return reference.lower().endswith(CHART_SUFFIXES)


def load_chart_file(path: str | Path) -> Statechart:
    """A statechart from a ``.yaml``/``.yml`` or ``.scxml`` file.

    Raises :class:`ConfigurationError` when the file cannot be read and
    :class:`~tripwright.errors.StatechartError` (with the line) when it is malformed. An
    SCXML document without a ``name`` takes the file's stem as its name.
    """
    from tripwright.flows.statechart.scxml import load_scxml
    from tripwright.flows.statechart.yaml import load_yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {str(file)!r}: {exc}") from None
    if file.suffix.lower() == ".scxml":
        return load_scxml(text, name=file.stem, source=str(file))
    return load_yaml(text, source=str(file))


def _resolve(reference: str) -> object:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"bad flow reference {reference!r}: use module:attribute or a .yaml/.scxml file"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from None


def load_reference(reference: str) -> list[object]:
    """What one reference names: the chart of a file, or the object(s) of an attribute."""
    if is_chart_file(reference):
        return [load_chart_file(reference)]
    value = _resolve(reference)
    if isinstance(value, Flow | Saga | Statechart | Choreography | ConsumerGroup | Hybrid):
        return [value]
    if not isinstance(value, Iterable):
        raise ConfigurationError(
            f"{reference!r} is a {type(value).__name__}, not a Flow, a Saga, a Statechart, "
            "a Choreography, a ConsumerGroup, a Hybrid or a list"
        )
    return list(value)


def load_flows(references: Iterable[str]) -> FlowRegistry:
    """A registry of the flows named by ``module:attribute`` references."""
    registry, _ = load_definitions(references)
    return registry


def load_definitions(references: Iterable[str]) -> tuple[FlowRegistry, dict[str, Definition]]:
    """The engine flows and the definitions (sagas, flows) named by the references.

    An attribute may be a :class:`Flow`, a :class:`Saga`, a :class:`Statechart`, a
    :class:`FlowRegistry` or an iterable of those; a ``.yaml``/``.yml``/``.scxml`` path is a
    statechart document; a :class:`Choreography`, a :class:`ConsumerGroup` or a
    :class:`Hybrid` too. Sagas, statecharts and consumer groups are compiled to engine
    flows for the registry (a :class:`StatechartFlow` is listed as its chart; a hybrid's
    parts are listed as the hybrid).
    """
    registry = FlowRegistry()
    definitions: dict[str, Definition] = {}
    for reference in references:
        for item in load_reference(reference):
            if isinstance(item, Statechart):
                registry.register(StatechartFlow(item))
                definitions[item.name] = item
            elif isinstance(item, StatechartFlow):
                registry.register(item)
                definitions.setdefault(item.name, item.chart)
            elif isinstance(item, Hybrid):
                item.register(registry)
                definitions[item.name] = item
            elif isinstance(item, Saga):
                registry.register(item.to_flow())
                definitions[item.name] = item
            elif isinstance(item, Choreography | ConsumerGroup):
                choreography = (
                    item if isinstance(item, Choreography) else Choreography(item.name, [item])
                )
                for flow in choreography.flows():
                    registry.register(flow)
                definitions[choreography.name] = choreography
            elif isinstance(item, Flow):
                registry.register(item)
                definitions.setdefault(item.name, item)
            else:
                raise ConfigurationError(
                    f"{reference!r} holds a {type(item).__name__}, not a Flow, a Saga, a "
                    "Statechart, a Choreography, a ConsumerGroup or a Hybrid"
                )
    return registry, definitions


def choreography_of(definitions: dict[str, Definition]) -> Choreography | None:
    """One choreography of every consumer group among ``definitions`` (a hybrid's
    included: what a worker's event bus serves), or None if there is none."""
    groups = [
        group
        for definition in definitions.values()
        if isinstance(definition, Choreography | Hybrid)
        for group in definition.groups
    ]
    if not groups:
        return None
    return Choreography("worker", groups)
