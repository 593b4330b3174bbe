"""``python -m tripwright``."""

from tripwright.cli import main

main()
