"""The release log with three real witness processes on loopback (c2sp.org/tlog-witness,
c2sp.org/tlog-tiles): a token's statement is published only with a 2-of-3 quorum, the
doorbell's check accepts the proof, one witness down does not stop releases, two down
make them wait without loss, and a witness refuses an inconsistent checkpoint and keeps
its state over a restart."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import httpx

from protocol.tlog.bundle import parse_bundle
from protocol.tlog.checkpoint import Checkpoint, open_checkpoint
from protocol.tlog.merkle import MemoryTree, consistency_proof, inclusion_proof, leaf_hash
from protocol.tlog.note import SignatureType, Signer, open_note, parse_skey, sign_note
from protocol.tlog.policy import witnessed_names
from protocol.tlog.statement import ReleaseStatement, statement_for
from protocol.tlog.tiles import TileNodes, TileRef, decode_bundle
from protocol.tlog.verify import verify_log_proof
from release_log.cosigning import add_checkpoint_body
from tests.fixtures.tlog import LOG_ORIGIN, TlogNetwork
from tests.unit.protocol_world import make_world
from tests.unit.tlog_world import seeded

IDENTITY = seeded("device-identity").public_key()


def statement(n: int) -> bytes:
    digest = hashlib.sha256(b"%d" % n).hexdigest()
    return ReleaseStatement(
        device_tag=hashlib.sha256(b"device").hexdigest(),
        token_sha256=digest,
        basis="preservation",
        window_start="2026-06-01T09:00:00Z",
        window_end="2026-06-01T11:00:00Z",
        iat=1780315190,
        seq=n,
    ).encode()


def add(client: httpx.Client, entry: bytes) -> int:
    response = client.post("/add", content=entry)
    assert response.status_code == 200, response.text
    return int(response.text.split()[1])


def published(network: TlogNetwork) -> tuple[Checkpoint, frozenset[str]]:
    response = httpx.get(network.log.url + "/checkpoint", timeout=10)
    assert response.status_code == 200, response.text
    policy = network.policy
    signed = open_checkpoint(response.content, [network.log_verifier, *policy.witness_verifiers])
    names = witnessed_names(policy, (v for v, _ in signed.note.verified))
    return signed.checkpoint, names


def test_a_token_is_published_with_a_quorum_and_passes_the_doorbell_check(
    tlog_network: TlogNetwork,
) -> None:
    world = make_world()
    token = world.token()
    client = tlog_network.client()
    add(client, statement(0))
    index = add(client, statement_for(token, world.claims(), IDENTITY).encode())
    response = client.get("/proof", params={"index": index, "old": 1, "wait": 20})
    assert response.status_code == 200, response.text
    stored = Checkpoint(LOG_ORIGIN, 1, leaf_hash(statement(0)))
    verdict = verify_log_proof(
        token,
        response.content,
        policy=tlog_network.policy,
        origin=LOG_ORIGIN,
        stored=stored,
        identity=IDENTITY,
    )
    assert verdict.index == index
    assert len(verdict.witnesses) >= 2
    checkpoint, names = published(tlog_network)
    assert checkpoint.size >= 2
    assert len(names) >= 2


def test_tiles_and_entry_bundles_give_the_published_root(tlog_network: TlogNetwork) -> None:
    client = tlog_network.client()
    entries = [statement(n) for n in range(300)]
    with ThreadPoolExecutor(16) as pool:  # concurrent appends share fsyncs and checkpoints
        indices = list(pool.map(lambda e: add(client, e), entries))
    assert sorted(indices) == list(range(300))
    entries = [e for _, e in sorted(zip(indices, entries, strict=True))]
    client.get("/proof", params={"index": 299, "wait": 20}).raise_for_status()
    checkpoint, _ = published(tlog_network)
    assert checkpoint.size == 300

    def fetch(ref: TileRef) -> bytes:
        response = client.get("/" + ref.path)
        response.raise_for_status()
        return response.content

    tiles = TileNodes(checkpoint.size, fetch)
    tree = MemoryTree([leaf_hash(e) for e in entries])
    assert tiles.node(8, 0) == tree.node(8, 0)
    assert inclusion_proof(tiles, 257, 300) == inclusion_proof(tree, 257, 300)
    assert decode_bundle(fetch(TileRef(None, 0)), 256) == entries[:256]
    assert decode_bundle(fetch(TileRef(None, 1, 44)), 44) == entries[256:]
    assert client.get("/tile/0/001.p/45").status_code == 404
    assert client.get("/tile/0/1").status_code == 400


def test_the_log_refuses_what_is_not_a_statement(tlog_network: TlogNetwork) -> None:
    client = tlog_network.client()
    assert client.post("/add", content=b"hello").status_code == 422
    assert client.post("/add", content=b"x" * 70000).status_code == 413


def test_one_witness_down_releases_continue_two_down_they_wait_then_go_through(
    tlog_network: TlogNetwork,
) -> None:
    client = tlog_network.client()
    tlog_network.witnesses[0].stop()
    index = add(client, statement(1))
    assert client.get("/proof", params={"index": index, "wait": 20}).status_code == 200
    tlog_network.witnesses[1].stop()
    waiting = add(client, statement(2))
    assert client.get("/proof", params={"index": waiting, "wait": 1}).status_code == 503
    checkpoint, _ = published(tlog_network)
    assert checkpoint.size == index + 1  # not published without a quorum
    tlog_network.restart_witness(1)  # on a new port, named in the policy
    response = client.get("/proof", params={"index": waiting, "wait": 25})
    assert response.status_code == 200, response.text
    bundle = parse_bundle(response.content)
    assert bundle.proof.extra == statement(2)
    _, names = published(tlog_network)
    assert names == frozenset({"w2", "w3"})


def _post(url: str, body: bytes) -> httpx.Response:
    return httpx.post(url + "/add-checkpoint", content=body, timeout=10)


def _log_signer(network: TlogNetwork) -> Signer:
    return parse_skey((network.directory / "log" / "log.key").read_text().strip())


def test_a_witness_answers_with_the_spec_status_codes(tlog_network: TlogNetwork) -> None:
    client = tlog_network.client()
    entries = [statement(n) for n in range(6)]
    for entry in entries[:3]:
        add(client, entry)
    client.get("/proof", params={"index": 2, "wait": 20}).raise_for_status()
    tlog_network.log.stop()  # from here the test plays the log, with the log's own key
    log = _log_signer(tlog_network)
    tree = MemoryTree([leaf_hash(e) for e in entries])
    url = tlog_network.witnesses[0].url

    def note(size: int, signer: Signer = log) -> bytes:
        return sign_note(Checkpoint(signer.name, size, tree.root(size)).text, signer)

    stranger = Signer("stranger.example/log", SignatureType.ed25519, seeded("stranger"))
    impostor = Signer(LOG_ORIGIN, SignatureType.ed25519, seeded("impostor"))
    proof = consistency_proof(tree, 3, 6)
    assert _post(url, add_checkpoint_body(3, proof, note(6, stranger))).status_code == 404
    assert _post(url, add_checkpoint_body(3, proof, note(6, impostor))).status_code == 403
    assert _post(url, add_checkpoint_body(7, [], note(6))).status_code == 400
    conflict = _post(url, add_checkpoint_body(0, [], note(6)))
    assert (conflict.status_code, conflict.text) == (409, "3\n")
    assert _post(url, add_checkpoint_body(3, proof[::-1], note(6))).status_code == 422
    accepted = _post(url, add_checkpoint_body(3, proof, note(6)))
    assert accepted.status_code == 200, accepted.text
    cosigned = open_note(
        Checkpoint(LOG_ORIGIN, 6, tree.root()).text + b"\n" + accepted.content,
        tlog_network.policy.witness_verifiers,
    )
    assert len(cosigned.verified) == 1


def test_a_witness_refuses_an_inconsistent_checkpoint_and_keeps_state_over_restart(
    tlog_network: TlogNetwork,
) -> None:
    client = tlog_network.client()
    for n in range(5):
        add(client, statement(n))
    client.get("/proof", params={"index": 4, "wait": 20}).raise_for_status()
    tlog_network.log.stop()
    witness = tlog_network.witnesses[2]
    log = _log_signer(tlog_network)
    monitor = httpx.get(
        f"{witness.url}/{hashlib.sha256(LOG_ORIGIN.encode()).hexdigest()}/checkpoint", timeout=10
    )
    assert monitor.status_code == 200
    held = open_checkpoint(monitor.content, [log.verifier]).checkpoint
    assert held.size == 5
    # A forked history: five other entries, then two more, signed by the real log key.
    fork = MemoryTree([leaf_hash(b"fork %d" % n) for n in range(7)])
    fork_cp = Checkpoint(LOG_ORIGIN, 7, fork.root())
    body = add_checkpoint_body(5, consistency_proof(fork, 5, 7), sign_note(fork_cp.text, log))
    assert _post(witness.url, body).status_code == 422
    same_size = Checkpoint(LOG_ORIGIN, 5, fork.root(5))
    assert (
        _post(witness.url, add_checkpoint_body(5, [], sign_note(same_size.text, log))).status_code
        == 422
    )
    stale = add_checkpoint_body(3, [], sign_note(Checkpoint(LOG_ORIGIN, 6, fork.root(6)).text, log))
    refused = _post(witness.url, stale)
    assert refused.status_code == 409
    assert refused.text == "5\n"
    assert refused.headers["content-type"].startswith("text/x.tlog.size")

    witness.kill()
    witness.start()
    again = _post(witness.url, body)
    assert again.status_code == 422  # still holds size 5 and its root after the kill
    still = _post(witness.url, stale)
    assert (still.status_code, still.text) == (409, "5\n")
