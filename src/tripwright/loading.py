"""Load flow definitions from ``module:attribute`` references."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from tripwright.engine.flow import Flow
from tripwright.engine.registry import FlowRegistry
from tripwright.errors import ConfigurationError

__all__ = ["load_flows"]


def load_flows(references: Iterable[str]) -> FlowRegistry:
    """A registry of the flows named by ``module:attribute`` references.

    The attribute may be a :class:`Flow`, a :class:`FlowRegistry` or an iterable of flows.
    """
    registry = FlowRegistry()
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
        flows: Iterable[object] = [value] if isinstance(value, Flow) else value
        try:
            items = list(flows)
        except TypeError:
            raise ConfigurationError(
                f"{reference!r} is a {type(value).__name__}, not a Flow or flows"
            ) from None
        for item in items:
            if not isinstance(item, Flow):
                raise ConfigurationError(f"{reference!r} holds a {type(item).__name__}, not a Flow")
            registry.register(item)
    return registry
