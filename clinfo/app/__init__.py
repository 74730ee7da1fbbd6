"""The Streamlit chat app's library side.

``view`` (Markdown escaping and answer rendering as text), ``export`` (Markdown, BibTeX, RIS,
JSON), ``history`` (the SQLite conversation store), ``worker`` (runs a question on a worker
thread and hands progress back through a queue) and ``page`` (the Streamlit page itself, the
only module here that imports streamlit). ``app.py`` at the repository root calls ``page.main``.
"""
