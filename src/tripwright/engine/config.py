"""Engine configuration, as one frozen object."""

from __future__ import annotations

from dataclasses import dataclass, replace

from tripwright.errors import ConfigurationError

__all__ = ["EngineConfig"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How workers lease, poll and batch.

    ``lease_ttl`` bounds how long a crashed worker's runs stay blocked; the heartbeat must
    come well within it. ``max_concurrency`` is the number of runs in flight per worker;
    ``max_batch`` the most checkpoints grouped in one transaction.
    """

    lease_ttl: float = 30.0
    heartbeat_interval: float = 10.0
    poll_interval: float = 0.2
    max_concurrency: int = 64
    claim_batch: int = 64
    max_batch: int = 512
    #: How long a stopping worker lets in-flight steps finish (default: a third of the
    #: lease TTL, so no other worker takes a run that is still executing).
    shutdown_grace: float | None = None

    def __post_init__(self) -> None:
        if self.lease_ttl <= 0 or self.heartbeat_interval <= 0 or self.poll_interval <= 0:
            raise ConfigurationError("lease_ttl, heartbeat_interval and poll_interval must be > 0")
        if self.heartbeat_interval >= self.lease_ttl:
            raise ConfigurationError(
                f"heartbeat_interval ({self.heartbeat_interval}s) must be shorter than "
                f"lease_ttl ({self.lease_ttl}s)"
            )
        if self.shutdown_grace is not None and not 0 <= self.shutdown_grace < self.lease_ttl:
            raise ConfigurationError(
                f"shutdown_grace ({self.shutdown_grace}s) must be >= 0 and shorter than "
                f"lease_ttl ({self.lease_ttl}s)"
            )
        if self.max_concurrency < 1 or self.claim_batch < 1 or self.max_batch < 1:
            raise ConfigurationError("max_concurrency, claim_batch and max_batch must be >= 1")

    @property
    def grace(self) -> float:
        """The shutdown grace period in effect."""
        return self.lease_ttl / 3 if self.shutdown_grace is None else self.shutdown_grace

    def with_(self, **changes: float | int) -> EngineConfig:
        """A copy with some settings changed."""
        return replace(self, **changes)  # type: ignore[arg-type]
