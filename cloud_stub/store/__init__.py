"""The cloud stub's store: SQLAlchemy 2 models, the engine, and a few serialized helpers."""

from cloud_stub.store.engine import Store

__all__ = ["Store"]
