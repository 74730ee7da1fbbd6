"""The local evidence engine: record store, lexical and dense indexes, hybrid fusion, demo corpus.

Submodules are imported where they are used, so ``import clinfo.corpus`` loads nothing heavy.
"""
