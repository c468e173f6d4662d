"""The JSON bodies of the receiver's API, as Pydantic models for the OpenAPI contract.

The endpoints read bodies themselves (size limits while reading, Avro or
JSON by content type, per-record errors instead of one 422), so these models
document the contract rather than parse requests; validation.py enforces the
same fields and limits record by record.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from machpay.ingest.validation import MAX_ROUTE, MAX_SERVICE


class IntentIn(BaseModel):
    """One intent a gateway served."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="The 97-byte signed intent message, base64.")
    signature: str = Field(description="The agent's Ed25519 signature (64 bytes), base64.")
    agent: str = Field(description="The agent's address (signer), base58.")
    vendor: str = Field(description="The vendor the intent pays, base58.")
    service: str = Field(min_length=1, max_length=MAX_SERVICE)
    route: str = Field(min_length=1, max_length=MAX_ROUTE)
    accepted_at_ms: int = Field(ge=0, description="When the gateway accepted it, Unix ms.")
    id: str | None = Field(
        None, description="Optional intent id (hex SHA-256 of message); checked when given."
    )


class IntentBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intents: list[IntentIn]


class ClientLogIn(BaseModel):
    """One call as the SDK saw it (machpay.sdk.telemetry.CallRecord)."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="base58")
    url: str
    method: str
    vendor: str | None = Field(None, description="base58, when the call met a 402")
    status: int = Field(ge=0, le=999)
    latency_ms: float = Field(ge=0)
    amount: int = Field(ge=0)
    intent_id: str | None = Field(None, description="hex SHA-256 of the signed message")
    outcome: Literal["PAID", "FREE", "REFUSED_BY_POLICY", "PAYMENT_REJECTED", "ERROR"]
    error: str | None = None
    at_ms: int = Field(ge=0)
    sdk_version: str


class ClientLogBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[ClientLogIn]


class RecordRefusal(BaseModel):
    index: int = Field(description="Position of the record in the batch.")
    field: str | None = Field(description="The offending field, when one is to blame.")
    reason: str = Field(description="Machine-readable code (machpay.protocol.Reason values).")
    detail: str


class BatchResult(BaseModel):
    """200: every record accepted; 207: some refused. Both only after acks=all."""

    accepted: int
    rejected: list[RecordRefusal]


class ErrorBody(BaseModel):
    """A whole request refused; nothing of it was produced."""

    error: str
    field: str | None
    detail: str


def request_body(model: type[BaseModel], avro_type: str, avro_record: str) -> dict[str, Any]:
    """The ``openapi_extra`` describing a JSON or framed-Avro request body."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                avro_type: {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": f"A Confluent-framed {avro_record} (magic byte, "
                        "schema id, Avro body).",
                    }
                },
            },
        }
    }


def batch_responses() -> dict[int | str, dict[str, Any]]:
    error: dict[str, Any] = {"model": ErrorBody}
    return {
        200: {"model": BatchResult, "description": "Every record accepted and durable."},
        207: {"model": BatchResult, "description": "Some records refused; see rejected."},
        400: {**error, "description": "Malformed JSON or Avro; field names what."},
        401: {**error, "description": "No, unknown or revoked API key."},
        403: {**error, "description": "The key's role or binding does not allow this."},
        413: {**error, "description": "Body or batch larger than the configured limit."},
        415: {**error, "description": "Unsupported content type."},
        429: {**error, "description": "In-flight bound reached; see Retry-After."},
        503: {**error, "description": "Kafka unavailable or too slow; see Retry-After."},
    }
