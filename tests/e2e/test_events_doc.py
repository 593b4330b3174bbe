"""The Python examples of docs/events.md run as printed, one after the other."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import run_python

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_events_doc_examples_run(tmp_path: Path) -> None:
    """The events guide's examples define a choreography, publish, handle and relay."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 3
    done = run_python("\n".join(blocks), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
