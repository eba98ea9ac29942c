"""Shared fixtures. Broker and database fixtures live in tests/fixtures/ and are loaded here."""

pytest_plugins = [
    "tests.fixtures.deployment",
    "tests.fixtures.broker",
    "tests.fixtures.release",
    "tests.fixtures.vault",
    "tests.fixtures.policy",
    "tests.fixtures.agent",
    "tests.fixtures.cloud",
    "tests.fixtures.postgres",
]
