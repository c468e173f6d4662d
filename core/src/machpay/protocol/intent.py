"""The payment intent: the 97-byte message an agent signs for each paid call.

Layout (little-endian, fixed; docs/protocol.md has the full table):

    magic(8) version(1) domain(8) channel(32) nonce(8) cumulative(8)
    amount(8) expires_at(8, signed) context(16)

Everything the on-chain program must read is in clear; everything only the
gateway needs (service, request, challenge) is folded into ``context``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from functools import lru_cache

from solders.pubkey import Pubkey

from machpay.protocol.errors import ProtocolError, Reason
from machpay.protocol.keys import Keypair
from machpay.protocol.signing import KEY_LEN, SIGNATURE_LEN, verify_strict

#: A leading 0xff can never start a Solana transaction message (a set top bit
#: marks a versioned message, and version 127 is not valid), so an intent
#: signature can never be replayed as a transaction signature. The rest separates it from any other
#: use of the same key.
MAGIC = b"\xffMachPay"
VERSION = 1
MESSAGE_LEN = 97
DOMAIN_LEN = 8
CHANNEL_LEN = 32
CONTEXT_LEN = 16
SIGNED_INTENT_LEN = MESSAGE_LEN + SIGNATURE_LEN + KEY_LEN

#: Native SOL is spelt as the all-zero asset.
NATIVE_SOL = bytes(32)
CHANNEL_SEED = b"channel"

U64_MAX = 2**64 - 1
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

_LAYOUT = struct.Struct("<8sB8s32sQQQq16s")
assert _LAYOUT.size == MESSAGE_LEN
# Frozen dataclasses are filled through object.__setattr__ (as their own __init__ does).
_set = object.__setattr__
_new = object.__new__
_unpack_from = _LAYOUT.unpack_from
_sha256 = hashlib.sha256

_REQUEST_TAG = b"machpay:request:v1"
_CONTEXT_TAG = b"machpay:context:v1"
CHALLENGE_MAX = 64


def _need_bytes(name: str, value: object, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise ProtocolError(Reason.BAD_FIELD, name, f"expected {length} bytes, got {got}")


def _need_int(name: str, value: object, low: int, high: int) -> None:
    # bool is an int subclass; a True amount is a bug, not 1 lamport.
    if type(value) is not int:
        raise ProtocolError(
            Reason.BAD_FIELD, name, f"expected an integer, got {type(value).__name__}"
        )
    if not low <= value <= high:
        raise ProtocolError(Reason.BAD_FIELD, name, f"{value} is outside {low}..{high}")


def _check_amount(amount: int, cumulative: int) -> None:
    if amount < 1:
        raise ProtocolError(Reason.AMOUNT_OUT_OF_RANGE, "amount", "amount must be at least 1")
    if amount > cumulative:
        raise ProtocolError(
            Reason.AMOUNT_OUT_OF_RANGE,
            "amount",
            f"amount {amount} exceeds cumulative {cumulative}",
        )


@dataclass(frozen=True, slots=True)
class Intent:
    """The decoded fields of a version-1 payment intent. Always valid once built."""

    domain: bytes
    channel: bytes
    nonce: int
    cumulative: int
    amount: int
    expires_at: int
    context: bytes

    def __post_init__(self) -> None:
        _need_bytes("domain", self.domain, DOMAIN_LEN)
        _need_bytes("channel", self.channel, CHANNEL_LEN)
        _need_int("nonce", self.nonce, 0, U64_MAX)
        _need_int("cumulative", self.cumulative, 0, U64_MAX)
        _need_int("amount", self.amount, 0, U64_MAX)
        _need_int("expires_at", self.expires_at, I64_MIN, I64_MAX)
        _need_bytes("context", self.context, CONTEXT_LEN)
        _check_amount(self.amount, self.cumulative)

    def encode(self) -> bytes:
        """The 97 bytes the agent signs."""
        return _LAYOUT.pack(
            MAGIC,
            VERSION,
            self.domain,
            self.channel,
            self.nonce,
            self.cumulative,
            self.amount,
            self.expires_at,
            self.context,
        )

    @classmethod
    def decode(cls, message: bytes) -> Intent:
        """Parse and validate 97 bytes; :class:`ProtocolError` names what was wrong."""
        if len(message) != MESSAGE_LEN:
            raise ProtocolError(
                Reason.BAD_LENGTH,
                "message",
                f"intent message is {len(message)} bytes, expected {MESSAGE_LEN}",
            )
        return _decode(cls, message)


def _decode(cls: type[Intent], message: bytes) -> Intent:
    """Intent.decode after the length check: one unpack, slots filled directly."""
    magic, version, domain, channel, nonce, cumulative, amount, expires_at, context = _unpack_from(
        message
    )
    if magic != MAGIC:
        raise ProtocolError(Reason.BAD_MAGIC, "magic", f"magic is {magic.hex()}")
    if version != VERSION:
        raise ProtocolError(
            Reason.UNSUPPORTED_VERSION,
            "version",
            f"version {version} is not supported (this code speaks {VERSION})",
        )
    # struct already guarantees every type, length and integer range; only
    # the amount rule is left. Skipping __post_init__ halves decode time,
    # which the streams pay on every record.
    if not 1 <= amount <= cumulative:
        _check_amount(amount, cumulative)
    if cls is not Intent:
        intent = object.__new__(cls)
        values = (domain, channel, nonce, cumulative, amount, expires_at, context)
        for name, value in zip(_INTENT_FIELDS, values, strict=True):
            _set(intent, name, value)
        return intent
    # The slot descriptors' own setters: the frozen __setattr__ is bypassed
    # exactly as object.__setattr__ does, without the by-name lookup.
    intent = _new(Intent)
    _i_domain(intent, domain)
    _i_channel(intent, channel)
    _i_nonce(intent, nonce)
    _i_cumulative(intent, cumulative)
    _i_amount(intent, amount)
    _i_expires_at(intent, expires_at)
    _i_context(intent, context)
    return intent


_INTENT_FIELDS = ("domain", "channel", "nonce", "cumulative", "amount", "expires_at", "context")
_i_domain = Intent.__dict__["domain"].__set__
_i_channel = Intent.__dict__["channel"].__set__
_i_nonce = Intent.__dict__["nonce"].__set__
_i_cumulative = Intent.__dict__["cumulative"].__set__
_i_amount = Intent.__dict__["amount"].__set__
_i_expires_at = Intent.__dict__["expires_at"].__set__
_i_context = Intent.__dict__["context"].__set__


def encode_intent(intent: Intent) -> bytes:
    return intent.encode()


def decode_intent(message: bytes) -> Intent:
    return Intent.decode(bytes(message))


def intent_id(message: bytes) -> bytes:
    """SHA-256 of the signed message: the one key to deduplicate on."""
    return hashlib.sha256(message).digest()


# init=False: the __init__ below takes the same (message, signature, agent) as
# the generated one would, and fills the slots directly instead of through
# the frozen __setattr__ and a separate __post_init__ hop. Profiles put
# SignedIntent construction at ~45% of the streams' per-intent CPU.
@dataclass(frozen=True, slots=True, init=False)
class SignedIntent:
    """A message, the agent's signature over it, and the agent's public key.

    Building one checks lengths and decodes the message (so a SignedIntent
    always carries a well-formed intent) but does *not* verify the signature:
    call :meth:`verify` (about 50 µs) where trust is decided.
    """

    message: bytes
    signature: bytes
    agent: bytes
    intent: Intent = field(init=False, repr=False, compare=False)
    id: bytes = field(init=False, repr=False, compare=False)

    def __init__(self, message: bytes, signature: bytes, agent: bytes) -> None:
        _s_message(self, message)
        _s_signature(self, signature)
        _s_agent(self, agent)
        if len(signature) != SIGNATURE_LEN:
            raise ProtocolError(
                Reason.BAD_LENGTH,
                "signature",
                f"signature is {len(signature)} bytes, expected {SIGNATURE_LEN}",
            )
        if len(agent) != KEY_LEN:
            raise ProtocolError(
                Reason.BAD_LENGTH,
                "agent",
                f"agent key is {len(agent)} bytes, expected {KEY_LEN}",
            )
        if len(message) != MESSAGE_LEN:
            raise ProtocolError(
                Reason.BAD_LENGTH,
                "message",
                f"intent message is {len(message)} bytes, expected {MESSAGE_LEN}",
            )
        _s_intent(self, _decode(Intent, message))
        _s_id(self, _sha256(message).digest())

    # The fields the streams touch on every record, without the extra hop.
    @property
    def nonce(self) -> int:
        return self.intent.nonce

    @property
    def channel(self) -> bytes:
        return self.intent.channel

    @property
    def cumulative(self) -> int:
        return self.intent.cumulative

    @property
    def amount(self) -> int:
        return self.intent.amount

    @property
    def domain(self) -> bytes:
        return self.intent.domain

    def verify(self) -> None:
        """Strict Ed25519 check of the agent's signature; raises :class:`ProtocolError`."""
        verify_strict(self.message, self.signature, self.agent)

    def to_bytes(self) -> bytes:
        """message(97) || signature(64) || agent(32): 193 bytes."""
        return self.message + self.signature + self.agent

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedIntent:
        if len(data) != SIGNED_INTENT_LEN:
            raise ProtocolError(
                Reason.BAD_LENGTH,
                "signed_intent",
                f"signed intent is {len(data)} bytes, expected {SIGNED_INTENT_LEN}",
            )
        data = bytes(data)
        return cls(
            data[:MESSAGE_LEN],
            data[MESSAGE_LEN : MESSAGE_LEN + SIGNATURE_LEN],
            data[MESSAGE_LEN + SIGNATURE_LEN :],
        )


