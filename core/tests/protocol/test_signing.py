"""Strict Ed25519: RFC 8032 vectors, and every degenerate case a lax verifier accepts.

A tiny reference implementation of edwards25519 arithmetic lives below (slow,
test-only). It lets the tests *prove* that each attack signature really is
accepted by a lax (textbook, cofactorless, no encoding checks) verifier, so
that rejecting it is a real property of our code and not an accident.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError

from machpay.protocol import Keypair, ProtocolError, Reason, is_valid_signature, verify_strict
from machpay.protocol.signing import (
    SMALL_ORDER_Y,
    D,
    L,
    P,
    is_canonical_point,
    is_on_curve,
    is_small_order,
    sign_raw,
    verify_strict_libsodium,
)

# --- reference edwards25519 (extended coordinates are overkill here: affine is fine) ---

Point = tuple[int, int]
IDENTITY: Point = (0, 1)
SQRT_M1 = pow(2, (P - 1) // 4, P)


def add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return (x3, y3)


def mul(k: int, point: Point) -> Point:
    result = IDENTITY
    while k:
        if k & 1:
            result = add(result, point)
        point = add(point, point)
        k >>= 1
    return result


def decode_lax(encoded: bytes) -> Point | None:
    """RFC 8032 §5.1.3 decoding, but reducing y mod p instead of refusing y >= p."""
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    y %= P
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    elif v * x * x % P != u:
        return None
    if x & 1 != sign:
        x = (-x) % P
    return (x, y)


def encode(point: Point) -> bytes:
    x, y = point
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


BASE = decode_lax((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))
assert BASE is not None


def lax_verify(message: bytes, signature: bytes, public_key: bytes) -> bool:
    """Textbook cofactorless check [S]B == R + [k]A with no strictness at all."""
    a, r = decode_lax(public_key), decode_lax(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    assert BASE is not None
    return mul(s, BASE) == add(r, mul(k, a))


def expect(reason: Reason, field: str, message: bytes, signature: bytes, key: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        verify_strict(message, signature, key)
    got = info.value
    assert (got.reason, got.field) == (reason, field), (
        f"expected {reason.value}[{field}], got {got.reason.value}[{got.field}]: {got.message}"
    )
    assert not is_valid_signature(message, signature, key)


# --- RFC 8032 §7.1 test vectors -------------------------------------------------------------
# Values as published in RFC 8032 section 7.1 (TEST 1, 2, 3, 1024, SHA(abc)).

TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)

RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]


@pytest.mark.parametrize(
    ("seed", "public", "message", "signature"),
    [case[1:] for case in RFC8032],
    ids=[case[0] for case in RFC8032],
)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    keypair = Keypair.from_seed(bytes.fromhex(seed))
    msg, sig = bytes.fromhex(message), bytes.fromhex(signature)
    assert keypair.public.hex() == public, "public key derived from seed"
    assert keypair.sign(msg).hex() == signature, "Keypair.sign"
    assert sign_raw(bytes.fromhex(seed), msg).hex() == signature, "sign_raw"
    verify_strict(msg, sig, keypair.public)
    assert lax_verify(msg, sig, keypair.public), "reference verifier must agree on vectors"
    if msg:  # a modified message must fail
        expect(Reason.BAD_SIGNATURE, "signature", msg[:-1], sig, keypair.public)


def test_reference_arithmetic_is_sane() -> None:
    assert BASE is not None
    assert mul(L, BASE) == IDENTITY, "B has order L"
    seed = bytes.fromhex(RFC8032[0][1])
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] = (h[31] & 127) | 64
    assert encode(mul(int.from_bytes(h, "little"), BASE)).hex() == RFC8032[0][2]


# --- the small-order table itself ---------------------------------------------------------


def test_small_order_table_is_exactly_the_eight_torsion_points() -> None:
    points = set()
    for y in SMALL_ORDER_Y:
        for sign in (0, 1):
            point = decode_lax((y | (sign << 255)).to_bytes(32, "little"))
            assert point is not None, f"y={y} sign={sign} must decode"
            assert mul(8, point) == IDENTITY, f"y={y}: 8·P must be the identity"
            points.add(point)
    assert len(points) == 8, f"expected the 8 torsion points, found {len(points)}"


@given(st.binary(min_size=32, max_size=32))
def test_small_order_detection_agrees_with_arithmetic(encoded: bytes) -> None:
    point = decode_lax(encoded)
    torsion = point is not None and mul(8, point) == IDENTITY
    assert is_small_order(encoded) == torsion


def _small_order_spellings() -> list[bytes]:
    out = []
    for y in sorted(SMALL_ORDER_Y):
        for value in (y, y + P):
            if value < 2**255:
                out += [value.to_bytes(32, "little"), (value | 1 << 255).to_bytes(32, "little")]
    return out


SMALL_ORDER_SPELLINGS = _small_order_spellings()


def test_every_small_order_spelling_is_listed() -> None:
    # 5 y values x 2 signs, plus y = p and p + 1 (non-canonical 0 and 1) x 2 signs.
    assert len(SMALL_ORDER_SPELLINGS) == 14
    assert all(is_small_order(b) for b in SMALL_ORDER_SPELLINGS)


# --- rejections, each shown to be accepted by a lax verifier first -------------------------

KEY = Keypair.from_seed(hashlib.sha256(b"test_signing").digest())
MESSAGE = b"\xffMachPay" + bytes(89)
SIGNATURE = KEY.sign(MESSAGE)


def test_s_plus_l_is_malleable_for_lax_verifiers_and_rejected_here() -> None:
    s = int.from_bytes(SIGNATURE[32:], "little")
    malleated = SIGNATURE[:32] + (s + L).to_bytes(32, "little")
    assert lax_verify(MESSAGE, malleated, KEY.public), "S+L is a valid lax signature"
    expect(Reason.NON_CANONICAL_SIGNATURE, "signature", MESSAGE, malleated, KEY.public)


@given(st.binary(max_size=128), st.binary(min_size=32, max_size=32))
@settings(max_examples=50)
def test_s_plus_l_always_rejected(message: bytes, seed: bytes) -> None:
    keypair = Keypair.from_seed(seed)
    signature = keypair.sign(message)
    verify_strict(message, signature, keypair.public)
    s = int.from_bytes(signature[32:], "little")
    for bad_s in (s + L, s + 2 * L, L, 2**256 - 1):
        if bad_s < 2**256:
            malleated = signature[:32] + bad_s.to_bytes(32, "little")
            expect(Reason.NON_CANONICAL_SIGNATURE, "signature", message, malleated, keypair.public)


def test_identity_key_forgery_is_rejected() -> None:
    identity = (1).to_bytes(32, "little")
    forged = identity + bytes(32)  # R = identity, S = 0: [0]B == O + [k]O for ANY message
    assert lax_verify(MESSAGE, forged, identity), "the classic universal forgery"
    expect(Reason.SMALL_ORDER_KEY, "agent", MESSAGE, forged, identity)


@pytest.mark.parametrize("key", SMALL_ORDER_SPELLINGS, ids=lambda b: b.hex()[:8] + b.hex()[-2:])
def test_small_order_keys_rejected(key: bytes) -> None:
    expect(Reason.SMALL_ORDER_KEY, "agent", MESSAGE, (1).to_bytes(32, "little") + bytes(32), key)
    with pytest.raises(BadSignatureError):  # libsodium agrees; we are not weaker than it
        sodium.crypto_sign_open(SIGNATURE + MESSAGE, key)


def _secret_scalar(keypair: Keypair) -> int:
    h = bytearray(hashlib.sha512(keypair.seed).digest()[:32])
    h[0] &= 248
    h[31] = (h[31] & 127) | 64
    return int.from_bytes(h, "little")


@pytest.mark.parametrize(
    "r",
    [b for b in SMALL_ORDER_SPELLINGS if is_canonical_point(b) and b[31] < 0x80],
    ids=lambda b: b.hex()[:8],
)
def test_small_order_r_rejected_even_when_cofactored_verification_passes(r: bytes) -> None:
    k = int.from_bytes(hashlib.sha512(r + KEY.public + MESSAGE).digest(), "little") % L
    s = k * _secret_scalar(KEY) % L
    signature = r + s.to_bytes(32, "little")
    # Cofactored check 8[S]B == 8R + 8[k]A holds because 8R = O.
    a = decode_lax(KEY.public)
    point_r = decode_lax(r)
    assert a is not None
    assert point_r is not None
    assert BASE is not None
    assert mul(8, mul(s, BASE)) == mul(8, add(point_r, mul(k, a)))
    if r == (1).to_bytes(32, "little"):
        assert lax_verify(MESSAGE, signature, KEY.public), "R = identity passes cofactorless"
    expect(Reason.SMALL_ORDER_R, "signature", MESSAGE, signature, KEY.public)


def test_non_canonical_r_rejected() -> None:
    y = P + 2  # not a small-order spelling
    expect(
        Reason.NON_CANONICAL_SIGNATURE,
        "signature",
        MESSAGE,
        y.to_bytes(32, "little") + SIGNATURE[32:],
        KEY.public,
    )


def test_non_canonical_key_rejected() -> None:
    for y in range(P + 2, 2**255):
        expect(Reason.NON_CANONICAL_KEY, "agent", MESSAGE, SIGNATURE, y.to_bytes(32, "little"))


def test_key_off_the_curve_is_reported_as_invalid_key() -> None:
    off = next(
        y.to_bytes(32, "little")
        for y in range(2, 100)
        if decode_lax(y.to_bytes(32, "little")) is None
    )
    assert not is_on_curve(off)
    expect(Reason.INVALID_KEY, "agent", MESSAGE, SIGNATURE, off)


@given(st.binary(min_size=32, max_size=32))
def test_on_curve_agrees_with_reference_decoding(encoded: bytes) -> None:
    # (Small-order spellings are refused before this check; "negative zero" x
    # is where RFC 8032 decoding and the lax decoder above differ.)
    if not is_small_order(encoded):
        assert is_on_curve(encoded) == (decode_lax(encoded) is not None)


@pytest.mark.parametrize(
    ("signature", "key", "field"),
    [
        (SIGNATURE[:63], KEY.public, "signature"),
        (SIGNATURE + b"\x00", KEY.public, "signature"),
        (SIGNATURE, KEY.public[:31], "agent"),
        (SIGNATURE[:10], b"", "signature"),  # both wrong: the signature is named first
    ],
)
def test_length_errors(signature: bytes, key: bytes, field: str) -> None:
    expect(Reason.BAD_LENGTH, field, MESSAGE, signature, key)


def test_forged_and_wrong_key_signatures() -> None:
    other = Keypair.from_seed(bytes(32))
    expect(Reason.BAD_SIGNATURE, "signature", MESSAGE, SIGNATURE, other.public)
    expect(Reason.BAD_SIGNATURE, "signature", MESSAGE + b"x", SIGNATURE, KEY.public)
    expect(Reason.BAD_SIGNATURE, "signature", MESSAGE, other.sign(MESSAGE), KEY.public)


@given(st.binary(min_size=1, max_size=97), st.data())
@settings(max_examples=60)
def test_any_bit_flip_is_rejected(message: bytes, data: st.DataObject) -> None:
    signature = KEY.sign(message)
    blob = bytearray(message + signature)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    flipped_message, flipped_sig = bytes(blob[: len(message)]), bytes(blob[len(message) :])
    assert not is_valid_signature(flipped_message, flipped_sig, KEY.public), (
        f"flipping bit {bit} must invalidate the signature"
    )


@given(st.binary(max_size=300), st.binary(min_size=32, max_size=32))
@settings(max_examples=50)
def test_honest_signatures_always_verify(message: bytes, seed: bytes) -> None:
    keypair = Keypair.from_seed(seed)
    verify_strict(message, keypair.sign(message), keypair.public)


# --- the production verifier (dalek via solders) decides exactly like libsodium ---


def _decision(verify: object, message: bytes, signature: bytes, key: bytes) -> str | None:
    assert callable(verify)
    try:
        verify(message, signature, key)
    except ProtocolError as exc:
        return f"{exc.reason.value}:{exc.field}"
    return None


@settings(max_examples=300, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(min_size=0, max_size=200),
    flip=st.integers(min_value=-1, max_value=64 * 8 - 1),
)
def test_dalek_and_libsodium_agree_on_honest_and_tampered_signatures(
    seed: bytes, message: bytes, flip: int
) -> None:
    key = Keypair.from_seed(seed)
    signature = bytearray(key.sign(message))
    if flip >= 0:
        signature[flip // 8] ^= 1 << (flip % 8)
    both = {
        _decision(verify, message, bytes(signature), key.public)
        for verify in (verify_strict, verify_strict_libsodium)
    }
    assert len(both) == 1, f"verifiers disagree: {both}"
    if flip < 0:
        assert both == {None}


@settings(max_examples=200, deadline=None)
@given(
    message=st.binary(max_size=97),
    signature=st.binary(min_size=64, max_size=64),
    key=st.binary(min_size=32, max_size=32),
)
def test_dalek_and_libsodium_agree_on_arbitrary_bytes(
    message: bytes, signature: bytes, key: bytes
) -> None:
    assert _decision(verify_strict, message, signature, key) == _decision(
        verify_strict_libsodium, message, signature, key
    )
