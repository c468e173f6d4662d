"""httpx integration: an ``Auth`` that answers a MachPay 402 and retries, sync or async.

::

    client = httpx.Client(auth=MachPayAuth(payer))
    response = client.get("https://vendor.example/v1/forecast?city=Oslo")
    receipt(response)  # the Receipt of the paid call, or None for a free one

The flow per request: send it as is; on a 402 choose the ``machpay`` offer,
check the spend policy, allocate the nonce and cumulative durably, sign, and
retry with ``PAYMENT-SIGNATURE``. A corrective 402 (``cumulative_out_of_step``)
raises the channel's cumulative to the gateway's ``lastCumulative`` (never
lower) and retries once with a new nonce; ``stale_challenge`` or ``expired``
retry once with the fresh challenge. Any other refusal raises
:class:`~machpay.sdk.errors.PaymentRejected`.

The flow itself is one generator shared by both drivers: it yields either a
request to send or a blocking step (the ledger's fsync, signing), which the
sync driver runs inline and the async driver in a worker thread, so an event
loop never waits on the disk.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio.to_thread
import httpx

from machpay.protocol import ProtocolError, Reason, bytes_to_address
from machpay.sdk.errors import PaymentRejected, PaymentUnsupported, PolicyViolation
from machpay.sdk.payer import (
    Payer,
    PreparedPayment,
    Receipt,
    RequestFacts,
    parse_payment_required,
)
from machpay.sdk.telemetry import CallRecord, Outcome, TelemetrySink, sdk_version
from machpay.x402 import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    PaymentRequired,
    PaymentResponse,
    Resource,
)

log = logging.getLogger(__name__)

RECEIPT_EXTENSION = "machpay_receipt"
"""Key of ``response.extensions`` holding the :class:`Receipt` of a paid call."""

_RETRY_WITH_FRESH_CHALLENGE = frozenset({Reason.STALE_CHALLENGE.value, Reason.EXPIRED.value})

Step = httpx.Request | Callable[[], Any]


def receipt(response: httpx.Response) -> Receipt | None:
    """The receipt of a paid call, or ``None`` when the call was free."""
    value = response.extensions.get(RECEIPT_EXTENSION)
    return value if isinstance(value, Receipt) else None


def request_facts(request: httpx.Request) -> RequestFacts:
    """Method, path, raw query and body exactly as they will travel."""
    raw = request.url.raw_path  # path and query, percent-encoded as sent
    path = raw.split(b"?", 1)[0]
    return RequestFacts(
        method=request.method,
        url=str(request.url),
        path=path,
        query=request.url.query,
        body=request.content,
    )


def _required(response: httpx.Response) -> PaymentRequired:
    header = response.headers.get(PAYMENT_REQUIRED_HEADER)
    if header is None:
        raise PaymentUnsupported(f"402 without a {PAYMENT_REQUIRED_HEADER} header")
    return parse_payment_required(header)


class MachPayAuth(httpx.Auth):
    """Pays for 402 answers with the agent's :class:`~machpay.sdk.payer.Payer`."""

    requires_request_body = True  # the body is hashed into the intent

    def __init__(
        self,
        payer: Payer,
        *,
        telemetry: TelemetrySink | None = None,
        telemetry_query: bool = False,
    ) -> None:
        self.payer = payer
        self.telemetry = telemetry
        # Query strings often carry user data or keys: telemetry gets the URL
        # without one unless asked.
        self.telemetry_query = telemetry_query
        self._version = sdk_version()

    # -- drivers --------------------------------------------------------------

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.read()
        flow = self._flow(request)
        try:
            value: Any = None
            error: BaseException | None = None
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(value)
                except StopIteration:
                    return
                value, error = None, None
                if isinstance(step, httpx.Request):
                    value = yield step
                else:
                    try:
                        value = step()
                    except Exception as exc:
                        error = exc
        finally:
            flow.close()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        flow = self._flow(request)
        try:
            value: Any = None
            error: BaseException | None = None
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(value)
                except StopIteration:
                    return
                value, error = None, None
                if isinstance(step, httpx.Request):
                    value = yield step
                else:
                    try:
                        value = await anyio.to_thread.run_sync(step)
                    except Exception as exc:
                        error = exc
        finally:
            flow.close()

    # -- the flow ---------------------------------------------------------------

    def _flow(self, request: httpx.Request) -> Generator[Step, Any]:
        call = _Call(request_facts(request))
        try:
            response: httpx.Response = yield request
            call.status = response.status_code
            if call.status != 402:
                call.outcome, call.error = Outcome.FREE, None
                return
            offer = self.payer.choose(_required(response))
            call.vendor = bytes_to_address(offer.pay_to)
            resource = Resource(url=call.facts.url)
            retried: set[str] = set()
            while True:
                payment: PreparedPayment = yield partial(
                    self.payer.prepare, offer, call.facts, resource
                )
                call.payment = payment
                request.headers[PAYMENT_SIGNATURE_HEADER] = payment.header
                response = yield request
                call.status = response.status_code
                if call.status != 402:
                    break
                refusal = _required(response)
                reason = refusal.error
                fresh = self.payer.choose(refusal)
                if reason == Reason.CUMULATIVE_OUT_OF_STEP.value and reason not in retried:
                    hint = fresh.extra.last_cumulative
                    if hint is not None:
                        yield partial(self.payer.resync, fresh, hint)
                elif reason not in _RETRY_WITH_FRESH_CHALLENGE or reason in retried:
                    detail = fresh.extra.reason
                    if reason == Reason.CUMULATIVE_OUT_OF_STEP.value:
                        # Still out of step after a resync: the gateway is behind what
                        # this agent already signed, and the agent must never sign less.
                        detail = (
                            f"{detail}; this agent signed up to {payment.signed.cumulative} on "
                            "the channel and never signs a lower cumulative (the gateway must "
                            "accept the gap)"
                        )
                    raise PaymentRejected(reason, detail, call.status)
                retried.add(reason)
                offer = fresh
            confirmed = _confirmation(payment, response)
            if confirmed is None and call.status in {400, 431}:
                # The gateway could not read our header: a payment problem, not the API's.
                raise PaymentRejected(Reason.MALFORMED_HEADER.value, None, call.status)
            if confirmed is None and call.status >= 400:
                # Neither served nor refused with a reason: keep no receipt.
                call.error = f"HTTP {call.status} without a payment receipt"
                return
            paid = self.payer.receipt(payment, confirmed, call.facts, call.status)
            try:
                yield partial(self.payer.keep, paid)
            except Exception as exc:  # the call is paid and served: do not lose the response
                log.warning("receipt %s not stored in the ledger: %s", paid.intent_id_hex, exc)
            response.extensions[RECEIPT_EXTENSION] = paid
            call.outcome, call.error = Outcome.PAID, None
        except PolicyViolation as exc:
            call.outcome, call.error = Outcome.REFUSED_BY_POLICY, str(exc)
            raise
        except PaymentRejected as exc:
            call.outcome, call.error = Outcome.PAYMENT_REJECTED, exc.reason
            raise
        except Exception as exc:
            call.outcome, call.error = Outcome.ERROR, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._report(call)

    def _report(self, call: _Call) -> None:
        if self.telemetry is None:
            return
        payment = call.payment
        with contextlib.suppress(Exception):  # telemetry never fails a call
            self.telemetry.record(
                CallRecord(
                    agent=self.payer.address,
                    url=call.facts.url if self.telemetry_query else _without_query(call.facts.url),
                    method=call.facts.method,
                    vendor=call.vendor,
                    status=call.status,
                    latency_ms=(time.perf_counter() - call.started) * 1000,
                    amount=payment.signed.amount
                    if payment is not None and call.outcome == Outcome.PAID
                    else 0,
                    intent_id=payment.signed.id.hex() if payment is not None else None,
                    outcome=call.outcome,
                    error=call.error,
                    at_ms=call.at_ms,
                    sdk_version=self._version,
                )
            )


@dataclass(slots=True)
class _Call:
    """What the telemetry record of one call needs, filled in as the flow goes."""

    facts: RequestFacts
    started: float = field(default_factory=time.perf_counter)
    at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    outcome: Outcome = Outcome.ERROR
    status: int = 0
    error: str | None = "call abandoned (transport error or cancelled)"
    vendor: str | None = None
    payment: PreparedPayment | None = None


def _confirmation(payment: PreparedPayment, response: httpx.Response) -> PaymentResponse | None:
    """The gateway's ``PAYMENT-RESPONSE`` if it is a receipt for the intent we signed."""
    header = response.headers.get(PAYMENT_RESPONSE_HEADER)
    if header is None:
        return None
    try:
        parsed = PaymentResponse.decode(header)
    except ProtocolError:
        return None
    return parsed if parsed.success and parsed.intent_id == payment.signed.id else None


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]
