"""The public release log's formats: RFC 9162 Merkle proofs and the C2SP transparency-log
specifications (signed-note, tlog-checkpoint, tlog-cosignature, tlog-proof, tlog-policy,
tlog-tiles), the release statement, and the doorbell's pure check of a token's log proof.

No I/O here: bytes, keys and sizes in, values or a `TlogError` out. The log and witness
processes live in `release_log/`. See docs/protocol.md "Release log" and ADR 0014.
"""
