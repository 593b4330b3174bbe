"""Unit tests of the engine's small parts: clock, retry policy, definitions, codec, URLs."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import tripwright
from tripwright.engine import Flow, FlowRegistry, RetryPolicy, StepContext, VirtualClock
from tripwright.engine.codec import dumps, loads
from tripwright.engine.config import EngineConfig
from tripwright.engine.store import parse_store_url
from tripwright.errors import (
    ConfigurationError,
    ContextNotSerializableError,
    DefinitionError,
    FinalError,
    StepTimeoutError,
    TripwrightError,
    UnknownFlowError,
)


async def _noop(ctx: StepContext) -> None:
    return None


async def test_virtual_clock_wakes_sleepers_in_deadline_order() -> None:
    """Advancing a virtual clock wakes sleepers in deadline order at their own times."""
    clock = VirtualClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 20), ("a", 10), ("c", 30))]
    await asyncio.sleep(0)
    await clock.advance(25)
    assert woke == [("a", 110.0), ("b", 120.0)]
    assert clock.now() == 125.0
    await clock.advance_to_next()
    assert woke[-1] == ("c", 130.0)
    await asyncio.gather(*tasks)


async def test_virtual_clock_timeout_raises_step_timeout() -> None:
    """run_with_timeout on a virtual clock raises StepTimeoutError when time passes first."""
    clock = VirtualClock()
    never = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(clock.run_with_timeout(never, 5.0))
    while clock.next_deadline() is None:  # noqa: ASYNC110 - waiting for the sleeper to register
        await asyncio.sleep(0)
    await clock.advance(5.0)
    with pytest.raises(StepTimeoutError):
        await task
    assert never.cancelled()


def test_retry_delays_grow_and_stay_within_bounds() -> None:
    """Backoff grows exponentially from the initial interval and is capped."""
    policy = RetryPolicy(initial_interval=1.0, backoff_coefficient=2.0, max_interval=10.0)
    fixed = RetryPolicy(initial_interval=1.0, max_interval=10.0, jitter=False)
    assert [fixed.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    for attempt in range(1, 10):
        assert 1.0 <= policy.delay(attempt) <= min(10.0, 2.0 ** (attempt - 1))


def test_retry_policy_classifies_errors() -> None:
    """FinalError and non_retryable errors never retry; retry_on narrows what does."""
    policy = RetryPolicy(max_attempts=3, retry_on=(ConnectionError,), non_retryable=(KeyError,))
    assert policy.should_retry(ConnectionError(), 1)
    assert not policy.should_retry(ConnectionError(), 3)
    assert not policy.should_retry(ValueError(), 1)
    assert not policy.should_retry(FinalError("no"), 1)
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_attempts=0)


def test_flow_definition_errors_are_named() -> None:
    """Duplicate steps, bad handlers and empty flows are rejected with the culprit named."""
    flow = Flow("f")
    flow.add_step("a", _noop, on_failure="missing")
    with pytest.raises(DefinitionError, match="duplicate step name 'a'"):
        flow.add_step("a", _noop)
    with pytest.raises(DefinitionError, match="unknown step 'missing'"):
        flow.validate()
    with pytest.raises(DefinitionError, match="no steps"):
        FlowRegistry([Flow("empty")])
    with pytest.raises(DefinitionError, match="invalid flow name"):
        Flow("bad name!")


def test_definition_hash_tracks_changes() -> None:
    """The definition hash is stable for one definition and changes with its steps."""

    def build(timeout: float) -> Flow:
        flow = Flow("h")
        flow.add_step("a", _noop, timeout=timeout)
        return flow

    assert build(1.0).definition_hash == build(1.0).definition_hash
    assert build(1.0).definition_hash != build(2.0).definition_hash


def test_registry_picks_newest_version_and_keeps_old_ones() -> None:
    """New runs take the newest version; older versions stay reachable by number."""
    registry = FlowRegistry()
    for version in ("1", "2", "10"):
        flow = Flow("v", version=version)
        flow.add_step("a", _noop)
        registry.register(flow)
    assert registry.get("v").version == "10"
    assert registry.get("v", "2").version == "2"
    with pytest.raises(UnknownFlowError):
        registry.get("v", "3")
    other = Flow("v", version="2")
    other.add_step("a", _noop)
    with pytest.raises(DefinitionError, match="already registered"):
        registry.register(other)


def test_codec_round_trips_json_and_names_the_bad_path() -> None:
    """JSON encoding keeps Decimals as strings and names where a bad value sits."""
    assert loads(dumps({"price": Decimal("12.50"), "n": [1, 2]})) == {"price": "12.50", "n": [1, 2]}
    with pytest.raises(ContextNotSerializableError, match=r"\$\.items\[1\]"):
        dumps({"items": [1, {1, 2}]}, what="run context")
    with pytest.raises(ContextNotSerializableError):
        dumps({"x": float("nan")})
    for bad in ("a\x00b", "x\ud800", "\\ud83d" + "\ude00", "\udc00"):
        with pytest.raises(ContextNotSerializableError):
            dumps({"s": bad})
    for good in ("\\ud800", "\\u0000", "😀", "\\😀", "plain"):
        assert loads(dumps({"s": good})) == {"s": good}


def test_store_urls_are_parsed_or_rejected() -> None:
    """SQLite and PostgreSQL URLs parse; anything else is a ConfigurationError."""
    assert parse_store_url("sqlite:///rel.db").path == "rel.db"
    assert parse_store_url("sqlite:////tmp/abs.db").path == "/tmp/abs.db"
    assert parse_store_url("postgres://u@h/db").dsn == "postgresql://u@h/db"
    for bad in ("", "nope", "mysql://h/db", "sqlite://", "postgresql://u@h:port/db"):
        with pytest.raises(ConfigurationError):
            parse_store_url(bad)


def test_config_rejects_timings_that_break_leases() -> None:
    """A heartbeat or a shutdown grace not shorter than the lease TTL is refused."""
    with pytest.raises(ConfigurationError, match="heartbeat_interval"):
        EngineConfig(lease_ttl=5, heartbeat_interval=5)
    with pytest.raises(ConfigurationError, match="shutdown_grace"):
        EngineConfig(lease_ttl=6, heartbeat_interval=2, shutdown_grace=6)
    assert EngineConfig(lease_ttl=6, heartbeat_interval=2).grace == 2


def test_errors_share_one_root_and_their_builtin() -> None:
    """Every Tripwright error is a TripwrightError and carries its run context."""
    error = UnknownFlowError("unknown flow 'x'", flow="x")
    assert isinstance(error, TripwrightError)
    assert isinstance(error, LookupError)
    assert str(error) == "unknown flow 'x' (flow=x)"
    assert issubclass(StepTimeoutError, TimeoutError)


def test_public_api_is_pinned() -> None:
    """The package re-exports exactly its documented public names."""
    assert sorted(tripwright.__all__) == sorted(
        [
            "Clock",
            "Complete",
            "ConfigurationError",
            "ContextNotSerializableError",
            "DefinitionError",
            "Engine",
            "EngineConfig",
            "EventRecord",
            "Fail",
            "FinalError",
            "Flow",
            "FlowRegistry",
            "Goto",
            "InvalidRunStateError",
            "JournalEntry",
            "JournalKind",
            "LeaseLostError",
            "Position",
            "RealClock",
            "RetryPolicy",
            "RunNotFoundError",
            "RunRecord",
            "RunStatus",
            "RunSummary",
            "SchemaError",
            "Sleep",
            "StepContext",
            "StepTimeoutError",
            "Store",
            "StoreClosedError",
            "StoreError",
            "TimerInfo",
            "TripwrightError",
            "UnknownEventError",
            "UnknownFlowError",
            "VirtualClock",
            "WaitEvent",
            "Worker",
            "__version__",
            "create_store",
            "upgrade",
        ]
    )
    for name in tripwright.__all__:
        assert getattr(tripwright, name) is not None
        assert not name.startswith("_") or name == "__version__"
