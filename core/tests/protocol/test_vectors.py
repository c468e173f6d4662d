"""The committed vectors in schemas/vectors: no drift, and this code conforms to them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from machpay.protocol import (
    BatchCommitment,
    FraudProof,
    Intent,
    ProtocolError,
    SignedIntent,
    address_to_bytes,
    context_hash,
    detect_fraud,
    find_channel,
    request_hash,
    verify_inclusion,
    verify_intent,
    verify_proof,
)
from machpay.protocol import vectors as generator

VECTORS = Path(__file__).resolve().parents[3] / "schemas" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def test_committed_vectors_match_the_generator() -> None:
    stale = generator.drifted(VECTORS)
    assert not stale, (
        f"{stale} differ from `python -m machpay.protocol.vectors`; regenerate, review the diff"
        " and tell the Rust side: these files are a cross-language contract"
    )


def test_check_flag_detects_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "vectors"
    shutil.copytree(VECTORS, copy)
    assert generator.main(["--out", str(copy), "--check"]) == 0
    path = copy / "merkle.json"
    path.write_text(path.read_text().replace("6e340b9c", "6e340b9d", 1))
    assert generator.main(["--out", str(copy), "--check"]) == 1
    assert "merkle.json" in capsys.readouterr().err
    (copy / "fraud.json").unlink()
    assert generator.main(["--out", str(copy), "--check"]) == 1


def test_generator_writes_files(tmp_path: Path) -> None:
    assert generator.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(generator.GENERATORS)


def test_intents_conform() -> None:
    data = load("intents.json")
    program = address_to_bytes(data["program_id"])
    assert program.hex() == data["program_id_hex"]
    agents = [bytes.fromhex(a["public"]) for a in data["agents"]]
    vendors = [bytes.fromhex(v["public"]) for v in data["vendors"]]
    for case in data["intents"]:
        name = case["name"]
        channel, bump = find_channel(
            program_id=program,
            agent=agents[case["agent_index"]],
            vendor=vendors[case["vendor_index"]],
            asset=bytes.fromhex(case["asset"]),
        )
        assert (channel.hex(), bump) == (case["channel"], case["channel_bump"]), name
        req = case["request"]
        digest = request_hash(req["method"], req["path"], req["query"], bytes.fromhex(req["body"]))
        assert digest.hex() == req["request_hash"], f"{name}: request hash"
        ctx = context_hash(case["service"], digest, bytes.fromhex(case["challenge"]))
        fields = case["fields"]
        assert ctx.hex() == fields["context"], f"{name}: context"
        intent = Intent(
            domain=bytes.fromhex(fields["domain"]),
            channel=bytes.fromhex(fields["channel"]),
            nonce=fields["nonce"],
            cumulative=fields["cumulative"],
            amount=fields["amount"],
            expires_at=fields["expires_at"],
            context=ctx,
        )
        assert intent.encode().hex() == case["message"], f"{name}: encoding"
        signed = SignedIntent(
            bytes.fromhex(case["message"]),
            bytes.fromhex(case["signature"]),
            bytes.fromhex(case["agent"]),
        )
        assert signed.intent == intent, f"{name}: decoding"
        assert signed.id.hex() == case["id"], f"{name}: id"
        assert signed.agent == agents[case["agent_index"]], f"{name}: signer"
        signed.verify()


def test_invalid_signature_cases_conform() -> None:
    cases = load("invalid_signatures.json")["cases"]
    assert len(cases) >= 30
    for case in cases:
        try:
            verify_intent(
                bytes.fromhex(case["message"]),
                bytes.fromhex(case["signature"]),
                bytes.fromhex(case["agent"]),
                domain=bytes.fromhex(case["domain"]),
                now=case["now"],
            )
            got: dict[str, str | None] = {"reason": None, "field": None}
        except ProtocolError as err:
            got = {"reason": err.reason.value, "field": err.field}
        assert got == case["expect"], f"{case['name']}: got {got}, vector says {case['expect']}"


def test_merkle_cases_conform() -> None:
    data = load("merkle.json")
    assert data["empty_root"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for tree_set in data["sets"]:
        leaves = [bytes.fromhex(h) for h in tree_set["leaves"]]
        for tree in tree_set["trees"]:
            size, root = tree["size"], bytes.fromhex(tree["root"])
            commitment = BatchCommitment.of(leaves[:size])
            assert commitment.root == root, f"{tree_set['name']} size {size}: root"
            for index, path in enumerate(tree["proofs"]):
                proof = [bytes.fromhex(h) for h in path]
                assert verify_inclusion(leaves[index], index, size, proof, root), (
                    f"{tree_set['name']} size {size} index {index}"
                )


def test_fraud_cases_conform() -> None:
    for case in load("fraud.json")["cases"]:
        a, b = (
            SignedIntent(
                bytes.fromhex(x["message"]),
                bytes.fromhex(x["signature"]),
                bytes.fromhex(x["agent"]),
            )
            for x in (case["a"], case["b"])
        )
        proof = detect_fraud(a, b)
        want = case["expect"]
        if want is None:
            assert proof is None, f"{case['name']}: honest pair flagged"
            continue
        assert proof is not None, f"{case['name']}: offence not detected"
        assert proof.kind.name.lower() == want["kind"], case["name"]
        assert proof.proof_id.hex() == want["proof_id"], f"{case['name']}: proof id"
        assert proof.to_bytes().hex() == want["proof"], f"{case['name']}: proof bytes"
        verify_proof(FraudProof.from_bytes(bytes.fromhex(want["proof"])))
