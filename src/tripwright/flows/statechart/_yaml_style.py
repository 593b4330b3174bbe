"""The YAML dialect of statechart documents: YAML 1.2 booleans, and the dumper's layout.

``on``, ``off``, ``yes`` and ``no`` are text (only ``true``/``false`` are booleans), so a
state's ``on:`` needs no quotes; the dumper writes short mappings of scalars on one line
and multi-line text (scripts) as ``|`` literals.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["Dumper", "Loader", "timer_event"]


def timer_event(state_id: str, number: int) -> str:
    """The event (and send id) of a state's ``number``-th timer (1-based), as the Python
    API's ``after()`` names it."""
    return f"tripwright.after.{state_id}.{number}"


_BOOL = "tag:yaml.org,2002:bool"


def _yaml12_booleans(resolvers: dict[Any, list[tuple[str, Any]]]) -> dict[Any, list[Any]]:
    """The resolvers with booleans as in YAML 1.2 (``true``/``false`` only): ``on``, ``off``,
    ``yes`` and ``no`` stay text, so ``on:`` needs no quotes."""
    out: dict[Any, list[Any]] = {}
    for first, entries in resolvers.items():
        kept = [(tag, regexp) for tag, regexp in entries if tag != _BOOL]
        if first in "tTfF":
            kept.append((_BOOL, _BOOL_TEXT))
        out[first] = kept
    return out


_BOOL_TEXT = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 booleans."""


class Dumper(yaml.SafeDumper):
    """Block style, with YAML 1.2 booleans, short scalar mappings on one line and
    multi-line text (scripts) as ``|`` literals."""


Loader.yaml_implicit_resolvers = _yaml12_booleans(yaml.SafeLoader.yaml_implicit_resolvers)
Dumper.yaml_implicit_resolvers = _yaml12_booleans(yaml.SafeDumper.yaml_implicit_resolvers)


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_mapping(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.MappingNode:
    scalars = all(
        isinstance(v, str | int | float | bool) and "\n" not in str(v) for v in value.values()
    )
    short = scalars and len(value) <= 4 and sum(len(f"{k}{v}") + 4 for k, v in value.items()) < 70
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=short)


Dumper.add_representer(str, _represent_text)
Dumper.add_representer(dict, _represent_mapping)
