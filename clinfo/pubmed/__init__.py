"""What is PubMed's and not clinfo's: its query language (:mod:`.query`), its citation record
(:mod:`.record`), its XML formats (:mod:`.xml`) and NLM's vocabulary (:mod:`.vocabulary`).

Both the E-utilities source and the local corpus build on this package; it imports nothing of
clinfo's but :mod:`clinfo.errors`.
"""
