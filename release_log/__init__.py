"""The public release log and its witnesses, each its own process.

- `doorbell-log` (`log_cli`): an append-only Merkle log of release statements with
  crash-safe appends (`store`), checkpoints signed with its Ed25519 key and cosigned by a
  witness quorum (`cosigning`), served as c2sp.org/tlog-tiles over HTTP (`log_server`).
- `doorbell-witness` (`witness_cli`): one witness, its own key and SQLite state
  (`witness_state`), answering c2sp.org/tlog-witness `add-checkpoint` (`witness_server`).

Formats and every trust decision live in `protocol.tlog`; see docs/architecture.md
"Release log" and ADR 0014.
"""
