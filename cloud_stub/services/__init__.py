"""The cloud stub's use cases over the store: intake, review (by decision and by
signature), issuing and publishing tokens, re-issuing, evidence, escrow, device events,
transparency reporting and the release-log client. `cloud_service.CloudService` wires
them together for the entry points (the HTTP API, the console, the CLI and the MQTT
link); docs/architecture.md, "The cloud stub's floors"."""
