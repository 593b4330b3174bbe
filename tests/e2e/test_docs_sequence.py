"""The complete example of docs/sequence.md runs as printed and prints what the page says."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import run_python

PAGE = Path(__file__).resolve().parents[2] / "docs" / "sequence.md"


def test_the_sequence_docs_example_runs_and_prints_what_the_page_shows(tmp_path: Path) -> None:
    """The re-acquire example completes and its output matches the page's output block."""
    text = PAGE.read_text()
    section = text[text.index("## A complete example") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    printed = re.search(r"```text\n(.*?)```", section, re.S)
    assert code is not None
    assert printed is not None
    done = run_python(code.group(1), tmp_path)
    assert done.returncode == 0, done.stderr
    output = re.sub(r"[0-9a-f]{32}", "<run id>", done.stdout)
    assert output == printed.group(1)
