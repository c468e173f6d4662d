"""The x402 v2 HTTP transport as MachPay speaks it: the three payment headers.

One module, shared by the agent SDK and the vendor gateway, so that both ends
parse and print exactly the same JSON (contract: ``docs/x402.md``;
background: ``docs/protocol.md``). Every header is base64 (standard alphabet,
padded) of UTF-8 JSON. On the wire amounts are decimal strings (u64 lamports),
addresses base58, message and signature base64, ids and the domain tag hex;
in these dataclasses they are ``int`` and ``bytes``, already validated.

* ``PAYMENT-REQUIRED`` (:class:`PaymentRequired`): the 402 answer, also sent
  as the body. ``error`` is ``payment_required`` for a plain unpaid call, or
  a :class:`~machpay.protocol.Reason` value for a refused paid retry.
* ``PAYMENT-SIGNATURE`` (:class:`PaymentSignature`): the paid retry; carries
  the accepts[] entry the agent chose and the signed 97-byte intent.
* ``PAYMENT-RESPONSE`` (:class:`PaymentResponse`): the receipt on success.

Decoding never raises anything but :class:`~machpay.protocol.ProtocolError`
with reason ``malformed_header`` and ``field`` set to the JSON path of the
offending value (``"payload.signature"``, ``"accepts[0].amount"``, or ``"$"``
for the document itself). Unknown JSON members are ignored, so a later minor
revision can add members without breaking older peers.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from machpay.protocol.errors import ProtocolError, Reason
from machpay.protocol.intent import (
    CHALLENGE_MAX,
    DOMAIN_LEN,
    MESSAGE_LEN,
    NATIVE_SOL,
    U64_MAX,
    SignedIntent,
    channel_address,
)
from machpay.protocol.keys import address_to_bytes, bytes_to_address
from machpay.protocol.signing import SIGNATURE_LEN

X402_VERSION = 2
#: The ``scheme`` value of a MachPay accepts[] entry.
SCHEME = "machpay"
#: ``error`` of a 402 answering a call that carried no payment at all.
PAYMENT_REQUIRED_ERROR = "payment_required"
#: Default ``maxTimeoutSeconds`` a gateway offers.
DEFAULT_MAX_TIMEOUT_SECONDS = 60

PAYMENT_REQUIRED_HEADER = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE_HEADER = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE_HEADER = "PAYMENT-RESPONSE"

ID_LEN = 32

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX = re.compile(r"[0-9a-f]*")


def _malformed(path: str, detail: str) -> ProtocolError:
    return ProtocolError(Reason.MALFORMED_HEADER, path, detail)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- typed readers over parsed JSON; each names the path it refuses ---------


def _obj(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(path or "$", f"expected a JSON object, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _member(obj: dict[str, Any], key: str, path: str) -> object:
    if key not in obj:
        raise _malformed(_join(path, key), "missing")
    return obj[key]


def _str(obj: dict[str, Any], key: str, path: str, *, allow_empty: bool = True) -> str:
    value = _member(obj, key, path)
    if not isinstance(value, str):
        raise _malformed(_join(path, key), f"expected a string, got {_kind(value)}")
    if not allow_empty and not value:
        raise _malformed(_join(path, key), "must not be empty")
    return value


def _opt_str(obj: dict[str, Any], key: str, path: str, default: str | None) -> str | None:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _malformed(_join(path, key), f"expected a string or null, got {_kind(value)}")
    return value


def _int(obj: dict[str, Any], key: str, path: str, low: int, high: int) -> int:
    value = _member(obj, key, path)
    if type(value) is not int:
        raise _malformed(_join(path, key), f"expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise _malformed(_join(path, key), f"{value} is outside {low}..{high}")
    return value


def _parse_decimal(value: object, path: str, low: int = 0) -> int:
    if not isinstance(value, str):
        raise _malformed(path, f"expected a decimal string, got {_kind(value)}")
    if len(value) > 20 or not _DECIMAL.fullmatch(value):
        raise _malformed(path, "expected a canonical decimal string of a u64")
    number = int(value)
    if not low <= number <= U64_MAX:
        raise _malformed(path, f"{number} is outside {low}..{U64_MAX}")
    return number


def _decimal(obj: dict[str, Any], key: str, path: str, low: int = 0) -> int:
    return _parse_decimal(_member(obj, key, path), _join(path, key), low)


def _opt_decimal(obj: dict[str, Any], key: str, path: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    return _parse_decimal(value, _join(path, key))


def _b64(obj: dict[str, Any], key: str, path: str, low: int, high: int) -> bytes:
    text = _str(obj, key, path)
    where = _join(path, key)
    try:
        # What base64.b64decode(validate=True) does, without its wrapper.
        raw = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise _malformed(where, f"not standard padded base64: {exc}") from None
    if not low <= len(raw) <= high:
        expected = f"{low}" if low == high else f"{low}..{high}"
        raise _malformed(where, f"decodes to {len(raw)} bytes, expected {expected}")
    return raw


def _hex(obj: dict[str, Any], key: str, path: str, length: int) -> bytes:
    text = _str(obj, key, path)
    where = _join(path, key)
    if len(text) != 2 * length or not _HEX.fullmatch(text):
        raise _malformed(where, f"expected {2 * length} lower-case hex characters")
    return bytes.fromhex(text)


@lru_cache(maxsize=1 << 12)
def _canonical_address(text: str) -> bytes | str:
    """The 32 bytes of a canonical base58 address, or why ``text`` is not one.

    Cached: a gateway sees the same payTo, asset, program id and agents all day,
    and a base58 round trip is most of what decoding a header costs."""
    if not 32 <= len(text) <= 44:
        return "not a base58 Solana address"
    try:
        raw = address_to_bytes(text)
    except ValueError:
        return "not a base58 Solana address"
    if bytes_to_address(raw) != text:
        return "not the canonical base58 spelling of an address"
    return raw


def _address(obj: dict[str, Any], key: str, path: str) -> bytes:
    text = _str(obj, key, path)
    raw = _canonical_address(text)
    if isinstance(raw, str):
        raise _malformed(_join(path, key), raw)
    return raw


def _b64e(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


@lru_cache(maxsize=1 << 12)
def _address_text(key: bytes) -> str:
    """base58 of a 32-byte key (cached: receipts name the same agents over and over)."""
    return bytes_to_address(key)


def _load_header(value: str | bytes, name: str) -> dict[str, Any]:
    """base64 → UTF-8 JSON object, or a ``malformed_header`` at ``$``."""
    try:
        raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
        document = binascii.a2b_base64(raw.strip(), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise _malformed("$", f"{name} is not standard padded base64: {exc}") from None
    return _load_json(document, name)


def _load_json(document: bytes | str, name: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise _malformed("$", f"{name} is not UTF-8 JSON: {exc}") from None
    return _obj(parsed, "$")


def _check_version(obj: dict[str, Any]) -> None:
    version = _member(obj, "x402Version", "")
    if type(version) is not int or version != X402_VERSION:
        raise _malformed("x402Version", f"expected {X402_VERSION}, got {version!r}")


def _dump_header(document: dict[str, Any]) -> str:
    return _b64e(orjson.dumps(document))


# --- the objects ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resource:
    """What is being paid for: the full request URL and how the vendor describes it."""

    url: str
    description: str = ""
    mime_type: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "description": self.description, "mimeType": self.mime_type}

    @classmethod
    def from_json(cls, value: object, path: str = "resource") -> Resource:
        obj = _obj(value, path)
        return cls(
            url=_str(obj, "url", path),
            description=_opt_str(obj, "description", path, "") or "",
            mime_type=_opt_str(obj, "mimeType", path, "") or "",
        )


@dataclass(frozen=True, slots=True)
class PaymentExtra:
    """The MachPay part of an accepts[] entry (``extra``)."""

    program_id: bytes
    domain: bytes
    service: str
    challenge: bytes
    last_cumulative: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "programId": bytes_to_address(self.program_id),
            "domain": self.domain.hex(),
            "service": self.service,
            "challenge": _b64e(self.challenge),
            "lastCumulative": None if self.last_cumulative is None else str(self.last_cumulative),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, value: object, path: str) -> PaymentExtra:
        obj = _obj(value, path)
        return cls(
            program_id=_address(obj, "programId", path),
            domain=_hex(obj, "domain", path, DOMAIN_LEN),
            service=_str(obj, "service", path),
            challenge=_b64(obj, "challenge", path, 1, CHALLENGE_MAX),
            last_cumulative=_opt_decimal(obj, "lastCumulative", path),
            reason=_opt_str(obj, "reason", path, None),
        )


@dataclass(frozen=True, slots=True)
class PaymentRequirements:
    """One accepts[] entry: how this call can be paid."""

    network: str
    amount: int
    pay_to: bytes
    extra: PaymentExtra
    asset: bytes = NATIVE_SOL
    max_timeout_seconds: int = DEFAULT_MAX_TIMEOUT_SECONDS
    scheme: str = SCHEME

    def channel(self, agent: bytes) -> bytes:
        """The channel PDA an intent paying this entry must name, for ``agent``."""
        return channel_address(
            program_id=self.extra.program_id, agent=agent, vendor=self.pay_to, asset=self.asset
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "network": self.network,
            "amount": str(self.amount),
            "asset": bytes_to_address(self.asset),
            "payTo": bytes_to_address(self.pay_to),
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "extra": self.extra.to_json(),
        }

    @classmethod
    def from_json(cls, value: object, path: str) -> PaymentRequirements:
        obj = _obj(value, path)
        return cls(
            scheme=_str(obj, "scheme", path, allow_empty=False),
            network=_str(obj, "network", path, allow_empty=False),
            amount=_decimal(obj, "amount", path),
            asset=_address(obj, "asset", path),
            pay_to=_address(obj, "payTo", path),
            max_timeout_seconds=_int(obj, "maxTimeoutSeconds", path, 0, 2**31 - 1),
            extra=PaymentExtra.from_json(_member(obj, "extra", path), _join(path, "extra")),
        )


@dataclass(frozen=True, slots=True)
class PaymentRequired:
    """The ``PAYMENT-REQUIRED`` header and 402 body."""

    error: str
    resource: Resource
    accepts: tuple[PaymentRequirements, ...]
    x402_version: int = X402_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "x402Version": self.x402_version,
            "error": self.error,
            "resource": self.resource.to_json(),
            "accepts": [entry.to_json() for entry in self.accepts],
        }

    def body(self) -> bytes:
        """The same JSON as the header, as the 402 response body."""
        return orjson.dumps(self.to_json())

    def encode(self) -> str:
        """The header value."""
        return _dump_header(self.to_json())

    @classmethod
    def from_json(cls, value: object) -> PaymentRequired:
        obj = _obj(value, "$")
        _check_version(obj)
        accepts = _member(obj, "accepts", "")
        if not isinstance(accepts, list) or not accepts:
            raise _malformed("accepts", "expected a non-empty array")
        return cls(
            error=_str(obj, "error", ""),
            resource=Resource.from_json(_member(obj, "resource", ""), "resource"),
            accepts=tuple(
                PaymentRequirements.from_json(entry, f"accepts[{index}]")
                for index, entry in enumerate(accepts)
            ),
        )

    @classmethod
    def decode(cls, header: str | bytes) -> PaymentRequired:
        return cls.from_json(_load_header(header, PAYMENT_REQUIRED_HEADER))

    @classmethod
    def from_body(cls, body: bytes | str) -> PaymentRequired:
        return cls.from_json(_load_json(body, "402 body"))


@dataclass(frozen=True, slots=True)
class PaymentPayload:
    """The signed intent as it travels: message, signature, agent key."""

    message: bytes
    signature: bytes
    agent: bytes

    @classmethod
    def from_signed(cls, signed: SignedIntent) -> PaymentPayload:
        return cls(signed.message, signed.signature, signed.agent)

    def signed_intent(self) -> SignedIntent:
        """Decode the 97-byte message (not verified; raises ProtocolError if ill-formed)."""
        return SignedIntent(self.message, self.signature, self.agent)

    def to_json(self) -> dict[str, Any]:
        return {
            "message": _b64e(self.message),
            "signature": _b64e(self.signature),
            "agent": bytes_to_address(self.agent),
        }

    @classmethod
    def from_json(cls, value: object, path: str) -> PaymentPayload:
        obj = _obj(value, path)
        return cls(
            message=_b64(obj, "message", path, MESSAGE_LEN, MESSAGE_LEN),
            signature=_b64(obj, "signature", path, SIGNATURE_LEN, SIGNATURE_LEN),
            agent=_address(obj, "agent", path),
        )


@dataclass(frozen=True, slots=True)
class PaymentSignature:
    """The ``PAYMENT-SIGNATURE`` header of a paid retry."""

    resource: Resource
    accepted: PaymentRequirements
    payload: PaymentPayload
    x402_version: int = X402_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "x402Version": self.x402_version,
            "resource": self.resource.to_json(),
            "accepted": self.accepted.to_json(),
            "payload": self.payload.to_json(),
        }

    def encode(self) -> str:
        return _dump_header(self.to_json())

    @classmethod
    def from_json(cls, value: object) -> PaymentSignature:
        obj = _obj(value, "$")
        _check_version(obj)
        return cls(
            resource=Resource.from_json(_member(obj, "resource", ""), "resource"),
            accepted=PaymentRequirements.from_json(_member(obj, "accepted", ""), "accepted"),
            payload=PaymentPayload.from_json(_member(obj, "payload", ""), "payload"),
        )

    @classmethod
    def decode(cls, header: str | bytes) -> PaymentSignature:
        return cls.from_json(_load_header(header, PAYMENT_SIGNATURE_HEADER))


@dataclass(frozen=True, slots=True)
class PaymentResponse:
    """The ``PAYMENT-RESPONSE`` receipt: settlement is deferred, the intent id is the key."""

    network: str
    payer: bytes
    intent_id: bytes
    amount: int
    cumulative: int
    nonce: int
    success: bool = True

    @classmethod
    def for_intent(cls, signed: SignedIntent, network: str) -> PaymentResponse:
        return cls(
            network=network,
            payer=signed.agent,
            intent_id=signed.id,
            amount=signed.amount,
            cumulative=signed.cumulative,
            nonce=signed.nonce,
        )

    def to_json(self) -> dict[str, Any]:
        ident = self.intent_id.hex()
        return {
            "success": self.success,
            "transaction": ident,
            "network": self.network,
            "payer": _address_text(self.payer),
            "extra": {
                "intentId": ident,
                "amount": str(self.amount),
                "cumulative": str(self.cumulative),
                "nonce": str(self.nonce),
            },
        }

    def encode(self) -> str:
        return _dump_header(self.to_json())

    @classmethod
    def from_json(cls, value: object) -> PaymentResponse:
        obj = _obj(value, "$")
        success = _member(obj, "success", "")
        if not isinstance(success, bool):
            raise _malformed("success", f"expected a boolean, got {_kind(success)}")
        extra = _obj(_member(obj, "extra", ""), "extra")
        intent_id = _hex(extra, "intentId", "extra", ID_LEN)
        if _hex(obj, "transaction", "", ID_LEN) != intent_id:
            raise _malformed("transaction", "differs from extra.intentId")
        return cls(
            success=success,
            network=_str(obj, "network", ""),
            payer=_address(obj, "payer", ""),
            intent_id=intent_id,
            amount=_decimal(extra, "amount", "extra"),
            cumulative=_decimal(extra, "cumulative", "extra"),
            nonce=_decimal(extra, "nonce", "extra"),
        )

    @classmethod
    def decode(cls, header: str | bytes) -> PaymentResponse:
        return cls.from_json(_load_header(header, PAYMENT_RESPONSE_HEADER))


def malformed_header_body(error: ProtocolError) -> bytes:
    """The JSON body of the 400 answering a malformed ``PAYMENT-SIGNATURE``."""
    return orjson.dumps(
        {"error": error.reason.value, "field": error.field or "$", "detail": error.message}
    )


__all__ = [
    "DEFAULT_MAX_TIMEOUT_SECONDS",
    "PAYMENT_REQUIRED_ERROR",
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "SCHEME",
    "X402_VERSION",
    "PaymentExtra",
    "PaymentPayload",
    "PaymentRequired",
    "PaymentRequirements",
    "PaymentResponse",
    "PaymentSignature",
    "Resource",
    "malformed_header_body",
]
