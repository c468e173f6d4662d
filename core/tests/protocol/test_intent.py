"""The 97-byte intent: layout, round trips, every rejection, hashes and binding."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
import solders.message
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from machpay.protocol import (
    MAGIC,
    MESSAGE_LEN,
    NATIVE_SOL,
    Intent,
    Keypair,
    ProtocolError,
    Reason,
    SignedIntent,
    channel_address,
    check_binding,
    context_hash,
    find_channel,
    intent_id,
    request_hash,
    sign_intent,
    verify_intent,
)
from machpay.protocol.intent import I64_MAX, I64_MIN, U64_MAX

U64 = st.integers(0, U64_MAX)
I64 = st.integers(I64_MIN, I64_MAX)


@st.composite
def intents(draw: st.DrawFn) -> Intent:
    cumulative = draw(st.integers(1, U64_MAX))
    return Intent(
        domain=draw(st.binary(min_size=8, max_size=8)),
        channel=draw(st.binary(min_size=32, max_size=32)),
        nonce=draw(U64),
        cumulative=cumulative,
        amount=draw(st.integers(1, cumulative)),
        expires_at=draw(I64),
        context=draw(st.binary(min_size=16, max_size=16)),
    )


def sample(**overrides: object) -> Intent:
    fields: dict[str, object] = {
        "domain": b"mp-test1",
        "channel": bytes(range(32)),
        "nonce": 7,
        "cumulative": 1000,
        "amount": 10,
        "expires_at": 1_800_000_000,
        "context": bytes(range(100, 116)),
    }
    fields.update(overrides)
    return Intent(**fields)  # type: ignore[arg-type]


def rejects(reason: Reason, field: str | None, func: object, *args: object) -> ProtocolError:
    assert callable(func)
    with pytest.raises(ProtocolError) as info:
        func(*args)
    err = info.value
    assert (err.reason, err.field) == (reason, field), (
        f"expected {reason.value}[{field}], got {err.reason.value}[{err.field}]: {err.message}"
    )
    return err


KEY = Keypair.from_seed(hashlib.sha256(b"test_intent").digest())


# --- layout and round trips -------------------------------------------------------------


@given(intents())
def test_encode_decode_round_trip_over_full_ranges(intent: Intent) -> None:
    message = intent.encode()
    assert len(message) == MESSAGE_LEN, f"message is {len(message)} bytes"
    assert message[:8] == MAGIC, "magic prefix missing"
    assert Intent.decode(message) == intent, "decode(encode(x)) != x"


def test_byte_layout_matches_the_documented_table() -> None:
    intent = sample(nonce=0x0102030405060708, cumulative=U64_MAX, amount=1, expires_at=-2)
    m = intent.encode()
    # Offsets from docs/protocol.md, read independently of the struct format.
    assert m[0:8] == b"\xffMachPay", "magic at 0..8"
    assert m[8] == 1, "version at 8"
    assert m[9:17] == b"mp-test1", "domain at 9..17"
    assert m[17:49] == bytes(range(32)), "channel at 17..49"
    assert m[49:57] == bytes([8, 7, 6, 5, 4, 3, 2, 1]), "nonce little-endian at 49..57"
    assert m[57:65] == b"\xff" * 8, "cumulative at 57..65"
    assert m[65:73] == b"\x01" + bytes(7), "amount at 65..73"
    assert m[73:81] == (-2).to_bytes(8, "little", signed=True), "expires_at signed at 73..81"
    assert m[81:97] == bytes(range(100, 116)), "context at 81..97"


def test_message_can_never_parse_as_a_solana_transaction_message() -> None:
    message = sample().encode()
    for padding in (b"", bytes(1232)):
        with pytest.raises(ValueError, match="127"):
            solders.message.from_bytes_versioned(message + padding)


def test_intent_id_is_sha256_of_message() -> None:
    message = sample().encode()
    assert intent_id(message) == hashlib.sha256(message).digest()


# --- decode rejections --------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 96, 98, 193])
def test_decode_rejects_wrong_length(length: int) -> None:
    message = (sample().encode() * 2)[:length]
    err = rejects(Reason.BAD_LENGTH, "message", Intent.decode, message)
    assert str(length) in err.message, "the message should say how long it was"


@pytest.mark.parametrize("position", range(8))
def test_decode_rejects_any_change_to_magic(position: int) -> None:
    message = bytearray(sample().encode())
    message[position] ^= 0x01
    rejects(Reason.BAD_MAGIC, "magic", Intent.decode, bytes(message))


@pytest.mark.parametrize("version", [0, 2, 0x80, 0xFF])
def test_decode_rejects_unknown_versions(version: int) -> None:
    message = bytearray(sample().encode())
    message[8] = version
    rejects(Reason.UNSUPPORTED_VERSION, "version", Intent.decode, bytes(message))


def _with_amounts(amount: int, cumulative: int) -> bytes:
    message = bytearray(sample().encode())
    struct.pack_into("<QQ", message, 57, cumulative, amount)
    return bytes(message)


@pytest.mark.parametrize(
    ("amount", "cumulative"), [(0, 0), (0, 100), (101, 100), (U64_MAX, U64_MAX - 1)]
)
def test_decode_rejects_amount_outside_1_to_cumulative(amount: int, cumulative: int) -> None:
    rejects(Reason.AMOUNT_OUT_OF_RANGE, "amount", Intent.decode, _with_amounts(amount, cumulative))


@given(st.binary(min_size=MESSAGE_LEN - 9, max_size=MESSAGE_LEN - 9))
def test_decode_of_arbitrary_bodies_either_parses_or_names_a_reason(body: bytes) -> None:
    message = MAGIC + b"\x01" + body
    cumulative, amount = struct.unpack_from("<QQ", message, 57)
    if 1 <= amount <= cumulative:
        assert Intent.decode(message).encode() == message, "valid bodies must round trip"
    else:
        rejects(Reason.AMOUNT_OUT_OF_RANGE, "amount", Intent.decode, message)


@given(st.binary(max_size=200))
def test_decode_never_raises_anything_but_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        Intent.decode(data)


# --- construction (encode side) rejections ------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nonce", -1),
        ("nonce", 2**64),
        ("cumulative", 2**64),
        ("amount", 2**64),
        ("expires_at", I64_MAX + 1),
        ("expires_at", I64_MIN - 1),
        ("expires_at", 1.5),
        ("amount", True),
        ("nonce", "7"),
        ("domain", b"short"),
        ("domain", b"toolong!!"),
        ("domain", "mp-test1"),
        ("channel", bytes(31)),
        ("context", bytes(15)),
    ],
)
def test_intent_rejects_out_of_type_fields(field: str, value: object) -> None:
    rejects(Reason.BAD_FIELD, field, lambda: sample(**{field: value}))


@pytest.mark.parametrize(("amount", "cumulative"), [(0, 10), (11, 10)])
def test_intent_rejects_amount_rule_at_construction(amount: int, cumulative: int) -> None:
    rejects(
        Reason.AMOUNT_OUT_OF_RANGE,
        "amount",
        lambda: sample(amount=amount, cumulative=cumulative),
    )


def test_intent_accepts_the_extremes() -> None:
    for extreme in (
        sample(nonce=0, amount=1, cumulative=1, expires_at=I64_MIN),
        sample(nonce=U64_MAX, amount=U64_MAX, cumulative=U64_MAX, expires_at=I64_MAX),
    ):
        assert Intent.decode(extreme.encode()) == extreme


# --- SignedIntent --------------------------------------------------------------------------


def test_signed_intent_round_trip_and_cached_fields() -> None:
    signed = sign_intent(sample(), KEY)
    assert signed.id == hashlib.sha256(signed.message).digest(), "id must be SHA-256(message)"
    assert signed.intent == sample(), "decoded intent differs"
    assert (signed.nonce, signed.cumulative, signed.amount) == (7, 1000, 10)
    assert signed.channel == bytes(range(32))
    assert signed.domain == b"mp-test1"
    assert SignedIntent.from_bytes(signed.to_bytes()) == signed, "193-byte form round trip"
    assert len(signed.to_bytes()) == 193
    signed.verify()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"signature": bytes(63)}, "signature"),
        ({"signature": bytes(65)}, "signature"),
        ({"agent": bytes(31)}, "agent"),
        ({"message": bytes(96)}, "message"),
    ],
)
def test_signed_intent_rejects_bad_lengths(kwargs: dict[str, bytes], field: str) -> None:
    signed = sign_intent(sample(), KEY)
    parts = {"message": signed.message, "signature": signed.signature, "agent": signed.agent}
    parts.update(kwargs)
    rejects(Reason.BAD_LENGTH, field, lambda: SignedIntent(**parts))


def test_signed_intent_from_bytes_rejects_wrong_total_length() -> None:
    rejects(Reason.BAD_LENGTH, "signed_intent", SignedIntent.from_bytes, bytes(192))


def test_ids_differ_for_different_messages_even_with_equal_signatures_excluded() -> None:
    a = sign_intent(sample(), KEY)
    b = sign_intent(sample(nonce=8), KEY)
    assert a.id != b.id


# --- channel PDA ---------------------------------------------------------------------------

PROGRAM = bytes(Pubkey.from_string("MachPay111111111111111111111111111111111111"))
AGENT = KEY.public
VENDOR = Keypair.from_seed(hashlib.sha256(b"vendor").digest()).public


def test_channel_is_the_program_derived_address_of_the_documented_seeds() -> None:
    expected, bump = Pubkey.find_program_address(
        [b"channel", AGENT, VENDOR, bytes(32)], Pubkey.from_bytes(PROGRAM)
    )
    got = find_channel(program_id=PROGRAM, agent=AGENT, vendor=VENDOR)
    assert got == (bytes(expected), bump)
    assert channel_address(program_id=PROGRAM, agent=AGENT, vendor=VENDOR) == bytes(expected)
    assert not Pubkey.from_bytes(got[0]).is_on_curve(), "a PDA is never on the curve"


def test_channel_binds_every_input() -> None:
    base = channel_address(program_id=PROGRAM, agent=AGENT, vendor=VENDOR, asset=NATIVE_SOL)
    variants = {
        "swapped": channel_address(program_id=PROGRAM, agent=VENDOR, vendor=AGENT),
        "asset": channel_address(
            program_id=PROGRAM, agent=AGENT, vendor=VENDOR, asset=b"\x01" * 32
        ),
        "program": channel_address(program_id=bytes(32), agent=AGENT, vendor=VENDOR),
    }
    for name, other in variants.items():
        assert other != base, f"changing {name} must change the channel"


def test_channel_rejects_wrong_sized_inputs() -> None:
    rejects(
        Reason.BAD_FIELD,
        "vendor",
        lambda: channel_address(program_id=PROGRAM, agent=AGENT, vendor=VENDOR[:31]),
    )


# --- request and context hashes ------------------------------------------------------------


def test_request_hash_matches_the_documented_preimage() -> None:
    body = b'{"q":1}'
    preimage = (
        b"machpay:request:v1"
        + (4).to_bytes(2, "little")
        + b"POST"
        + (9).to_bytes(4, "little")
        + b"/v1/caf\xc3\xa9"
        + (3).to_bytes(4, "little")
        + b"a=1"
        + hashlib.sha256(body).digest()
    )
    assert request_hash("post", "/v1/caf\u00e9", "a=1", body) == hashlib.sha256(preimage).digest()
    assert request_hash("POST", b"/v1/caf\xc3\xa9", b"a=1", body) == request_hash(
        "post", "/v1/caf\u00e9", "a=1", body
    ), "str and bytes spellings must agree; method is upper-cased"


@pytest.mark.parametrize(
    "other",
    [
        ("GET", "/a", "b", b""),  # path/query boundary moved
        ("GET", "/ab", "", b"x"),  # body
        ("PUT", "/ab", "", b""),  # method
        ("GET", "/ab/", "", b""),  # path not normalised
        ("GET", "/ab", "?", b""),  # query as sent
    ],
)
def test_request_hash_separates_every_part(other: tuple[str, str, str, bytes]) -> None:
    assert request_hash(*other) != request_hash("GET", "/ab", "", b"")


@pytest.mark.parametrize("method", ["", "G\u00c9T"])
def test_request_hash_rejects_bad_methods(method: str) -> None:
    rejects(Reason.BAD_FIELD, "method", request_hash, method, "/", "", b"")


def test_context_hash_matches_the_documented_preimage() -> None:
    req = hashlib.sha256(b"r").digest()
    preimage = (
        b"machpay:context:v1" + (5).to_bytes(2, "little") + b"quote" + req + bytes([3]) + b"abc"
    )
    assert context_hash("quote", req, b"abc") == hashlib.sha256(preimage).digest()[:16]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("s", bytes(32), b""), "challenge"),
        (("s", bytes(32), bytes(65)), "challenge"),
        (("s", bytes(31), b"c"), "request_hash"),
        (("s" * 65536, bytes(32), b"c"), "service"),
    ],
)
def test_context_hash_rejects_bad_parts(args: tuple[str, bytes, bytes], field: str) -> None:
    rejects(Reason.BAD_FIELD, field, context_hash, *args)


def test_context_separates_service_request_and_challenge() -> None:
    req = hashlib.sha256(b"r").digest()
    base = context_hash("svc", req, b"c1")
    assert context_hash("svd", req, b"c1") != base
    assert context_hash("svc", hashlib.sha256(b"s").digest(), b"c1") != base
    assert context_hash("svc", req, b"c2") != base


# --- binding -------------------------------------------------------------------------------


def test_binding_checks() -> None:
    intent = sample()
    ok = {"domain": b"mp-test1", "now": intent.expires_at, "channel": intent.channel}
    check_binding(intent, **ok)  # type: ignore[arg-type]
    check_binding(intent, domain=b"mp-test1", now=0, context=intent.context)
    cases: list[tuple[dict[str, object], Reason, str]] = [
        ({**ok, "domain": b"mp-prod1"}, Reason.WRONG_DOMAIN, "domain"),
        ({**ok, "channel": bytes(32)}, Reason.WRONG_CHANNEL, "channel"),
        ({**ok, "now": intent.expires_at + 1}, Reason.EXPIRED, "expires_at"),
        ({**ok, "context": bytes(16)}, Reason.REQUEST_MISMATCH, "context"),
    ]
    for kwargs, reason, field in cases:
        rejects(reason, field, lambda kw=kwargs: check_binding(intent, **kw))


def test_verify_intent_parses_then_verifies_then_binds() -> None:
    signed = sign_intent(sample(), KEY)
    got = verify_intent(signed.message, signed.signature, signed.agent, domain=b"mp-test1", now=0)
    assert got == signed
    # A forged intent for the wrong domain reports the forgery, not the domain.
    forged = bytearray(signed.message)
    forged[9] ^= 1
    rejects(
        Reason.BAD_SIGNATURE,
        "signature",
        lambda: verify_intent(
            bytes(forged), signed.signature, signed.agent, domain=b"mp-test1", now=0
        ),
    )
