"""The x402 headers: exact JSON per the contract, round trips, every malformed input."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from machpay.protocol import (
    NATIVE_SOL,
    Intent,
    Keypair,
    ProtocolError,
    Reason,
    bytes_to_address,
    channel_address,
    sign_intent,
)
from machpay.protocol.intent import U64_MAX
from machpay.x402 import (
    PAYMENT_REQUIRED_ERROR,
    SCHEME,
    X402_VERSION,
    PaymentExtra,
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    PaymentResponse,
    PaymentSignature,
    Resource,
    malformed_header_body,
)

PROGRAM = bytes(range(1, 33))
VENDOR = bytes(range(100, 132))
AGENT = Keypair.from_seed(bytes(32))


def requirements(**extra_overrides: Any) -> PaymentRequirements:
    extra = PaymentExtra(
        program_id=PROGRAM,
        domain=bytes.fromhex("0011223344556677"),
        service="search",
        challenge=b"\x00\x00\x00\x01" + bytes(16),
        **extra_overrides,
    )
    return PaymentRequirements(network="solana:localnet", amount=1000, pay_to=VENDOR, extra=extra)


def signed_header() -> PaymentSignature:
    req = requirements()
    intent = Intent(
        domain=req.extra.domain,
        channel=req.channel(AGENT.public),
        nonce=7,
        cumulative=5000,
        amount=1000,
        expires_at=1_800_000_000,
        context=bytes(16),
    )
    signed = sign_intent(intent, AGENT)
    return PaymentSignature(
        resource=Resource(url="http://127.0.0.1:8402/v1/search?q=x"),
        accepted=req,
        payload=PaymentPayload.from_signed(signed),
    )


def header_of(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def reject(call: Any, field: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        call()
    assert caught.value.reason is Reason.MALFORMED_HEADER
    assert caught.value.field == field, caught.value
    return caught.value


# --- the exact JSON of the contract -----------------------------------------


def test_payment_required_json_matches_the_contract() -> None:
    required = PaymentRequired(
        error=PAYMENT_REQUIRED_ERROR,
        resource=Resource("http://h/v1/search", "Web search", "application/json"),
        accepts=(requirements(),),
    )
    document = json.loads(base64.b64decode(required.encode()))
    assert document == json.loads(required.body())
    assert document == {
        "x402Version": 2,
        "error": "payment_required",
        "resource": {
            "url": "http://h/v1/search",
            "description": "Web search",
            "mimeType": "application/json",
        },
        "accepts": [
            {
                "scheme": "machpay",
                "network": "solana:localnet",
                "amount": "1000",
                "asset": "11111111111111111111111111111111",
                "payTo": bytes_to_address(VENDOR),
                "maxTimeoutSeconds": 60,
                "extra": {
                    "programId": bytes_to_address(PROGRAM),
                    "domain": "0011223344556677",
                    "service": "search",
                    "challenge": base64.b64encode(b"\x00\x00\x00\x01" + bytes(16)).decode(),
                    "lastCumulative": None,
                    "reason": None,
                },
            }
        ],
    }
    assert PaymentRequired.decode(required.encode()) == required
    assert PaymentRequired.from_body(required.body()) == required


def test_corrective_402_carries_last_cumulative_as_a_decimal_string() -> None:
    required = PaymentRequired(
        error=Reason.CUMULATIVE_OUT_OF_STEP.value,
        resource=Resource("http://h/x"),
        accepts=(requirements(last_cumulative=U64_MAX, reason="held 18446744073709551615"),),
    )
    extra = json.loads(required.body())["accepts"][0]["extra"]
    assert extra["lastCumulative"] == str(U64_MAX)
    assert PaymentRequired.decode(required.encode()).accepts[0].extra.last_cumulative == U64_MAX


def test_payment_signature_json_and_signed_intent() -> None:
    header = signed_header()
    document = json.loads(base64.b64decode(header.encode()))
    assert document["x402Version"] == 2
    assert document["accepted"] == header.accepted.to_json()
    assert len(base64.b64decode(document["payload"]["message"])) == 97
    assert len(base64.b64decode(document["payload"]["signature"])) == 64
    assert document["payload"]["agent"] == AGENT.address
    decoded = PaymentSignature.decode(header.encode())
    assert decoded == header
    signed = decoded.payload.signed_intent()
    signed.verify()
    assert signed.channel == channel_address(
        program_id=PROGRAM, agent=AGENT.public, vendor=VENDOR, asset=NATIVE_SOL
    )


def test_payment_response_json_matches_the_contract() -> None:
    signed = signed_header().payload.signed_intent()
    receipt = PaymentResponse.for_intent(signed, "solana:localnet")
    document = json.loads(base64.b64decode(receipt.encode()))
    assert document == {
        "success": True,
        "transaction": signed.id.hex(),
        "network": "solana:localnet",
        "payer": AGENT.address,
        "extra": {
            "intentId": signed.id.hex(),
            "amount": "1000",
            "cumulative": "5000",
            "nonce": "7",
        },
    }
    assert PaymentResponse.decode(receipt.encode()) == receipt


def test_unknown_members_are_ignored_and_optional_ones_default() -> None:
    document = signed_header().to_json()
    document["future"] = {"anything": 1}
    document["resource"] = {"url": "http://h/"}
    del document["accepted"]["extra"]["lastCumulative"]
    del document["accepted"]["extra"]["reason"]
    decoded = PaymentSignature.decode(header_of(document))
    assert decoded.resource == Resource("http://h/")
    assert decoded.accepted.extra.last_cumulative is None


def test_malformed_header_body_names_the_field() -> None:
    error = reject(lambda: PaymentSignature.decode("***"), "$")
    body = orjson.loads(malformed_header_body(error))
    assert body["error"] == "malformed_header"
    assert body["field"] == "$"
    assert "base64" in body["detail"]


# --- every malformed input names its JSON path ------------------------------


def mutate(path: list[str | int], value: object) -> str:
    document: Any = signed_header().to_json()
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return header_of(document)


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["x402Version"], 1, "x402Version"),
        (["x402Version"], "2", "x402Version"),
        (["x402Version"], True, "x402Version"),
        (["x402Version"], _DELETE, "x402Version"),
        (["resource"], "http://h", "resource"),
        (["resource", "url"], _DELETE, "resource.url"),
        (["accepted"], _DELETE, "accepted"),
        (["accepted", "scheme"], "", "accepted.scheme"),
        (["accepted", "network"], 7, "accepted.network"),
        (["accepted", "amount"], 1000, "accepted.amount"),
        (["accepted", "amount"], "01000", "accepted.amount"),
        (["accepted", "amount"], "-1", "accepted.amount"),
        (["accepted", "amount"], " 1", "accepted.amount"),
        (["accepted", "amount"], str(U64_MAX + 1), "accepted.amount"),
        (["accepted", "asset"], "not-base58!", "accepted.asset"),
        (["accepted", "payTo"], "1111", "accepted.payTo"),
        (["accepted", "maxTimeoutSeconds"], "60", "accepted.maxTimeoutSeconds"),
        (["accepted", "maxTimeoutSeconds"], -1, "accepted.maxTimeoutSeconds"),
        (["accepted", "extra"], None, "accepted.extra"),
        (["accepted", "extra", "programId"], _DELETE, "accepted.extra.programId"),
        (["accepted", "extra", "domain"], "00112233445566", "accepted.extra.domain"),
        (["accepted", "extra", "domain"], "00112233445566ZZ", "accepted.extra.domain"),
        (["accepted", "extra", "domain"], "00112233445566AA", "accepted.extra.domain"),
        (["accepted", "extra", "service"], None, "accepted.extra.service"),
        (["accepted", "extra", "challenge"], "", "accepted.extra.challenge"),
        (["accepted", "extra", "challenge"], "AAA", "accepted.extra.challenge"),
        (
            ["accepted", "extra", "challenge"],
            base64.b64encode(bytes(65)).decode(),
            "accepted.extra.challenge",
        ),
        (["accepted", "extra", "lastCumulative"], 5, "accepted.extra.lastCumulative"),
        (["accepted", "extra", "reason"], 5, "accepted.extra.reason"),
        (["payload"], [], "payload"),
        (["payload", "message"], _DELETE, "payload.message"),
        (["payload", "message"], base64.b64encode(bytes(96)).decode(), "payload.message"),
        (["payload", "message"], "not base64!", "payload.message"),
        (["payload", "signature"], base64.b64encode(bytes(63)).decode(), "payload.signature"),
        (["payload", "signature"], base64.b64encode(bytes(64)).decode()[:-2], "payload.signature"),
        (["payload", "agent"], "Ab", "payload.agent"),
        (["payload", "agent"], 12, "payload.agent"),
    ],
)
def test_malformed_signature_names_the_json_path(
    path: list[str | int], value: object, field: str
) -> None:
    reject(lambda: PaymentSignature.decode(mutate(path, value)), field)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "not base64 at all",
        base64.b64encode(b"\xff\xfe").decode(),
        base64.b64encode(b"{not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b'"a string"').decode(),
        base64.b64encode(b"{}").decode()[:-1],
        "é",
    ],
)
def test_garbage_documents_are_malformed_at_the_root(header: str) -> None:
    field = "x402Version" if header == base64.b64encode(b"{}").decode() else "$"
    reject(lambda: PaymentSignature.decode(header), field)


def test_empty_accepts_and_inconsistent_receipt_are_malformed() -> None:
    document = PaymentRequired("x", Resource("u"), (requirements(),)).to_json()
    document["accepts"] = []
    reject(lambda: PaymentRequired.decode(header_of(document)), "accepts")
    document["accepts"] = [requirements().to_json(), {"scheme": "machpay"}]
    reject(lambda: PaymentRequired.decode(header_of(document)), "accepts[1].network")
    receipt = PaymentResponse.for_intent(
        signed_header().payload.signed_intent(), "solana:localnet"
    ).to_json()
    receipt["transaction"] = "00" * 32
    reject(lambda: PaymentResponse.decode(header_of(receipt)), "transaction")
    receipt["success"] = "true"
    reject(lambda: PaymentResponse.decode(header_of(receipt)), "success")


def test_non_canonical_base58_address_is_refused() -> None:
    # A leading '1' is one more zero byte: a 33-byte value does not decode as an address.
    address = bytes_to_address(VENDOR)
    reject(
        lambda: PaymentSignature.decode(mutate(["accepted", "payTo"], "1" + address)),
        "accepted.payTo",
    )


# --- round trips (hypothesis) -------------------------------------------------

BYTES32 = st.binary(min_size=32, max_size=32)
TEXT = st.text(max_size=40)
U64 = st.integers(0, U64_MAX)


@st.composite
def payment_requirements(draw: st.DrawFn) -> PaymentRequirements:
    extra = PaymentExtra(
        program_id=draw(BYTES32),
        domain=draw(st.binary(min_size=8, max_size=8)),
        service=draw(TEXT),
        challenge=draw(st.binary(min_size=1, max_size=64)),
        last_cumulative=draw(st.none() | U64),
        reason=draw(st.none() | TEXT),
    )
    return PaymentRequirements(
        scheme=draw(st.sampled_from([SCHEME, "exact"])),
        network=draw(st.text(min_size=1, max_size=30)),
        amount=draw(U64),
        asset=draw(BYTES32),
        pay_to=draw(BYTES32),
        max_timeout_seconds=draw(st.integers(0, 2**31 - 1)),
        extra=extra,
    )


RESOURCES = st.builds(Resource, TEXT, TEXT, TEXT)


@given(RESOURCES, st.text(max_size=30), st.lists(payment_requirements(), min_size=1, max_size=3))
def test_payment_required_round_trips(
    resource: Resource, error: str, accepts: list[PaymentRequirements]
) -> None:
    required = PaymentRequired(error=error, resource=resource, accepts=tuple(accepts))
    assert PaymentRequired.decode(required.encode()) == required
    assert PaymentRequired.from_body(required.body()) == required


@given(
    RESOURCES,
    payment_requirements(),
    st.binary(min_size=97, max_size=97),
    st.binary(min_size=64, max_size=64),
    BYTES32,
)
def test_payment_signature_round_trips(
    resource: Resource,
    accepted: PaymentRequirements,
    message: bytes,
    signature: bytes,
    agent: bytes,
) -> None:
    header = PaymentSignature(resource, accepted, PaymentPayload(message, signature, agent))
    assert PaymentSignature.decode(header.encode()) == header


RECEIPTS = st.builds(
    PaymentResponse,
    network=TEXT,
    payer=BYTES32,
    intent_id=BYTES32,
    amount=U64,
    cumulative=U64,
    nonce=U64,
    success=st.booleans(),
)


@given(RECEIPTS)
def test_payment_response_round_trips(receipt: PaymentResponse) -> None:
    assert PaymentResponse.decode(receipt.encode()) == receipt


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_malformed_header(data: bytes) -> None:
    for header in (data, base64.b64encode(data)):
        for decode in (PaymentSignature.decode, PaymentRequired.decode, PaymentResponse.decode):
            with pytest.raises(ProtocolError) as caught:
                decode(header)
            assert caught.value.reason is Reason.MALFORMED_HEADER


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_raises_anything_but_malformed_header(document: object) -> None:
    header = header_of(document)
    for decode in (PaymentSignature.decode, PaymentRequired.decode, PaymentResponse.decode):
        with pytest.raises(ProtocolError) as caught:
            decode(header)
        assert caught.value.reason is Reason.MALFORMED_HEADER


def test_version_constant() -> None:
    assert X402_VERSION == 2
