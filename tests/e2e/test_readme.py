"""The README's Python example runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import run_python

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_runs(tmp_path: Path) -> None:
    """The engine example in the README completes and prints the paid context."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    done = run_python(code.group(1), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "'paid': True" in done.stdout
