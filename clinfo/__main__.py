"""``python -m clinfo``."""

from clinfo.cli import main

main()
