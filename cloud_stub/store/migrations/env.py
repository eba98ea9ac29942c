"""Alembic's environment for the store's revisions (ADR 0016).

The cloud stub runs migrations itself (`cloud_stub/store/migrate.py`): it passes an
open connection, already inside the transaction that also writes the `store.upgraded`
audit entry, as ``config.attributes["connection"]``. For ``--dry-run`` (Alembic's
offline mode) it passes the dialect's name instead, and the SQL is written to the
config's output buffer. Nothing here reads a URL or an ini file.
"""

from __future__ import annotations

from alembic import context

config = context.config

if context.is_offline_mode():
    context.configure(
        dialect_name=config.attributes["dialect_name"],
        literal_binds=True,
        transactional_ddl=False,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    context.configure(connection=config.attributes["connection"], transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
