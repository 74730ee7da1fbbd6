"""``python -m clinfo.cli``."""

from clinfo.cli.root import main

main()
