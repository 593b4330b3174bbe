"""The flows a process knows, by name and version."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tripwright.engine.flow import Flow
from tripwright.errors import DefinitionError, UnknownFlowError

__all__ = ["FlowRegistry"]


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in version.split("."))


class FlowRegistry:
    """Flows by name; new runs take the newest version, running runs keep theirs."""

    def __init__(self, flows: Iterable[Flow] = ()) -> None:
        self._flows: dict[str, dict[str, Flow]] = {}
        for flow in flows:
            self.register(flow)

    def register(self, flow: Flow) -> Flow:
        """Add ``flow``; a second, different definition under the same key is an error."""
        flow.validate()
        versions = self._flows.setdefault(flow.name, {})
        existing = versions.get(flow.version)
        if existing is not None and existing is not flow:
            raise DefinitionError(
                f"flow {flow.key} is already registered with another definition", flow=flow.name
            )
        versions[flow.version] = flow
        return flow

    def get(self, name: str, version: str | None = None) -> Flow:
        """The flow ``name`` at ``version`` (default: the newest)."""
        versions = self._flows.get(name)
        if not versions:
            known = ", ".join(sorted(self._flows)) or "none"
            raise UnknownFlowError(f"unknown flow {name!r} (registered: {known})", flow=name)
        if version is None:
            return versions[max(versions, key=_version_key)]
        try:
            return versions[version]
        except KeyError:
            raise UnknownFlowError(
                f"flow {name!r} has no version {version!r} (have: {', '.join(sorted(versions))})",
                flow=name,
            ) from None

    def keys(self) -> list[str]:
        """Every ``name@version`` registered."""
        return [flow.key for versions in self._flows.values() for flow in versions.values()]

    def __iter__(self) -> Iterator[Flow]:
        for versions in self._flows.values():
            yield from versions.values()

    def __contains__(self, name: object) -> bool:
        return name in self._flows

    def __len__(self) -> int:
        return sum(len(v) for v in self._flows.values())
