"""The device's trust decision on a token under trust root v2.

`verify_release` is `protocol.token.verify_token` with rule 4 replaced by the v2
signing rules and the court rules inserted after it (docs/protocol.md section 3,
docs/adr/0013-trust-root-v2.md). Bytes, a trust root, a verification context and a
read-only replay view in; the typed claims or `TokenRejected` with a stable code out:

 1-3. size cap, structure and claims schema, headers    oversized, malformed, bad_header
 4a. a signature under a policy or reviewer kid fails    bad_signature
 4b. fewer distinct valid policy signatures than the basis's rule
                                                         policy_signature_missing
 4c. fewer distinct valid reviewer signatures            review_signature_missing
 4d. those reviewers from too few organisations          review_orgs_too_few
 4e. the basis needs a court and no `warrant` claim      warrant_missing
 4f. the statement's court is not in the trust root      court_unknown
 4g. the court's signature does not verify               court_signature_invalid
 4h. the order is not a search warrant                   warrant_order_type
 4i. the warrant does not name this device               warrant_wrong_device
 4j. the token window is not inside the warrant window   warrant_window_exceeded
 4k. iat outside [issued, expires), or exp after expires warrant_not_in_force
 4l. document sha256, docket or court differ from the case
                                                         warrant_case_mismatch
 5-11. as `verify_token`                                 wrong_device ... bad_keys

Signatures by any other key (root, court, unknown) neither count nor reject.
"""

from __future__ import annotations

from protocol import _jws
from protocol.errors import RejectionCode, TokenRejected
from protocol.timefmt import format_time
from protocol.token import (
    ReleaseClaims,
    ReplayView,
    VerificationContext,
    check_claims,
    parse_token,
    verify_token,
)
from protocol.trust_root_v2 import AnyTrustRoot, TrustRootV2
from protocol.warrant import SEARCH_WARRANT


def _reject(code: RejectionCode, detail: str) -> TokenRejected:
    return TokenRejected(code, detail)


def check_signatures_v2(
    claims: ReleaseClaims, envelope: _jws.Envelope, root: TrustRootV2
) -> None:
    """Rules 4a-4d. Raises TokenRejected."""
    rule = root.rules[claims.basis]
    policy: set[str] = set()
    reviewers: set[str] = set()
    for sig in envelope.signatures:
        if sig.kid in root.policy_keyids:
            bucket, role = policy, "policy"
        elif sig.kid in root.reviewers:
            bucket, role = reviewers, "reviewer"
        else:
            continue  # root, court or unknown keys neither count nor reject
        if not _jws.verify_one(root.keys[sig.kid], sig):
            raise _reject(
                RejectionCode.bad_signature,
                f"signature under {role} key {sig.kid[:16]}... does not verify",
            )
        bucket.add(sig.kid)
    if len(policy) < rule.policy:
        raise _reject(
            RejectionCode.policy_signature_missing,
            f"{len(policy)} valid policy signature(s), a {claims.basis} token needs {rule.policy}",
        )
    if len(reviewers) < rule.review:
        raise _reject(
            RejectionCode.review_signature_missing,
            f"{len(reviewers)} valid reviewer signature(s) of the trust root, a {claims.basis}"
            f" token needs {rule.review}",
        )
    orgs = {root.reviewers[kid].org for kid in reviewers}
    if len(orgs) < rule.review_orgs:
        raise _reject(
            RejectionCode.review_orgs_too_few,
            f"reviewers from {len(orgs)} organisation(s), a {claims.basis} token needs"
            f" {rule.review_orgs}",
        )


def check_court(claims: ReleaseClaims, root: TrustRootV2, device_id: str) -> None:
    """Rules 4e-4l. Raises TokenRejected."""
    if not root.rules[claims.basis].court:
        return
    claim = claims.warrant
    if claim is None:
        raise _reject(
            RejectionCode.warrant_missing,
            f"a {claims.basis} token must carry the court-signed warrant statement",
        )
    statement = claim.statement
    court_key = root.court_key(statement.court_id)
    if court_key is None:
        raise _reject(
            RejectionCode.court_unknown,
            f"court {statement.court_id!r} is not a court of the trust root",
        )
    if not claim.signed_by(court_key):
        raise _reject(
            RejectionCode.court_signature_invalid,
            f"the signature of court {statement.court_id!r} does not verify over the statement",
        )
    if statement.order_type != SEARCH_WARRANT:
        raise _reject(
            RejectionCode.warrant_order_type,
            f"the order is a {statement.order_type!r:.40}, only a search warrant reaches footage",
        )
    if not statement.names_device(device_id):
        raise _reject(
            RejectionCode.warrant_wrong_device,
            f"the warrant names {len(statement.device_ids)} device(s), not {device_id!r}",
        )
    if claims.window.start < statement.window_start or claims.window.end > statement.window_end:
        raise _reject(
            RejectionCode.warrant_window_exceeded,
            f"token window {format_time(claims.window.start)}..{format_time(claims.window.end)}"
            f" is not inside the warrant's {format_time(statement.window_start)}.."
            f"{format_time(statement.window_end)}",
        )
    issued, expires = statement.issued.timestamp(), statement.expires.timestamp()
    if not issued <= claims.iat < expires:
        raise _reject(
            RejectionCode.warrant_not_in_force,
            f"iat {claims.iat} is outside the warrant's {format_time(statement.issued)}.."
            f"{format_time(statement.expires)}",
        )
    if claims.exp > expires:
        raise _reject(
            RejectionCode.warrant_not_in_force,
            f"the token would outlive the warrant: exp {claims.exp}, the warrant expires"
            f" {format_time(statement.expires)}",
        )
    case = claims.case
    if (
        case.document_sha256 != statement.document_sha256
        or case.docket != statement.docket
        or case.authority != statement.court_id
    ):
        raise _reject(
            RejectionCode.warrant_case_mismatch,
            "the token's case (document sha256, docket, court) is not the signed warrant's",
        )


def verify_release(
    data: bytes,
    *,
    root: TrustRootV2,
    context: VerificationContext,
    replay: ReplayView | None,
) -> ReleaseClaims:
    """Apply every v2 acceptance rule in the order of the module docstring.

    Raises TokenRejected with the code of the first rule that fails; nothing else.
    """
    claims, envelope = parse_token(data, context)
    check_signatures_v2(claims, envelope, root)
    check_court(claims, root, context.device_id)
    check_claims(claims, issuer=root.issuer, limits=root.limits, context=context, replay=replay)
    return claims


def verify_any(
    data: bytes,
    *,
    root: AnyTrustRoot,
    context: VerificationContext,
    replay: ReplayView | None,
) -> ReleaseClaims:
    """`verify_release` under a v2 root, `verify_token` under a v1 root (a device that
    has not rotated yet, docs/adr/0013-trust-root-v2.md section 2)."""
    if isinstance(root, TrustRootV2):
        return verify_release(data, root=root, context=context, replay=replay)
    return verify_token(data, root=root, context=context, replay=replay)
