"""Strict Ed25519 verification: never accept off-chain what the chain rejects.

Settlement runs through Solana's Ed25519 precompile with ``verify_strict``
semantics. If a gateway accepted a signature that the precompile later
refuses, the vendor would have served a call that can never be paid. So the
off-chain check is *at least* as strict, and it does the strictness checks
explicitly in Python rather than trusting whatever the installed libsodium
happens to enforce:

1. lengths: 32-byte key, 64-byte signature;
2. the key is not one of the 8 small-order points, nor any encoding of one
   (``small_order_key``); its ``y`` is canonical, below p
   (``non_canonical_key``);
3. ``S < L`` (``non_canonical_signature``): otherwise ``S + L`` would be a
   second valid signature over the same message (malleability);
4. ``R`` is not a small-order point (``small_order_r``) and its ``y`` is
   canonical (``non_canonical_signature``);
5. the cofactorless group equation ``[S]B == R + [k]A`` (RFC 8032, pure
   Ed25519), computed by ed25519-dalek through solders: the same library and
   the same ``verify_strict`` code the Solana Ed25519 precompile runs, and
   ~1.25x faster per CPU second than libsodium here (bench/bench_protocol.py
   measures both in one run). libsodium (PyNaCl) computes the same equation;
   ``verify_strict_libsodium`` keeps it as the reference the tests compare with.

When the equation fails, a key that does not even decode to a curve point is
reported as ``invalid_key`` rather than ``bad_signature``.

The explicit checks are a few integer comparisons (well under 1 µs), so they
cost nothing against the ~40 µs of the verification itself.
"""

from __future__ import annotations

from functools import lru_cache

import nacl.bindings as sodium
from nacl.exceptions import BadSignatureError
from solders.pubkey import Pubkey
from solders.signature import Signature

from machpay.protocol.errors import ProtocolError, Reason

KEY_LEN = 32
SIGNATURE_LEN = 64

#: The field prime of Curve25519 / edwards25519.
P = 2**255 - 19
#: The order of the prime-order subgroup (the base point's order).
L = 2**252 + 27742317777372353535851937790883648493
#: Curve constant d = -121665/121666 mod p.
D = (-121665 * pow(121666, P - 2, P)) % P

_Y_MASK = (1 << 255) - 1

# The y-coordinates (mod p) of the 8 points of order dividing 8: the identity
# (y=1), the point of order 2 (y=-1), the two of order 4 (y=0) and the four of
# order 8 (two y values, each with both signs of x). Comparing y mod p with the
# sign bit ignored catches every encoding of these points, canonical or not
# (y = p and y = p+1 are the non-canonical spellings of 0 and 1; a set sign bit
# with x = 0 is the "negative zero" spelling).
SMALL_ORDER_Y: frozenset[int] = frozenset(
    {
        0,
        1,
        P - 1,
        2707385501144840649318225287225658788936804267575313519463743609750303402022,
        55188659117513257062467267217118295137698188065244968500265048394206261417927,
    }
)


def _y(encoded: bytes) -> int:
    return int.from_bytes(encoded, "little") & _Y_MASK


def is_small_order(encoded: bytes) -> bool:
    """True if the 32 bytes encode (in any spelling) a point of order 1, 2, 4 or 8."""
    return _y(encoded) % P in SMALL_ORDER_Y


def is_canonical_point(encoded: bytes) -> bool:
    """True if the encoded y-coordinate is fully reduced (y < p)."""
    return _y(encoded) < P