_s_message = SignedIntent.__dict__["message"].__set__
_s_signature = SignedIntent.__dict__["signature"].__set__
_s_agent = SignedIntent.__dict__["agent"].__set__
_s_intent = SignedIntent.__dict__["intent"].__set__
_s_id = SignedIntent.__dict__["id"].__set__


def sign_intent(intent: Intent, keypair: Keypair) -> SignedIntent:
    """Encode and sign an intent with the agent's key."""
    message = intent.encode()
    return SignedIntent(message, keypair.sign(message), keypair.public)


@lru_cache(maxsize=1 << 14)
def find_channel(
    *, program_id: bytes, agent: bytes, vendor: bytes, asset: bytes = NATIVE_SOL
) -> tuple[bytes, int]:
    """The channel PDA and its bump for (agent, vendor, asset) under a program.

    Cached: deriving a PDA tries SHA-256 and an off-curve check per bump, and
    gateways ask for the same few channels all day.
    """
    for name, value in (
        ("program_id", program_id),
        ("agent", agent),
        ("vendor", vendor),
        ("asset", asset),
    ):
        _need_bytes(name, value, 32)
    address, bump = Pubkey.find_program_address(
        [CHANNEL_SEED, agent, vendor, asset], Pubkey.from_bytes(program_id)
    )
    return bytes(address), bump


