"""Load flow definitions from ``module:attribute`` references."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from tripwright.engine.flow import Flow
from tripwright.engine.registry import FlowRegistry
from tripwright.errors import ConfigurationError
from tripwright.flows.saga import Saga

__all__ = ["Definition", "load_definitions", "load_flows"]

#: What a ``module:attribute`` reference may name: an engine flow or a model definition.
Definition = Flow | Saga


def load_flows(references: Iterable[str]) -> FlowRegistry:
    """A registry of the flows named by ``module:attribute`` references."""
    registry, _ = load_definitions(references)
    return registry


def load_definitions(references: Iterable[str]) -> tuple[FlowRegistry, dict[str, Definition]]:
    """The engine flows and the definitions (sagas, flows) named by the references.

    An attribute may be a :class:`Flow`, a :class:`Saga`, a :class:`FlowRegistry` or an
    iterable of flows and sagas. Sagas are compiled to engine flows for the registry.
    """
    registry = FlowRegistry()
    definitions: dict[str, Definition] = {}
    for reference in references:
        module_name, _, attribute = reference.partition(":")
        if not module_name or not attribute:
            raise ConfigurationError(f"bad flow reference {reference!r}: use module:attribute")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
        try:
            value = getattr(module, attribute)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from None
        items: list[object]
        if isinstance(value, Flow | Saga):
            items = [value]
        else:
            try:
                items = list(value)
            except TypeError:
                raise ConfigurationError(
                    f"{reference!r} is a {type(value).__name__}, not a Flow, a Saga or a list"
                ) from None
        for item in items:
            if isinstance(item, Saga):
                registry.register(item.to_flow())
                definitions[item.name] = item
            elif isinstance(item, Flow):
                registry.register(item)
                definitions.setdefault(item.name, item)
            else:
                raise ConfigurationError(
                    f"{reference!r} holds a {type(item).__name__}, not a Flow or a Saga"
                )
    return registry, definitions
