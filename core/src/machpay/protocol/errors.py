"""Machine-readable rejection reasons shared by every MachPay component.

A rejected intent travels through many processes (gateway, ingest, streams,
settler, API) and ends up in ``intents.rejected`` and in 402 bodies. They must
all say *why* with the same vocabulary, so the codes live here, once. The
string values are part of the wire contract: never rename one, only add.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an intent, signature, proof or request was refused."""

    # Decoding the 97-byte message or its companions.
    BAD_LENGTH = "bad_length"
    BAD_MAGIC = "bad_magic"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_FIELD = "bad_field"

    # Ed25519, checked strictly (at least as strict as the on-chain precompile).
    BAD_SIGNATURE = "bad_signature"
    NON_CANONICAL_SIGNATURE = "non_canonical_signature"
    NON_CANONICAL_KEY = "non_canonical_key"
    INVALID_KEY = "invalid_key"
    SMALL_ORDER_KEY = "small_order_key"
    SMALL_ORDER_R = "small_order_r"

    # Binding of a well-formed, well-signed intent to where it is presented.
    WRONG_DOMAIN = "wrong_domain"
    WRONG_CHANNEL = "wrong_channel"
    EXPIRED = "expired"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"

    # Fraud proofs.
    INVALID_PROOF = "invalid_proof"

    # Gateway-level refusals (used by the gateway, declared here so that every
    # component and the analytics agree on the spelling).
    REPLAYED = "replayed"
    STALE_CHALLENGE = "stale_challenge"
    REQUEST_MISMATCH = "request_mismatch"
    PRICE_MISMATCH = "price_mismatch"
    CUMULATIVE_OUT_OF_STEP = "cumulative_out_of_step"
    EXPOSURE_CAP = "exposure_cap"
    AGENT_BANNED = "agent_banned"
    AGENT_UNKNOWN = "agent_unknown"
    SPOOL_FULL = "spool_full"
    MALFORMED_HEADER = "malformed_header"
    OVERSIZED_HEADER = "oversized_header"
    OVERSIZED_BODY = "oversized_body"


class ProtocolError(ValueError):
    """A protocol object was refused.

    ``reason`` is the machine-readable code, ``field`` names the part that was
    wrong (an intent field such as ``"amount"``, or ``"signature"``,
    ``"agent"``, ``"message"``...) or is ``None`` when no single field is to
    blame, and ``message`` says what was wrong in words for humans and logs.
    """

    def __init__(self, reason: Reason, field: str | None, message: str) -> None:
        self.reason = reason
        self.field = field
        self.message = message
        where = f" [{field}]" if field else ""
        super().__init__(f"{reason.value}{where}: {message}")

    def __reduce__(self) -> tuple[type[ProtocolError], tuple[Reason, str | None, str]]:
        # Keeps the three attributes across pickling (multiprocessing workers).
        return (type(self), (self.reason, self.field, self.message))
