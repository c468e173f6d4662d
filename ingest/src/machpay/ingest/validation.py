"""Per-record validation of intents and client logs, before anything is produced.

Each record either becomes a typed value ready to produce
(:class:`~machpay.wire.intents.AcceptedIntent`, a ``machpay.ClientLog``
dict) or a :class:`RecordError` naming its index, the field, a reason code
(the :class:`~machpay.protocol.Reason` vocabulary) and a detail for humans.

Intents are checked in the gateway's order: shape, lengths and encodings,
the 97-byte message, the id when one is carried (it must be SHA-256 of the
message: dedupe keys are never trusted from the wire), the signature
strictly (:meth:`SignedIntent.verify`), then the binding: the deployment's
domain and the channel of (agent, vendor). Expiry is not checked: a gateway
served the call earlier and may deliver it late.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from machpay.protocol import (
    ProtocolError,
    Reason,
    SignedIntent,
    address_to_bytes,
    channel_address,
)
from machpay.wire.intents import AcceptedIntent
from machpay.wire.rejected import MAX_RAW, dead_letter

MAX_SERVICE = 200
MAX_ROUTE = 1_024
MAX_URL = 4_096
MAX_METHOD = 16
MAX_ERROR = 2_048
MAX_SDK_VERSION = 64
I64_MAX = 2**63 - 1
OUTCOMES = frozenset({"PAID", "FREE", "REFUSED_BY_POLICY", "PAYMENT_REJECTED", "ERROR"})
_METHOD = re.compile(r"^[A-Z]{1,16}$")

INTENT_FIELDS = frozenset(
    {"message", "signature", "agent", "vendor", "service", "route", "accepted_at_ms"}
)
INTENT_OPTIONAL = frozenset({"id"})
LOG_FIELDS = frozenset(
    {"agent", "url", "method", "status", "latency_ms", "amount", "outcome", "at_ms", "sdk_version"}
)
LOG_OPTIONAL = frozenset({"vendor", "intent_id", "error"})


@dataclass(frozen=True, slots=True)
class RecordError:
    """Why the record at ``index`` was refused, and what is known of it for the dead letter."""

    index: int
    field: str | None
    reason: str
    detail: str
    agent: bytes | None = None
    message: bytes | None = None
    signature: bytes | None = None
    raw: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "field": self.field,
            "reason": self.reason,
            "detail": self.detail,
        }

    def dead_letter(self, *, source: str, at_ms: int) -> dict[str, Any]:
        """The ``machpay.RejectedIntent`` value for intents.rejected."""
        return dead_letter(
            reason=self.reason,
            detail=f"record {self.index}: {self.detail}",
            field=self.field,
            source=source,
            at_ms=at_ms,
            agent=self.agent,
            message=self.message,
            signature=self.signature,
            raw=self.raw,
        )


class RecordRefusedError(Exception):
    """One record is invalid; turned into a RecordError by the caller."""

    def __init__(self, field: str | None, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Binding:
    """What every intent must be bound to in this deployment."""

    domain: bytes | None
    program_id: bytes


# -- field helpers -------------------------------------------------------------------------


def _bad(field: str, detail: str, reason: str = Reason.BAD_FIELD) -> RecordRefusedError:
    return RecordRefusedError(field, reason, detail)


def _string(record: dict[str, Any], field: str, max_len: int, *, empty: bool = False) -> str:
    value = record.get(field)
    if not isinstance(value, str):
        raise _bad(field, f"{field} must be a string, got {_type(value)}")
    if not empty and not value:
        raise _bad(field, f"{field} must not be empty")
    if len(value) > max_len:
        raise _bad(field, f"{field} is {len(value)} characters; at most {max_len}", "bad_length")
    return value


def _int(record: dict[str, Any], field: str, low: int, high: int) -> int:
    value = record.get(field)
    if type(value) is not int:
        raise _bad(field, f"{field} must be an integer, got {_type(value)}")
    if not low <= value <= high:
        raise _bad(field, f"{field} {value} is outside {low}..{high}")
    return value


def _b64(record: dict[str, Any], field: str, length: int) -> bytes:
    value = record.get(field)
    if not isinstance(value, str):
        raise _bad(field, f"{field} must be a base64 string, got {_type(value)}")
    if len(value) > 4 * length:  # refuse before decoding an enormous string
        raise _bad(field, f"{field} is far longer than {length} bytes", Reason.BAD_LENGTH)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(field, f"{field} is not valid base64") from None
    if len(raw) != length:
        raise _bad(field, f"{field} is {len(raw)} bytes, expected {length}", Reason.BAD_LENGTH)
    return raw


def _address(record: dict[str, Any], field: str) -> bytes:
    value = record.get(field)
    if not isinstance(value, str):
        raise _bad(field, f"{field} must be a base58 address string, got {_type(value)}")
    if len(value) > 64:
        raise _bad(field, f"{field} is too long for a base58 address", Reason.BAD_LENGTH)
    try:
        return address_to_bytes(value)
    except ValueError:
        raise _bad(field, f"{field} {value!r} is not a base58 32-byte address") from None


def _hex32(record: dict[str, Any], field: str) -> bytes:
    value = record.get(field)
    if not isinstance(value, str) or len(value) != 64:
        raise _bad(field, f"{field} must be 64 hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _bad(field, f"{field} is not hex") from None


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _fields(record: Any, required: frozenset[str], optional: frozenset[str]) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RecordRefusedError(
            None, Reason.BAD_FIELD, f"record must be an object, got {_type(record)}"
        )
    missing = sorted(required - record.keys())
    if missing:
        raise _bad(missing[0], f"missing field(s): {', '.join(missing)}")
    unknown = sorted(record.keys() - required - optional)
    if unknown:
        raise _bad(unknown[0], f"unknown field(s): {', '.join(unknown)}")
    return record


# -- intents -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntentParts:
    """An intent record decoded from JSON or Avro, not yet checked beyond types."""

    message: bytes
    signature: bytes
    agent: bytes
    vendor: bytes
    service: str
    route: str
    accepted_at_ms: int
    id: bytes | None


def intent_from_json(record: Any) -> IntentParts:
    """Shape, encodings and lengths of one JSON intent; RecordRefusedError names the field."""
    rec = _fields(record, INTENT_FIELDS, INTENT_OPTIONAL)
    return IntentParts(
        message=_b64(rec, "message", 97),
        signature=_b64(rec, "signature", 64),
        agent=_address(rec, "agent"),
        vendor=_address(rec, "vendor"),
        service=_string(rec, "service", MAX_SERVICE),
        route=_string(rec, "route", MAX_ROUTE),
        accepted_at_ms=_int(rec, "accepted_at_ms", 0, I64_MAX),
        id=_hex32(rec, "id") if rec.get("id") is not None else None,
    )


def intent_from_avro(record: dict[str, Any]) -> IntentParts:
    """One decoded ``machpay.AcceptedIntent``: Avro already fixed the types and sizes."""
    service = _string(record, "service", MAX_SERVICE)
    route = _string(record, "route", MAX_ROUTE)
    return IntentParts(
        message=record["message"],
        signature=record["signature"],
        agent=record["agent"],
        vendor=record["vendor"],
        service=service,
        route=route,
        accepted_at_ms=_int(record, "accepted_at_ms", 0, I64_MAX),
        id=record["id"],
    )


def check_intent(parts: IntentParts, binding: Binding) -> AcceptedIntent:
    """Message, id, strict signature and binding; ProtocolError/RecordRefusedError say why not."""
    signed = SignedIntent(parts.message, parts.signature, parts.agent)
    if parts.id is not None and parts.id != signed.id:
        raise _bad("id", "id is not the SHA-256 of the message")
    signed.verify()
    intent = signed.intent
    if binding.domain is not None and intent.domain != binding.domain:
        raise RecordRefusedError(
            "domain",
            Reason.WRONG_DOMAIN,
            f"intent is for deployment {intent.domain.hex()}, this is {binding.domain.hex()}",
        )
    expected = channel_address(
        program_id=binding.program_id, agent=parts.agent, vendor=parts.vendor
    )
    if intent.channel != expected:
        raise RecordRefusedError(
            "vendor",
            Reason.WRONG_CHANNEL,
            "the intent's channel is not the channel of this agent and vendor",
        )
    return AcceptedIntent(
        signed=signed,
        vendor=parts.vendor,
        service=parts.service,
        route=parts.route,
        accepted_at_ms=parts.accepted_at_ms,
        source="INGEST",
    )


def refusal(index: int, exc: Exception, parts: IntentParts | None, raw: Any) -> RecordError:
    """A RecordError from a refusal, keeping what the dead letter can carry."""
    if isinstance(exc, ProtocolError):
        field, reason, detail = exc.field, exc.reason.value, exc.message
    elif isinstance(exc, RecordRefusedError):
        field, reason, detail = exc.field, str(exc.reason), exc.detail
    else:  # pragma: no cover - a bug in a check, still reported per record
        field, reason, detail = None, Reason.BAD_FIELD.value, f"{type(exc).__name__}: {exc}"
    agent = message = signature = None
    raw_bytes: bytes | None = None
    if parts is not None:
        agent, message, signature = parts.agent, parts.message, parts.signature
    else:
        raw_bytes = _raw(raw)
        if isinstance(raw, dict):
            agent = _try(lambda: _address(raw, "agent"))
            message = _try(lambda: base64.b64decode(str(raw.get("message")), validate=True))
            signature = _try(lambda: base64.b64decode(str(raw.get("signature")), validate=True))
    return RecordError(index, field, reason, detail, agent, message, signature, raw_bytes)


def _try(fn: Callable[[], bytes]) -> bytes | None:
    try:
        value = fn()
    except Exception:
        return None
    return value if len(value) <= MAX_RAW else None


def _raw(record: Any) -> bytes | None:
    try:
        return orjson.dumps(record)[:MAX_RAW]
    except TypeError:
        return None


def validate_intents(
    records: list[Any], *, avro: bool, binding: Binding, offset: int = 0
) -> tuple[list[tuple[int, AcceptedIntent]], list[RecordError]]:
    """Validate ``records`` (indices start at ``offset``); thread-safe, no I/O."""
    accepted: list[tuple[int, AcceptedIntent]] = []
    errors: list[RecordError] = []
    for i, record in enumerate(records, offset):
        parts: IntentParts | None = None
        try:
            parts = intent_from_avro(record) if avro else intent_from_json(record)
            accepted.append((i, check_intent(parts, binding)))
        except (RecordRefusedError, ProtocolError) as exc:
            errors.append(refusal(i, exc, parts, record))
    return accepted, errors


# -- client logs ----------------------------------------------------------------------------


def log_from_json(record: Any) -> dict[str, Any]:
    """One SDK CallRecord (JSON) as a ``machpay.ClientLog`` value; the error names the field."""
    rec = _fields(record, LOG_FIELDS, LOG_OPTIONAL)
    latency: Any = rec.get("latency_ms")
    if type(latency) not in (int, float) or not math.isfinite(latency) or latency < 0:
        raise _bad("latency_ms", "latency_ms must be a finite number >= 0")
    value = {
        "agent": _address(rec, "agent"),
        "url": _string(rec, "url", MAX_URL),
        "method": _string(rec, "method", MAX_METHOD),
        "vendor": _address(rec, "vendor") if rec.get("vendor") is not None else None,
        "status": _int(rec, "status", 0, 999),
        "latency_ms": float(latency),
        "amount": _int(rec, "amount", 0, I64_MAX),
        "intent_id": _hex32(rec, "intent_id") if rec.get("intent_id") is not None else None,
        "outcome": rec.get("outcome"),
        "error": _string(rec, "error", MAX_ERROR, empty=True)
        if rec.get("error") is not None
        else None,
        "at_ms": _int(rec, "at_ms", 0, I64_MAX),
        "sdk_version": _string(rec, "sdk_version", MAX_SDK_VERSION),
    }
    return check_log(value)


def check_log(value: dict[str, Any]) -> dict[str, Any]:
    """Rules shared by JSON and Avro logs (Avro fixed the types already)."""
    if not _METHOD.match(value["method"]):
        raise _bad("method", "method must be an upper-case HTTP method")
    if value["outcome"] not in OUTCOMES:
        raise _bad("outcome", f"outcome must be one of {', '.join(sorted(OUTCOMES))}")
    if not 0 <= value["status"] <= 999:
        raise _bad("status", f"status {value['status']} is outside 0..999")
    for field, limit in (("url", MAX_URL), ("sdk_version", MAX_SDK_VERSION)):
        if not value[field]:
            raise _bad(field, f"{field} must not be empty")
        if len(value[field]) > limit:
            raise _bad(field, f"{field} is longer than {limit} characters", Reason.BAD_LENGTH)
    if value["error"] is not None and len(value["error"]) > MAX_ERROR:
        raise _bad("error", f"error is longer than {MAX_ERROR} characters", Reason.BAD_LENGTH)
    latency = value["latency_ms"]
    if not math.isfinite(latency) or latency < 0:
        raise _bad("latency_ms", "latency_ms must be a finite number >= 0")
    if value["amount"] < 0 or value["at_ms"] < 0:
        field = "amount" if value["amount"] < 0 else "at_ms"
        raise _bad(field, f"{field} must be >= 0")
    return value


def validate_logs(
    records: list[Any], *, avro: bool
) -> tuple[list[tuple[int, dict[str, Any]]], list[RecordError]]:
    accepted: list[tuple[int, dict[str, Any]]] = []
    errors: list[RecordError] = []
    for i, record in enumerate(records):
        try:
            accepted.append((i, check_log(dict(record)) if avro else log_from_json(record)))
        except RecordRefusedError as exc:
            errors.append(RecordError(i, exc.field, str(exc.reason), exc.detail))
    return accepted, errors
