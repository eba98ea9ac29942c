"""Shared fixtures. Broker and database fixtures live in tests/fixtures/ and are loaded here."""
