"""Recount clinfo/data/term_background.json.gz (document frequencies of stems) from the demo corpus.

Run after the demo corpus or the stemmer changes; tests/pipeline/test_relevance.py checks the shipped table
still matches a fresh count.

    python scripts/build_term_background.py
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from clinfo.terms import BACKGROUND_DATA, count_background, demo_texts, write_background


def main() -> None:
    bg = count_background(demo_texts())
    path = Path(str(resources.files("clinfo") / "data" / BACKGROUND_DATA))
    write_background(bg, path)
    print(f"{path}: {bg.docs} documents, {len(bg.freqs)} stems, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
