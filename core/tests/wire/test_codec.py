"""Round trips of every record, the wire framing, and every way a record can be bad."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machpay import topics
from machpay.topics import Topic
from machpay.wire import (
    FileSchemaRegistry,
    WireCodec,
    WireDecodeError,
    WireEncodeError,
    frame,
    parse_frame,
)
from machpay.wire.testing import record_values

WHERE = {"partition": 3, "offset": 4711}


def intent(n: int = 0) -> dict[str, Any]:
    return {
        "id": bytes([n]) * 32,
        "message": bytes(97),
        "signature": bytes([n]) * 64,
        "agent": b"\x01" * 32,
        "vendor": b"\x02" * 32,
        "service": "search",
        "route": "GET /v1/search",
        "accepted_at_ms": 1_700_000_000_000 + n,
        "source": "GATEWAY",
    }


def intent_batch(count: int = 3) -> dict[str, Any]:
    return {
        "producer": "gw-1",
        "produced_at_ms": 1_700_000_000_123,
        "intents": [intent(n) for n in range(count)],
    }


@pytest.mark.parametrize("topic", topics.ALL_TOPICS, ids=lambda t: t.name)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_record_round_trips(codec: WireCodec, topic: Topic, data: st.DataObject) -> None:
    value = data.draw(record_values(topic.value_schema, codec.catalogue))
    encoded = codec.encode(topic, value)
    assert encoded[0] == 0
    assert int.from_bytes(encoded[1:5], "big") == codec.schema_id(topic)
    assert codec.decode(encoded, topic=topic, **WHERE) == value


def test_topic_record_name_and_prefixed_topic_name_are_equivalent(
    catalogue: FileSchemaRegistry,
) -> None:
    codec = WireCodec(catalogue, topic_prefix="dev.")
    value = intent_batch()
    by_topic = codec.encode(topics.INTENTS_ACCEPTED, value)
    assert codec.encode("machpay.IntentBatch", value) == by_topic
    assert codec.encode("dev.intents.accepted", value) == by_topic
    assert codec.decode(by_topic, topic="dev.intents.accepted", **WHERE) == value
    with pytest.raises(WireDecodeError, match=r"dev\.intents\.accepted\[3\]@4711"):
        codec.decode(by_topic[:-1], topic=topics.INTENTS_ACCEPTED, **WHERE)


def test_framing_is_the_confluent_wire_format(codec: WireCodec) -> None:
    encoded = codec.encode(topics.INTENTS_ACCEPTED, intent_batch(1))
    schema_id, body = parse_frame(encoded)
    assert schema_id == 1
    assert encoded[:5] == b"\x00\x00\x00\x00\x01"
    assert frame(schema_id, bytes(body)) == encoded
    # The body is plain Avro: any Avro library with the schema reads it.
    schema = parse_schema(codec.catalogue.latest("machpay.IntentBatch").schema)
    buf = io.BytesIO()
    schemaless_writer(buf, schema, intent_batch(1))
    assert bytes(body) == buf.getvalue()


def test_an_intent_batch_of_a_hundred_is_compact(codec: WireCodec) -> None:
    encoded = codec.encode(topics.INTENTS_ACCEPTED, intent_batch(100))
    per_intent = (len(encoded) - 5) / 100
    assert per_intent < 32 + 98 + 64 + 64 + 40  # fixed fields carry no length prefix


# -- bad records -----------------------------------------------------------------


def decode_error(codec: WireCodec, data: bytes, topic: Topic | str = "intents.accepted") -> str:
    with pytest.raises(WireDecodeError) as info:
        codec.decode(data, topic=topic, **WHERE)
    err = info.value
    assert err.raw == data
    assert err.partition == 3
    assert err.offset == 4711
    return str(err)


def good(codec: WireCodec) -> bytes:
    return codec.encode(topics.INTENTS_ACCEPTED, intent_batch())


def test_empty_bytes(codec: WireCodec) -> None:
    message = decode_error(codec, b"")
    assert message.startswith("undecodable record at intents.accepted[3]@4711: short_frame")
    assert "0 bytes" in message


def test_short_frame(codec: WireCodec) -> None:
    assert "short_frame: 4 bytes" in decode_error(codec, b"\x00\x00\x00\x01")


def test_wrong_magic_byte(codec: WireCodec) -> None:
    data = b"\x01" + good(codec)[1:]
    message = decode_error(codec, data)
    assert "bad_magic" in message
    assert "0x01" in message


def test_json_instead_of_avro(codec: WireCodec) -> None:
    assert "bad_magic: first byte is 0x7b" in decode_error(codec, b'{"producer": "gw-1"}')


def test_unknown_schema_id(codec: WireCodec) -> None:
    data = frame(99, good(codec)[5:])
    message = decode_error(codec, data)
    assert message.startswith("undecodable record at intents.accepted[3]@4711, schema id 99: ")
    assert "unknown_schema_id: schema id 99 is not registered" in message


def test_truncated_body(codec: WireCodec) -> None:
    data = good(codec)
    for cut in (6, len(data) // 2, len(data) - 1):
        message = decode_error(codec, data[:cut])
        assert "schema id 1: bad_avro" in message
        assert "machpay.IntentBatch" in message


def test_trailing_garbage(codec: WireCodec) -> None:
    data = good(codec)
    message = decode_error(codec, data + b"\x00junk")
    assert "schema id 1: trailing_bytes: 5 bytes left" in message


def test_record_of_another_type_on_a_topic(codec: WireCodec) -> None:
    data = good(codec)
    message = decode_error(codec, data, topics.AGENTS_STATUS)
    assert message.startswith("undecodable record at agents.status[3]@4711, schema id 1")
    assert "names machpay.IntentBatch, but this topic carries machpay.AgentStatus" in message


def test_unknown_topic_decodes_by_schema_id(codec: WireCodec) -> None:
    assert codec.decode(good(codec), topic="scratch", **WHERE) == intent_batch()


@settings(max_examples=300)
@given(body=st.binary(max_size=300), schema_id=st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8]))
def test_garbage_bodies_only_ever_raise_wire_decode_error(body: bytes, schema_id: int) -> None:
    codec = _shared_codec()
    error: WireDecodeError | None = None
    try:
        codec.decode(frame(schema_id, body), topic="scratch", **WHERE)
    except WireDecodeError as exc:
        error = exc
    if error is not None:
        assert str(error).startswith(
            f"undecodable record at scratch[3]@4711, schema id {schema_id}"
        )
        assert error.reason in {"bad_avro", "trailing_bytes"}


def test_a_huge_declared_length_fails_cleanly(codec: WireCodec) -> None:
    # producer string length = zigzag varint of 2**62: must not allocate or hang.
    huge = bytes([0xFF] * 8 + [0x7F])
    assert "bad_avro" in decode_error(codec, frame(1, huge))
    # an array claiming 2**62 items, then nothing.
    body = b"\x02a\x02" + huge
    assert "bad_avro" in decode_error(codec, frame(1, body))


_CODEC: list[WireCodec] = []


def _shared_codec() -> WireCodec:
    if not _CODEC:
        _CODEC.append(WireCodec())
    return _CODEC[0]


def test_dead_letter_of_a_decode_error_is_a_rejected_intent(codec: WireCodec) -> None:
    with pytest.raises(WireDecodeError) as info:
        codec.decode(b"\x00\x00\x00\x00\x01\x02", topic=topics.INTENTS_ACCEPTED, **WHERE)
    letter = info.value.dead_letter(source="streams.dedupe", at_ms=5)
    framed = codec.encode(topics.INTENTS_REJECTED, letter)
    back = codec.decode(framed, topic=topics.INTENTS_REJECTED, partition=0, offset=0)
    assert back["reason"] == "bad_avro"
    assert back["raw"] == b"\x00\x00\x00\x00\x01\x02"
    assert back["origin"] == {"topic": "intents.accepted", "partition": 3, "offset": 4711}


# -- encoding errors name the field ---------------------------------------------------


def encode_error(codec: WireCodec, value: dict[str, Any]) -> str:
    with pytest.raises(WireEncodeError) as info:
        codec.encode(topics.INTENTS_ACCEPTED, value)
    message = str(info.value)
    assert message.startswith("cannot encode machpay.IntentBatch for intents.accepted: ")
    return message


def test_wrong_type_names_the_field(codec: WireCodec) -> None:
    value = intent_batch()
    value["produced_at_ms"] = "yesterday"
    assert "machpay.IntentBatch.produced_at_ms" in encode_error(codec, value)


def test_wrong_type_in_a_nested_record_names_the_field(codec: WireCodec) -> None:
    value = intent_batch()
    value["intents"][1]["service"] = 42
    assert "machpay.AcceptedIntent.service" in encode_error(codec, value)


def test_wrong_sized_fixed_names_the_field(codec: WireCodec) -> None:
    value = intent_batch()
    value["intents"][2]["agent"] = b"\x01" * 31
    message = encode_error(codec, value)
    assert "machpay.AcceptedIntent.agent" in message
    assert "size': 32" in message


def test_unknown_enum_symbol_names_the_field(codec: WireCodec) -> None:
    value = intent_batch()
    value["intents"][0]["source"] = "CARRIER_PIGEON"
    assert "machpay.AcceptedIntent.source" in encode_error(codec, value)


def test_missing_and_extra_fields_are_refused(codec: WireCodec) -> None:
    value = intent_batch()
    del value["producer"]
    assert "producer" in encode_error(codec, value)
    value = intent_batch()
    value["intents"][0]["amount"] = 5  # amounts live in the signed message only
    assert "amount" in encode_error(codec, value)


def test_unknown_target_is_named(codec: WireCodec) -> None:
    with pytest.raises(WireEncodeError, match="'nope' is neither a topic nor a record"):
        codec.encode("nope", {})


def test_validate_mode_refuses_silent_coercions(catalogue: FileSchemaRegistry) -> None:
    strict = WireCodec(catalogue, validate=True)
    for field, bad in (("produced_at_ms", 1.5), ("produced_at_ms", True), ("producer", None)):
        value = intent_batch()
        value[field] = bad
        with pytest.raises(WireEncodeError, match=rf"machpay\.IntentBatch\.{field}"):
            strict.encode(topics.INTENTS_ACCEPTED, value)
    value = intent_batch()
    assert strict.decode(strict.encode(topics.INTENTS_ACCEPTED, value), topic="x", **WHERE) == value
