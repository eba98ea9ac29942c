"""The review console: server-rendered pages for reviewers, admins and agencies, served
by `cloud-stub serve` under ``/console/`` (docs/adr/0015-review-console.md)."""

from cloud_stub.console.app import create_console
from cloud_stub.console.settings import ApprovalMode, ConsoleSettings

__all__ = ["ApprovalMode", "ConsoleSettings", "create_console"]
