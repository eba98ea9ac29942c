"""doorbell-review: a reviewer approves or denies release requests with a key that never
leaves their machine (docs/adr/0013-trust-root-v2.md). Talks to the cloud stub over
HTTP only and imports `protocol` only."""
