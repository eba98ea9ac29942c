"""Provisioning: `cloud-stub init` (a deployment directory) and `cloud-stub devices enroll`.

The operator runs both; docs/adr/0004-deployment-and-bundle.md says what is written where
and why keys are generated here rather than on the device.
"""
