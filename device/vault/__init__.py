"""The sealed store: age stream format, clip files, SQLite index, epochs, escrow outbox,
retention and recovery. Nothing here ever holds a key that opens a finished clip."""

from device.vault.agestream import AgeStreamReader, AgeStreamWriter
from device.vault.epochs import Epoch, EpochKeeper
from device.vault.index import ClipEvent, ClipIndex, ClipRecord, ClipState, EpochRecord
from device.vault.outbox import EscrowOutbox, OutboxItem
from device.vault.recovery import RecoveryReport
from device.vault.reseal import reseal
from device.vault.retention import RetentionPlan, plan_retention
from device.vault.store import SealedStore, StoreHealth, open_store
from device.vault.writer import ClipWriter

__all__ = [
    "AgeStreamReader",
    "AgeStreamWriter",
    "ClipEvent",
    "ClipIndex",
    "ClipRecord",
    "ClipState",
    "ClipWriter",
    "Epoch",
    "EpochKeeper",
    "EpochRecord",
    "EscrowOutbox",
    "OutboxItem",
    "RecoveryReport",
    "RetentionPlan",
    "SealedStore",
    "StoreHealth",
    "open_store",
    "plan_retention",
    "reseal",
]
