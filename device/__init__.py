"""The doorbell agent: records, seals and, under a valid release token, re-seals and uploads."""
