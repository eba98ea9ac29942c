"""The main job: a complete local demonstration of sealed-doorbell (`make demo`).

It creates a fresh deployment, starts a private mosquitto with the deployment's TLS
config and ACL, the cloud stub and the agent on the simulated camera, and walks through
recording, refusals, a court-signed warrant, the release and the agency's retrieval.
"""
