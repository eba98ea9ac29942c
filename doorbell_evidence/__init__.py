"""`doorbell-evidence`: the agency's own check of the evidence it downloaded.

`fetch` saves a request's evidence into a folder (`folder.EvidenceFolder`): the age files,
the device-signed manifests, the release tokens they were made under, the devices'
identity certificates and the deployment's trust root. `verify` checks that folder end
to end, as a court would ask, using only the wire contract (`protocol/`): every file's
sha256 against the manifest, the manifest's signature against the device's identity as
certified by the trust root, and the token (its signatures, its device, its window)
covering every clip. docs/protocol.md, "Evidence an agency can check".
"""
