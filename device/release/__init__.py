"""The release side of the agent: MQTT link, clock, replay state, release handler,
re-seal, uploader, escrow publishing and the device audit log (docs/architecture.md)."""
