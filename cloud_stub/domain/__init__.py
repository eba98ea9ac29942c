"""The cloud stub's pure pieces: the request and token lifecycle, the review rules, the
re-delivery policy, the audit chain, API keys, the device request check and the
transparency counts. They import `protocol`, the standard library, `cloud_stub.errors`
and each other (and pydantic, for the public model of the transparency report), never
the store, the services or the entry points (docs/architecture.md, "The cloud stub's
floors")."""
