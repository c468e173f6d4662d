"""The receiver's HTTP API (FastAPI): batches of intents and of SDK logs into Kafka.

Endpoints:

* ``POST /v1/intents`` (role ``gateway``): JSON ``{"intents": [...]}`` or a
  Confluent-framed ``machpay.IntentBatch`` (content type
  ``application/vnd.machpay.intentbatch+avro``);
* ``POST /v1/logs`` (role ``agent``): JSON ``{"records": [...]}`` as the SDK's
  TelemetryPusher sends, or a framed ``machpay.ClientLogBatch``
  (``application/vnd.machpay.clientlogbatch+avro``);
* ``GET /healthz`` (the process runs), ``/readyz`` (the producer is
  connected), ``/metrics`` (Prometheus).

Answers to a batch: ``200 {"accepted": n, "rejected": []}`` when every record
was valid; ``207`` with the same body when any record was refused (each
refusal names index, field, reason and detail; refused intents are also on
``intents.rejected``). Either way every record the answer mentions is
acknowledged by Kafka (acks=all) before the answer is sent: a 2xx means
durable. Whole-request failures answer ``{"error", "field", "detail"}``: 400
(malformed JSON or Avro), 401 (no, unknown or revoked key), 403 (role or
binding), 413 (body or batch too large), 415 (content type), 429 (in-flight
bound, with Retry-After), 503 (Kafka unavailable or too slow, with
Retry-After). Nothing of a request refused as a whole is produced, except
that a malformed or oversized batch of intents (400/413) leaves one dead
letter on ``intents.rejected`` with the raw body (best effort).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from machpay import topics
from machpay.config import ConfigError, Settings, load_settings
from machpay.ingest.keys import KeyStore, Principal
from machpay.ingest.metrics import CONTENT_TYPE_LATEST, IngestMetrics
from machpay.ingest.producer import IngestProducer, KafkaUnavailableError, OverloadedError, Send
from machpay.ingest.schemas import (
    ClientLogBatchIn,
    IntentBatchIn,
    batch_responses,
    request_body,
)
from machpay.ingest.validation import (
    Binding,
    RecordError,
    validate_intents,
    validate_logs,
)
from machpay.kafka.clients import partition_for_key, topic_name
from machpay.kafka.packing import MAX_INTENTS_PER_RECORD, pack_by_partition
from machpay.protocol import address_to_bytes
from machpay.wire import WireCodec, WireDecodeError
from machpay.wire.intents import AcceptedIntent, intent_batch
from machpay.wire.rejected import dead_letter

SOURCE = "ingest"
AVRO_INTENTS = "application/vnd.machpay.intentbatch+avro"
AVRO_LOGS = "application/vnd.machpay.clientlogbatch+avro"
JSON_TYPES = frozenset({"application/json", ""})
#: Records validated between yields to the event loop (health checks stay answered).
VALIDATE_CHUNK = 256
#: How long a refused request waits for its dead letter to be acknowledged.
DEAD_LETTER_SECONDS = 1.0
#: ClientLog records per ClientLogBatch record, at most.
LOGS_PER_RECORD = 1_000
#: Bytes one produced record may hold, with margin under Kafka's default
#: max.request.size (1 MiB): long routes, URLs or errors mean fewer per record.
RECORD_BUDGET = 900_000


def per_record(largest: int, ceiling: int) -> int:
    """How many items of at most ``largest`` encoded bytes fit in one record."""
    return max(1, min(ceiling, RECORD_BUDGET // max(largest, 1)))


def intent_size(intent: AcceptedIntent) -> int:
    """Upper bound of an intent's encoded size (fixed fields + the two strings)."""
    return 300 + len(intent.service.encode()) + len(intent.route.encode())


def log_size(log: dict[str, Any]) -> int:
    """Upper bound of a ClientLog's encoded size."""
    strings = (log["url"], log["method"], log["error"] or "", log["sdk_version"])
    return 150 + sum(len(text.encode()) + 10 for text in strings)


