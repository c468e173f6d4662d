"""Dead letters built by machpay.wire.rejected encode as machpay.RejectedIntent."""

from __future__ import annotations

from machpay import topics
from machpay.wire import WireCodec
from machpay.wire.rejected import MAX_RAW, dead_letter, record_origin


def test_a_gateway_style_refusal_round_trips(codec: WireCodec) -> None:
    value = dead_letter(
        reason="bad_signature",
        detail="/v1/search: signature does not verify for this key",
        field="signature",
        source="gateway",
        at_ms=1_700_000_000_000,
        agent=bytes(range(32)),
        message=b"\xffMachPay" + bytes(89),
        signature=bytes(64),
        raw=b"x" * (MAX_RAW * 3),
    )
    back = codec.decode(
        codec.encode(topics.INTENTS_REJECTED, value),
        topic=topics.INTENTS_REJECTED,
        partition=0,
        offset=0,
    )
    assert back["raw"] == b"x" * MAX_RAW, "raw input must be bounded"
    assert back["agent"] == bytes(range(32))
    assert back["origin"] is None


def test_a_kafka_record_is_kept_whole_with_its_origin(codec: WireCodec) -> None:
    raw = b"\x00" * (MAX_RAW + 10)
    value = dead_letter(
        reason="undecodable_record",
        detail="unknown schema id",
        source="streams",
        at_ms=1,
        raw=raw,
        origin=record_origin("intents.accepted", 3, 42),
        max_raw=None,
    )
    back = codec.decode(
        codec.encode(topics.INTENTS_REJECTED, value),
        topic=topics.INTENTS_REJECTED,
        partition=0,
        offset=0,
    )
    assert back["raw"] == raw
    assert back["origin"] == {"topic": "intents.accepted", "partition": 3, "offset": 42}


def test_an_agent_field_of_the_wrong_length_becomes_unknown(codec: WireCodec) -> None:
    value = dead_letter(
        reason="bad_length", detail="d", source="ingest", at_ms=1, agent=b"\x01" * 5
    )
    assert value["agent"] is None
    codec.encode(topics.INTENTS_REJECTED, value)
