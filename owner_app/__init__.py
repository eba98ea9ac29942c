"""`doorbell-owner`: the owner's command line, on the owner's own machine (not the Pi).

It reads one doorbell's release notices and status with the owner bundle that
`cloud-stub devices enroll` (or `devices owner-cert`) wrote: `bundle` reads and checks
the bundle, `link` is the MQTT seam (TLS, persistent session), `ledger` the local
append-only record of notices, `reader` decides what each delivered payload becomes,
`render` prints, `cli` is the thin command line. Payloads are parsed only by
`protocol.messages`.
"""
