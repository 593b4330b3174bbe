"""The example of docs/hybrid.md runs as printed and prints what the page shows; its
SCXML snippets load."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import run_python
from tripwright.bus import Event
from tripwright.flows import ConsumerGroup, HandlerContext, Saga, SagaContext
from tripwright.flows.hybrid import EVENT, SAGA, Hybrid
from tripwright.flows.statechart import Send, load_scxml, load_yaml

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "hybrid.md").read_text()


def test_the_hybrid_docs_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    """Confirmed, failed-and-compensated and cancelled trips, and one notification."""
    section = PAGE[PAGE.index("## A complete example") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    printed = re.search(r"```text\n(.*?)```", section, re.S)
    assert code is not None
    assert printed is not None
    done = run_python(code.group(1), tmp_path)
    assert (done.returncode, done.stdout) == (0, printed.group(1)), done.stderr


def test_the_scxml_snippets_are_a_saga_invoke_and_an_event_send() -> None:
    """The page's invoke and send elements load into a chart as written."""
    invoke, send = re.findall(r"```xml\n(.*?)```", PAGE, re.S)
    chart = load_scxml(
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" name="t">'
        f'<state id="booking">{invoke}<onentry>{send}</onentry></state></scxml>'
    )
    [state] = chart.states
    [element] = state.invokes
    [[action]] = state.on_entry
    assert (element.type, element.src, element.id, element.autoforward, element.namelist) == (
        SAGA,
        "book_providers",
        "providers",
        True,
        ("trip_id", "hotel_full"),
    )
    assert isinstance(action, Send)
    assert (action.type, action.event, action.target) == (EVENT, "trip.confirmed", "trip")


class TripConfirmed(Event):
    type_name = "trip.confirmed"
    trip_id: str
    flight: str
    hotel: str


def test_the_yaml_lifecycle_is_a_sound_hybrid() -> None:
    """Wired to a saga with the page's steps and a notifier, the YAML chart validates."""
    [text] = re.findall(r"```yaml\n(.*?)```", PAGE, re.S)

    async def step(ctx: SagaContext) -> None:
        return None

    providers = Saga("book_providers")
    providers.step("flight", step, compensate=step)
    providers.wait("fare_ok", "fare.approved")
    notifier = ConsumerGroup("notifier")

    @notifier.handler(TripConfirmed)
    async def email(event: TripConfirmed, ctx: HandlerContext) -> None:
        return None

    hybrid = Hybrid(
        load_yaml(text), sagas=[providers], groups=[notifier], publishes=[TripConfirmed]
    )
    assert hybrid.validate() == []
