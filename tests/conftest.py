"""Shared fixtures. Broker and database fixtures live in tests/fixtures/ and are loaded here.

Hypothesis runs derandomized by default, so `make test` here and in CI draw the same
examples and a green run locally means the same green run in CI. To explore with fresh
random examples, run `HYPOTHESIS_PROFILE=explore .venv/bin/pytest tests/...`.
"""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

pytest_plugins = [
    "tests.fixtures.deployment",
    "tests.fixtures.broker",
    "tests.fixtures.release",
    "tests.fixtures.vault",
    "tests.fixtures.policy",
    "tests.fixtures.agent",
    "tests.fixtures.cloud",
    "tests.fixtures.postgres",
    "tests.fixtures.tlog",  # release log and witnesses as processes (ADR 0014)
    "tests.fixtures.evidence",  # the cloud's evidence endpoint behind a recording proxy
]
