"""`CloudService`: the cloud stub's parts wired together over one store.

`CloudService.open` reads the deployment directory (settings, trust root and release
signers, escrow identity, court registry, policy file), opens the store, creates the
schema in a new store or checks an existing one (`prepare_store`: a store behind this
version's revision is refused with `StoreOutdated`, naming its revision and `cloud-stub
store upgrade`, ADR 0016), and syncs the device registry. Raises `ConfigError` when anything is
missing or ill-formed, naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cloud_stub.config import ApiSection, ServiceLimits, default_store_url, load_deployment
from cloud_stub.policy import load_court_registry, load_limits
from cloud_stub.policy.config import Limits, followup_policy, policy_for_limits
from cloud_stub.policy.courts import Court
from cloud_stub.services.context import (
    Clock,
    DeviceCaller,
    PrincipalCaller,
    ReleasePublisher,
    ServiceCore,
    utc_now,
)
from cloud_stub.services.device_events import DeviceEvents
from cloud_stub.services.escrow import Escrow, load_escrow_identity
from cloud_stub.services.evidence import Evidence
from cloud_stub.services.intake import FollowUp, Intake
from cloud_stub.services.issuing import Issuer
from cloud_stub.services.publishing import Publisher
from cloud_stub.services.reissuing import Reissuing
from cloud_stub.services.reviewing import Reviewing
from cloud_stub.services.signed_reissue import SignedReissue
from cloud_stub.services.signed_review import SignedReview
from cloud_stub.services.token_signing import TokenSigner
from cloud_stub.store import Store
from cloud_stub.store.evidence_files import HashState
from cloud_stub.store.migrate import UPGRADE_COMMAND
from cloud_stub.store.schema import prepare_store
from protocol.bundle import DeploymentLayout

__all__ = ["CloudService", "DeviceCaller", "PrincipalCaller", "ReleasePublisher"]


def policy_file(layout: DeploymentLayout) -> Path | None:
    """``cloud/policy.toml`` when the operator wrote one, else the packaged defaults."""
    path = layout.cloud_dir / "policy.toml"
    return path if path.exists() else None


class CloudService:
    """The service facade the API, the MQTT link and the CLI use."""

    def __init__(
        self,
        core: ServiceCore,
        *,
        signer: TokenSigner,
        escrow: Escrow,
        policy_limits: Limits,
        courts: Mapping[str, Court],
    ) -> None:
        """`policy_limits` are the policy file's, read once: the legal check is built from
        them, and they set the approvals a basis needs and cap a token's life."""
        self.core = core
        self.signer = signer
        self.escrow = escrow
        self.policy_limits = policy_limits
        self.intake = Intake(core, policy=policy_for_limits(policy_limits), courts=courts,
                             limits=policy_limits)
        self.follow_up = FollowUp(core, policy=followup_policy(policy_limits.warrant),
                                  courts=courts)
        self.issuer = Issuer(core, signer=signer, escrow=escrow, limits=policy_limits)
        # the tokens' way to the broker: the MQTT link publishes and re-publishes with it
        self.releaser = Publisher(core)
        self.reviewing = Reviewing(core, self.issuer, self.releaser, self.intake)
        self.signed_review = SignedReview(core, self.issuer, self.releaser,
                                          self.intake)  # trust root v2
        self.reissuing = Reissuing(core, self.issuer, self.releaser, self.intake)
        self.signed_reissue = SignedReissue(core, self.signed_review, self.reissuing,
                                            self.releaser, self.intake)  # trust root v2
        self.evidence = Evidence(core)
        self.events = DeviceEvents(core, escrow)

    @classmethod
    def open(
        cls,
        deployment: Path,
        *,
        store_url: str | None = None,
        limits: ServiceLimits | None = None,
        clock: Clock = utc_now,
        api_url: str | None = None,
    ) -> CloudService:
        """Open the deployment's service. ``api_url`` overrides ``[api] url`` (the base of
        upload URLs in tokens) for a service reached at another address."""
        layout = DeploymentLayout(deployment)
        settings = load_deployment(layout)
        if api_url is not None:
            settings = settings.model_copy(update={"api": ApiSection(url=api_url)})
        store = Store(store_url or default_store_url(layout))
        try:
            prepare_store(store, upgrade_hint=f"{UPGRADE_COMMAND} --deployment {deployment}"
                          + (" --store-url <the same URL>" if store_url else ""))
        except BaseException:
            store.dispose()
            raise
        core = ServiceCore(
            layout=layout, settings=settings, store=store,
            limits=limits or ServiceLimits(), clock=clock,
        )
        signer = TokenSigner.load(layout, core.now())
        escrow = Escrow(load_escrow_identity(layout.escrow_identity))
        path = policy_file(layout)
        service = cls(
            core,
            signer=signer,
            escrow=escrow,
            policy_limits=load_limits(path),
            courts=load_court_registry(layout.court_registry),
        )
        core.sync_devices()
        return service

    @property
    def store(self) -> Store:
        return self.core.store

    def authenticate(self, api_key: str) -> PrincipalCaller:
        return self.core.authenticate(api_key)

    def authenticate_device(self, *, method: str, path: str, query: str,
                            headers: Mapping[str, str], body: bytes, body_hash: HashState
                            ) -> DeviceCaller:
        return self.evidence.authenticate(method=method, path=path, query=query,
                                          headers=headers, body=body, body_hash=body_hash)

    def set_publisher(self, publisher: ReleasePublisher | None) -> None:
        self.core.set_publisher(publisher)

    def close(self) -> None:
        self.core.store.dispose()
