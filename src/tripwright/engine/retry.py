"""Retry policies: how many attempts, how long between them, which errors retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import tenacity

from tripwright.errors import ConfigurationError, FinalError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter between attempts of one step.

    The delay before attempt ``n + 1`` is drawn uniformly between ``initial_interval`` and
    ``initial_interval * backoff_coefficient ** (n - 1)``, capped at ``max_interval``
    (without jitter: exactly the upper bound). Errors in ``non_retryable`` and any
    :class:`FinalError` fail the step at once; otherwise errors in ``retry_on`` retry.
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float = 60.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ConfigurationError("retry intervals must be >= 0")
        if self.backoff_coefficient < 1:
            raise ConfigurationError("backoff_coefficient must be >= 1")

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` may be retried at all under this policy."""
        if isinstance(error, (FinalError, self.non_retryable)):
            return False
        return isinstance(error, self.retry_on)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based), which failed with ``error``, retries."""
        return attempt < self.max_attempts and self.is_retryable(error)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait: tenacity.wait.wait_base
        if self.jitter:
            wait = tenacity.wait_random_exponential(
                multiplier=self.initial_interval,
                max=self.max_interval,
                exp_base=self.backoff_coefficient,
                min=min(self.initial_interval, self.max_interval),
            )
        else:
            wait = tenacity.wait_exponential(
                multiplier=self.initial_interval,
                max=self.max_interval,
                exp_base=self.backoff_coefficient,
            )
        state = tenacity.RetryCallState(
            retry_object=cast(tenacity.BaseRetrying, None), fn=None, args=(), kwargs={}
        )
        state.attempt_number = max(1, attempt)
        return float(wait(state))

    def describe(self) -> dict[str, object]:
        """The policy as JSON-friendly data (for hashing and diagrams)."""
        return {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval,
            "backoff_coefficient": self.backoff_coefficient,
            "max_interval": self.max_interval,
            "jitter": self.jitter,
            "retry_on": [t.__qualname__ for t in self.retry_on],
            "non_retryable": [t.__qualname__ for t in self.non_retryable],
        }