class ApiError(Exception):
    """A whole request is refused; rendered as ``{"error", "field", "detail"}``."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = headers or {}

    def response(self) -> Response:
        body = {"error": self.error, "field": self.field, "detail": self.detail}
        return _json(body, self.status, self.headers)


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(document), status_code=status, media_type="application/json", headers=headers
    )


def default_instance_id() -> str:
    return f"ingest-{socket.gethostname()}-{os.getpid()}"


class Ingest:
    """Everything one receiver process holds: settings, keys, codec, producer, metrics."""

    def __init__(
        self,
        settings: Settings,
        *,
        keys: KeyStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.config = settings.ingest
        if keys is None:
            if self.config.keys_file is None:
                raise ConfigError(
                    "setting ingest.keys_file is required: the API-key store (see ingest/README.md)"
                )
            keys = KeyStore(self.config.keys_file)
        self.keys = keys
        self.clock = clock
        self.codec = WireCodec.from_settings(
            settings.schema_registry, topic_prefix=settings.kafka.topic_prefix
        )
        self.producer = IngestProducer(settings)
        self.metrics = IngestMetrics()
        self.metrics.bind(
            in_flight_records=lambda: self.producer.in_flight_records,
            in_flight_bytes=lambda: self.producer.in_flight_bytes,
            kafka_connected=lambda: float(self.producer.connected),
        )
        self.producer_id = self.config.instance_id or default_instance_id()
        deployment = settings.deployment
        self.binding = Binding(
            domain=deployment.domain if self.config.check_domain else None,
            program_id=address_to_bytes(deployment.machpay_program_id),
        )
        self.accepted_topic = topic_name(topics.INTENTS_ACCEPTED, settings.kafka)
        self.rejected_topic = topic_name(topics.INTENTS_REJECTED, settings.kafka)
        self.logs_topic = topic_name(topics.CLIENT_LOGS, settings.kafka)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(self.config.retry_after_seconds)}

    # -- request parts ----------------------------------------------------------------------

    def authenticate(self, request: Request) -> Principal:
        challenge = {"WWW-Authenticate": 'Bearer realm="machpay-ingest"'}
        header = request.headers.get("authorization")
        if not header:
            raise ApiError(
                401,
                "missing_api_key",
                "send Authorization: Bearer <key>",
                "authorization",
                challenge,
            )
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(
                401,
                "malformed_authorization",
                "expected Authorization: Bearer <key>",
                "authorization",
                challenge,
            )
        principal = self.keys.authenticate(key)
        if principal is None:
            raise ApiError(
                401, "unknown_api_key", "API key unknown or revoked", "authorization", challenge
            )
        return principal

    def check_ready(self) -> None:
        """Refuse before reading and verifying anything when nothing could be produced."""
        try:
            self.producer.check_admission(0, 0)
        except KafkaUnavailableError as exc:
            raise ApiError(503, "kafka_unavailable", str(exc), None, self.retry_after()) from exc

    async def read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes

        def too_big() -> ApiError:
            return ApiError(
                413,
                "oversized_body",
                f"request body is larger than ingest.max_body_bytes = {limit} bytes",
                "body",
            )

        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_big()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big()
            chunks.append(chunk)
        return b"".join(chunks)

    def decode(self, request: Request, body: bytes, *, avro_type: str, key: str) -> list[Any]:
        """The list of records of a JSON or Avro body; ApiError 400/415 names the field."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        records: Any
        if ctype == avro_type:
            topic = topics.INTENTS_ACCEPTED if key == "intents" else topics.CLIENT_LOGS
            try:
                value = self.codec.decode(body, topic=topic, partition=-1, offset=-1)
            except WireDecodeError as exc:
                raise ApiError(400, exc.reason, f"Avro body: {exc.detail}", "body") from exc
            records = value[key]
        elif ctype in JSON_TYPES:
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, "malformed_json", f"body is not JSON: {exc}", "body") from exc
            if not isinstance(document, dict):
                raise ApiError(400, "bad_field", f'body must be {{"{key}": [...]}}', "body")
            if key not in document:
                raise ApiError(400, "bad_field", f"body has no {key!r} list", key)
            unknown = sorted(set(document) - {key})
            if unknown:
                raise ApiError(
                    400, "bad_field", f"unknown field(s): {', '.join(unknown)}", unknown[0]
                )
            records = document[key]
            if not isinstance(records, list):
                raise ApiError(400, "bad_field", f"{key} must be a list", key)
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"content type {ctype!r}: send application/json or {avro_type}",
                "content-type",
            )
        limit = self.config.max_records_per_batch
        if len(records) > limit:
            raise ApiError(
                413,
                "too_many_records",
                f"batch has {len(records)} {key}; ingest.max_records_per_batch = {limit}",
                key,
            )
        return list(records)

    async def produce(self, sends: list[Send], records: int) -> None:
        started = time.perf_counter()
        try:
            await self.producer.produce(sends, records=records)
        except OverloadedError as exc:
            raise ApiError(429, "overloaded", str(exc), None, self.retry_after()) from exc
        except KafkaUnavailableError as exc:
            raise ApiError(503, "kafka_unavailable", str(exc), None, self.retry_after()) from exc
        self.metrics.produce_seconds.observe(time.perf_counter() - started)

    # -- intents ----------------------------------------------------------------------------

    async def intents(self, request: Request, who: Principal) -> Response:
        if who.role != "gateway":
            raise ApiError(
                403, "forbidden", f"key {who.name!r} (role {who.role}) may not post intents"
            )
        self.check_ready()
        body: bytes | None = None
        try:
            body = await self.read_body(request)
            records = self.decode(request, body, avro_type=AVRO_INTENTS, key="intents")
        except ApiError as exc:
            if exc.status in (400, 413):
                await self._dead_letter_request(exc, body, who)
            raise
        avro = request.headers.get("content-type", "").split(";")[0].strip().lower() == AVRO_INTENTS
        if who.vendor is not None:
            self._check_vendor_binding(records, who, avro=avro)
        now = self.now_ms()
        accepted: list[tuple[int, AcceptedIntent]] = []
        errors: list[RecordError] = []
        for start in range(0, len(records), VALIDATE_CHUNK):
            ok, bad = validate_intents(
                records[start : start + VALIDATE_CHUNK],
                avro=avro,
                binding=self.binding,
                offset=start,
            )
            accepted.extend(ok)
            errors.extend(bad)
            if start + VALIDATE_CHUNK < len(records):
                await asyncio.sleep(0)
        sends: list[Send] = []
        if accepted:
            partitions = await self._partitions(self.accepted_topic)
            intents = [intent for _, intent in accepted]
            most = per_record(max(map(intent_size, intents)), MAX_INTENTS_PER_RECORD)
            packed = pack_by_partition(intents, partitions, max_per_record=most)
            for partition, chunks in packed.items():
                for chunk in chunks:
                    value = self.codec.encode(
                        topics.INTENTS_ACCEPTED,
                        intent_batch(chunk, producer=self.producer_id, now_ms=now),
                    )
                    sends.append(Send(self.accepted_topic, value, partition=partition))
        for error in errors:
            value = self.codec.encode(
                topics.INTENTS_REJECTED, error.dead_letter(source=SOURCE, at_ms=now)
            )
            sends.append(Send(self.rejected_topic, value, key=error.agent))
        await self.produce(sends, len(records))
        self.metrics.accepted.labels("intent").inc(len(accepted))
        for error in errors:
            self.metrics.rejected.labels("intent", error.reason).inc()
        return _json(
            {"accepted": len(accepted), "rejected": [e.to_json() for e in errors]},
            207 if errors else 200,
        )

    async def _dead_letter_request(
        self, error: ApiError, body: bytes | None, who: Principal
    ) -> None:
        """Best effort: one intents.rejected record for a malformed or oversized batch.

        The request is refused either way; if Kafka cannot take the dead letter
        within DEAD_LETTER_SECONDS it is only counted (metrics), never retried.
        """
        record = dead_letter(
            reason=error.error,
            detail=f"POST /v1/intents from {who.name}: {error.detail}",
            field=error.field,
            source=SOURCE,
            at_ms=self.now_ms(),
            raw=body,
        )
        value = self.codec.encode(topics.INTENTS_REJECTED, record)
        try:
            async with asyncio.timeout(DEAD_LETTER_SECONDS):
                await self.producer.produce([Send(self.rejected_topic, value)], records=1)
        except (TimeoutError, OverloadedError, KafkaUnavailableError):
            self.metrics.dead_letters_lost.inc()
            return
        self.metrics.rejected.labels("request", error.error).inc()

    def _check_vendor_binding(self, records: list[Any], who: Principal, *, avro: bool) -> None:
        for i, record in enumerate(records):
            vendor = _bound_field(record, "vendor", avro=avro)
            if vendor is not None and vendor != who.vendor:
                raise ApiError(
                    403,
                    "forbidden",
                    f"intents[{i}] pays another vendor than key {who.name!r} is bound to; "
                    "nothing of this batch was accepted",
                    f"intents[{i}].vendor",
                )

    async def _partitions(self, topic: str) -> int:
        try:
            return await self.producer.partitions(topic)
        except KafkaUnavailableError as exc:
            raise ApiError(503, "kafka_unavailable", str(exc), None, self.retry_after()) from exc

    # -- logs -------------------------------------------------------------------------------

    async def logs(self, request: Request, who: Principal) -> Response:
        if who.role != "agent":
            raise ApiError(
                403, "forbidden", f"key {who.name!r} (role {who.role}) may not post logs"
            )
        self.check_ready()
        body = await self.read_body(request)
        avro = request.headers.get("content-type", "").split(";")[0].strip().lower() == AVRO_LOGS
        records = self.decode(request, body, avro_type=AVRO_LOGS, key="records")
        if who.agent is not None:
            for i, record in enumerate(records):
                agent = _bound_field(record, "agent", avro=avro)
                if agent is not None and agent != who.agent:
                    raise ApiError(
                        403,
                        "forbidden",
                        f"records[{i}] is another agent's than key {who.name!r} is bound to; "
                        "nothing of this batch was accepted",
                        f"records[{i}].agent",
                    )
        accepted, errors = validate_logs(records, avro=avro)
        sends: list[Send] = []
        if accepted:
            now = self.now_ms()
            partitions = await self._partitions(self.logs_topic)
            grouped: dict[int, list[dict[str, Any]]] = {}
            for _, log in accepted:
                grouped.setdefault(partition_for_key(log["agent"], partitions), []).append(log)
            for partition, logs in grouped.items():
                most = per_record(max(map(log_size, logs)), LOGS_PER_RECORD)
                for start in range(0, len(logs), most):
                    value = self.codec.encode(
                        topics.CLIENT_LOGS,
                        {
                            "producer": self.producer_id,
                            "produced_at_ms": now,
                            "records": logs[start : start + most],
                        },
                    )
                    sends.append(Send(self.logs_topic, value, partition=partition))
        await self.produce(sends, len(accepted))
        self.metrics.accepted.labels("log").inc(len(accepted))
        for error in errors:
            self.metrics.rejected.labels("log", error.reason).inc()
        return _json(
            {"accepted": len(accepted), "rejected": [e.to_json() for e in errors]},
            207 if errors else 200,
        )


