"""Store failures surface as Tripwright errors and lose nothing already committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripwright.engine import Engine, Flow, FlowRegistry, StepContext
from tripwright.engine.store import create_store
from tripwright.errors import SchemaError, StoreClosedError, StoreError


async def _noop(ctx: StepContext) -> None:
    return None


async def test_closed_store_raises_store_closed(store_url: str) -> None:
    """Using a store after close raises StoreClosedError; reopening shows the data kept."""
    flow = Flow("kept")
    flow.add_step("a", _noop)
    store = create_store(store_url)
    await store.open()
    engine = Engine(store, FlowRegistry([flow]))
    run = await engine.start("kept", {"x": 1})
    await store.close()
    with pytest.raises(StoreClosedError):
        await engine.get(run.id)
    again = create_store(store_url)
    await again.open()
    try:
        assert (await again.get_run(run.id)).input == {"x": 1}
    finally:
        await again.close()


async def test_unmigrated_sqlite_file_raises_schema_error(tmp_path: Path) -> None:
    """Opening a database without the schema names the fix: `tripwright db upgrade`."""
    store = create_store(f"sqlite:///{tmp_path / 'blank.db'}")
    with pytest.raises(SchemaError, match="tripwright db upgrade"):
        await store.open()


async def test_unreachable_postgres_is_a_store_error() -> None:
    """A PostgreSQL URL nobody listens on raises StoreError, without the password."""
    store = create_store("postgresql://user:secret@127.0.0.1:1/nodb")
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "secret" not in str(caught.value)


async def test_a_worker_stops_when_its_store_is_closed(store_url: str) -> None:
    """A worker whose store was closed stops with StoreClosedError instead of spinning."""
    flow = Flow("closing")
    flow.add_step("a", _noop)
    store = create_store(store_url)
    await store.open()
    engine = Engine(store, FlowRegistry([flow]))
    await store.close()
    with pytest.raises(StoreClosedError):
        await engine.worker().run()
