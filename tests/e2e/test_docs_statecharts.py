"""The examples of docs/statecharts.md load, run and print what the page shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.e2e.test_cli import run_cli
from tests.helpers import run_python
from tripwright.flows.statechart import load_scxml, load_yaml

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "statecharts.md").read_text()


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", PAGE, re.S)


def test_yaml_and_scxml_examples_load() -> None:
    """Every YAML and SCXML example on the page is a valid chart."""
    charts = [load_yaml(text) for text in blocks("yaml")] + [
        load_scxml(text) for text in blocks("xml")
    ]
    assert [c.name for c in charts] == ["booking", "hold"]


def test_python_examples_print_what_the_page_shows(tmp_path: Path) -> None:
    """Each Python example prints exactly the text block that follows it."""
    pairs = re.findall(r"```python\n(.*?)```\s*```text\n(.*?)```", PAGE, re.S)
    assert len(pairs) == 3
    for number, (code, printed) in enumerate(pairs):
        done = run_python(code, tmp_path, f"example{number}.py")
        assert (done.returncode, done.stdout) == (0, printed), done.stderr


def test_simulate_example_prints_what_the_page_shows() -> None:
    """The `flows simulate` example prints the JSON on the page."""
    command = next(c for c in blocks("sh") if "simulate" in c).split()
    assert command[:3] == ["tripwright", "flows", "simulate"]
    done = run_cli(*command[1:], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(blocks("json")[0])