def _bound_field(record: Any, field: str, *, avro: bool) -> bytes | None:
    """The record's vendor/agent as bytes when it is well-formed (else validation refuses it)."""
    if not isinstance(record, dict):
        return None
    value = record.get(field)
    if avro:
        return value if isinstance(value, bytes) else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return address_to_bytes(value)
    except ValueError:
        return None


async def _principal(request: Request) -> Principal:
    """The FastAPI dependency authenticating the API key (401 when it does not).

    Async on purpose: a sync dependency would run in the thread pool on every request.
    """
    ingest: Ingest = request.app.state.ingest
    return ingest.authenticate(request)


Who = Annotated[Principal, Depends(_principal)]


def create_app(
    settings: Settings,
    *,
    keys: KeyStore | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The ASGI app for ``settings`` (serve with uvicorn; lifespan must be on)."""
    ingest = Ingest(settings, keys=keys, clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        ingest.producer.start()
        try:
            yield
        finally:
            await ingest.producer.stop()

    app = FastAPI(
        title="MachPay ingest",
        summary="HTTP ingress for intents and SDK telemetry; a 2xx means acknowledged by Kafka.",
        version="1",
        lifespan=lifespan,
    )
    app.state.ingest = ingest

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        ingest.metrics.requests.labels(request.url.path, str(exc.status)).inc()
        return exc.response()

    @app.post(
        "/v1/intents",
        summary="A batch of intents a gateway served (JSON or Avro IntentBatch)",
        responses=batch_responses(),
        openapi_extra=request_body(IntentBatchIn, AVRO_INTENTS, "machpay.IntentBatch"),
    )
    async def post_intents(request: Request, who: Who) -> Response:
        response = await ingest.intents(request, who)
        ingest.metrics.requests.labels("/v1/intents", str(response.status_code)).inc()
        return response

    @app.post(
        "/v1/logs",
        summary="A batch of SDK call records (JSON or Avro ClientLogBatch)",
        responses=batch_responses(),
        openapi_extra=request_body(ClientLogBatchIn, AVRO_LOGS, "machpay.ClientLogBatch"),
    )
    async def post_logs(request: Request, who: Who) -> Response:
        response = await ingest.logs(request, who)
        ingest.metrics.requests.labels("/v1/logs", str(response.status_code)).inc()
        return response

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", summary="The producer is connected to Kafka")
    async def readyz() -> Response:
        if ingest.producer.connected:
            return _json({"status": "ready"})
        return _json({"status": "kafka_unavailable"}, 503, ingest.retry_after())

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(ingest.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_environment() -> FastAPI:
    """App factory for uvicorn workers: settings from MACHPAY_CONFIG and the environment."""
    return create_app(load_settings())
