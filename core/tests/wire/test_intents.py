"""The typed view of accepted intents round-trips through the real codec."""

from __future__ import annotations

import hashlib

import pytest

from machpay import topics
from machpay.protocol import Intent, Keypair, ProtocolError, Reason, sign_intent
from machpay.wire import WireCodec
from machpay.wire.intents import AcceptedIntent, intent_batch, unpack


def _accepted(n: int, agent_seed: bytes = b"agent") -> AcceptedIntent:
    kp = Keypair.from_seed(hashlib.sha256(agent_seed).digest())
    intent = Intent(
        domain=bytes(8),
        channel=hashlib.sha256(b"channel").digest(),
        nonce=n,
        cumulative=100 * (n + 1),
        amount=100,
        expires_at=2_000_000_000,
        context=bytes(16),
    )
    return AcceptedIntent(
        signed=sign_intent(intent, kp),
        vendor=hashlib.sha256(b"vendor").digest(),
        service="search",
        route="GET /v1/search",
        accepted_at_ms=1_700_000_000_000 + n,
    )


def test_batch_round_trips_through_the_codec() -> None:
    codec = WireCodec()
    intents = [_accepted(n) for n in range(5)]
    data = codec.encode(topics.INTENTS_ACCEPTED, intent_batch(intents, producer="gw", now_ms=1))
    value = codec.decode(data, topic=topics.INTENTS_ACCEPTED, partition=0, offset=0)
    assert list(unpack(value)) == intents


def test_a_record_whose_id_is_not_the_message_hash_is_refused() -> None:
    record = _accepted(0).to_record()
    record["id"] = bytes(32)
    with pytest.raises(ProtocolError) as err:
        AcceptedIntent.from_record(record)
    assert err.value.reason is Reason.BAD_FIELD
    assert err.value.field == "id"