def channel_address(
    *, program_id: bytes, agent: bytes, vendor: bytes, asset: bytes = NATIVE_SOL
) -> bytes:
    """The 32-byte channel PDA that an intent's ``channel`` field must hold."""
    return find_channel(program_id=program_id, agent=agent, vendor=vendor, asset=asset)[0]


def _as_bytes(name: str, value: str | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ProtocolError(
        Reason.BAD_FIELD, name, f"expected str or bytes, got {type(value).__name__}"
    )


def request_hash(method: str, path: str | bytes, query: str | bytes, body: bytes) -> bytes:
    """SHA-256 binding of an HTTP request: method, path, raw query, body digest.

    ``path`` is as sent, without the query; ``query`` is the raw query string
    as sent, without the '?'. Neither is normalised: the agent and the gateway
    must hash the bytes that travelled.
    """
    if not isinstance(method, str) or not method or not method.isascii():
        raise ProtocolError(Reason.BAD_FIELD, "method", "HTTP method must be non-empty ASCII")
    method_bytes = method.upper().encode("ascii")
    if len(method_bytes) > 0xFFFF:
        raise ProtocolError(Reason.BAD_FIELD, "method", "HTTP method is too long")
    path_bytes = _as_bytes("path", path)
    query_bytes = _as_bytes("query", query)
    for name, part in (("path", path_bytes), ("query", query_bytes)):
        if len(part) > 0xFFFFFFFF:
            raise ProtocolError(Reason.BAD_FIELD, name, "longer than 2^32-1 bytes")
    digest = hashlib.sha256(_REQUEST_TAG)
    digest.update(struct.pack("<H", len(method_bytes)))
    digest.update(method_bytes)
    digest.update(struct.pack("<I", len(path_bytes)))
    digest.update(path_bytes)
    digest.update(struct.pack("<I", len(query_bytes)))
    digest.update(query_bytes)
    digest.update(hashlib.sha256(body).digest())
    return digest.digest()


def context_hash(service: str, request_digest: bytes, challenge: bytes) -> bytes:
    """The 16-byte ``context`` field: service, request hash and gateway challenge."""
    service_bytes = _as_bytes("service", service)
    if len(service_bytes) > 0xFFFF:
        raise ProtocolError(Reason.BAD_FIELD, "service", "service name exceeds 65535 bytes")
    _need_bytes("request_hash", request_digest, 32)
    if not isinstance(challenge, bytes) or not 1 <= len(challenge) <= CHALLENGE_MAX:
        raise ProtocolError(
            Reason.BAD_FIELD, "challenge", f"challenge must be 1..{CHALLENGE_MAX} bytes"
        )
    preimage = b"".join(
        (
            _CONTEXT_TAG,
            struct.pack("<H", len(service_bytes)),
            service_bytes,
            request_digest,
            struct.pack("<B", len(challenge)),
            challenge,
        )
    )
    return hashlib.sha256(preimage).digest()[:CONTEXT_LEN]


def check_binding(
    intent: Intent,
    *,
    domain: bytes,
    now: int,
    channel: bytes | None = None,
    context: bytes | None = None,
) -> None:
    """Refuse a well-formed intent presented in the wrong place or too late.

    ``now`` is unix seconds; an intent is good up to and including
    ``expires_at``. ``channel`` and ``context`` are checked when given (the
    settler has no request to compare a context with).
    """
    if intent.domain != domain:
        raise ProtocolError(
            Reason.WRONG_DOMAIN,
            "domain",
            f"intent is for deployment {intent.domain.hex()}, this is {domain.hex()}",
        )
    if channel is not None and intent.channel != channel:
        raise ProtocolError(
            Reason.WRONG_CHANNEL, "channel", "intent channel is not this agent/vendor/asset"
        )
    if now > intent.expires_at:
        raise ProtocolError(
            Reason.EXPIRED, "expires_at", f"expired at {intent.expires_at}, now {now}"
        )
    if context is not None and intent.context != context:
        raise ProtocolError(
            Reason.REQUEST_MISMATCH,
            "context",
            "intent context does not match this service, request and challenge",
        )


def verify_intent(
    message: bytes,
    signature: bytes,
    agent: bytes,
    *,
    domain: bytes,
    now: int,
    channel: bytes | None = None,
    context: bytes | None = None,
) -> SignedIntent:
    """The off-chain acceptance order: parse, verify strictly, then check binding.

    Parsing first refuses garbage before spending ~50 µs on a signature;
    binding last so that a reason like ``expired`` is only ever reported for
    an intent the agent really signed.
    """
    signed = SignedIntent(message, signature, agent)
    signed.verify()
    check_binding(signed.intent, domain=domain, now=now, channel=channel, context=context)
    return signed
