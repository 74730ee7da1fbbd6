"""Shared pytest setup. Each area keeps its fixtures in tests/support/<area>.py."""

pytest_plugins = [
    "tests.support.common",
    "tests.support.corpus",
    "tests.support.llama_server",
    "tests.support.eutils",
    "tests.support.eval_data",
    "tests.support.postgres",
]
