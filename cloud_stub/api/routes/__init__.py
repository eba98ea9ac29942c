"""One router per area; `cloud_stub.api.app` includes them all."""
