"""The HTTP API (FastAPI): thin routes over `CloudService`, deny by default."""

from cloud_stub.api.app import create_app

__all__ = ["create_app"]