@lru_cache(maxsize=1 << 16)
def is_on_curve(encoded: bytes) -> bool:
    """True if some x satisfies the curve equation for this y (RFC 8032 §5.1.3).

    x² = (y² - 1) / (d·y² + 1) has a solution iff (y² - 1)·(d·y² + 1) is a
    square mod p (the denominator is never 0 because -1/d is not a square).
    One modular exponentiation, about 90 µs in Python: only used to classify a
    failure, and cached per key.
    """
    y = _y(encoded) % P
    yy = y * y % P
    u_times_v = (yy - 1) * (D * yy + 1) % P
    if u_times_v == 0:
        # x = 0: only valid with the sign bit clear (RFC 8032 decoding step 4).
        return encoded[31] & 0x80 == 0
    return pow(u_times_v, (P - 1) // 2, P) == 1


def check_public_key(public_key: bytes, field: str = "agent") -> None:
    """Refuse a key the precompile would refuse, or that no honest agent has."""
    if len(public_key) != KEY_LEN:
        raise ProtocolError(
            Reason.BAD_LENGTH, field, f"public key is {len(public_key)} bytes, expected {KEY_LEN}"
        )
    if is_small_order(public_key):
        raise ProtocolError(
            Reason.SMALL_ORDER_KEY, field, "public key is a small-order point (weak key)"
        )
    if not is_canonical_point(public_key):
        raise ProtocolError(
            Reason.NON_CANONICAL_KEY, field, "public key y-coordinate is not reduced mod p"
        )


def check_signature_encoding(signature: bytes) -> None:
    """Refuse malleable or degenerate signature encodings before verifying."""
    if len(signature) != SIGNATURE_LEN:
        raise ProtocolError(
            Reason.BAD_LENGTH,
            "signature",
            f"signature is {len(signature)} bytes, expected {SIGNATURE_LEN}",
        )
    if int.from_bytes(signature[32:], "little") >= L:
        raise ProtocolError(
            Reason.NON_CANONICAL_SIGNATURE,
            "signature",
            "S is not reduced mod L (malleated signature)",
        )
    r = signature[:32]
    if is_small_order(r):
        raise ProtocolError(Reason.SMALL_ORDER_R, "signature", "R is a small-order point")
    if not is_canonical_point(r):
        raise ProtocolError(
            Reason.NON_CANONICAL_SIGNATURE, "signature", "R y-coordinate is not reduced mod p"
        )


def _check_encodings(signature: bytes, public_key: bytes) -> None:
    if len(signature) != SIGNATURE_LEN:  # lengths first, whatever else is wrong
        check_signature_encoding(signature)
    check_public_key(public_key)
    check_signature_encoding(signature)


def _refused(public_key: bytes) -> ProtocolError:
    if not is_on_curve(public_key):
        return ProtocolError(Reason.INVALID_KEY, "agent", "public key is not a point on the curve")
    return ProtocolError(
        Reason.BAD_SIGNATURE, "signature", "signature does not verify for this key"
    )


def verify_strict(message: bytes, signature: bytes, public_key: bytes) -> None:
    """Verify a pure Ed25519 signature strictly; raise :class:`ProtocolError` if refused."""
    _check_encodings(signature, public_key)
    if not Signature.from_bytes(signature).verify(Pubkey.from_bytes(public_key), message):
        raise _refused(public_key)


def verify_strict_libsodium(message: bytes, signature: bytes, public_key: bytes) -> None:
    """:func:`verify_strict` with libsodium computing the group equation.

    The reference implementation: tests assert both verifiers decide alike.
    """
    _check_encodings(signature, public_key)
    try:
        sodium.crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        raise _refused(public_key) from None


def is_valid_signature(message: bytes, signature: bytes, public_key: bytes) -> bool:
    """Boolean form of :func:`verify_strict`."""
    try:
        verify_strict(message, signature, public_key)
    except ProtocolError:
        return False
    return True


def sign_raw(seed: bytes, message: bytes) -> bytes:
    """Pure Ed25519 signature (RFC 8032) with the key made from a 32-byte seed.

    Prefer :meth:`machpay.protocol.keys.Keypair.sign`, which keeps the
    expanded secret key instead of re-deriving it on each call.
    """
    _, secret = sodium.crypto_sign_seed_keypair(seed)
    return bytes(sodium.crypto_sign(message, secret)[:SIGNATURE_LEN])
