"""Reason codes: a stable wire vocabulary, every one documented."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from machpay.protocol import ProtocolError, Reason

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def test_codes_are_snake_case_and_unique() -> None:
    values = [r.value for r in Reason]
    assert len(values) == len(set(values))
    for value in values:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", value), f"{value!r} is not snake_case"


def test_reason_is_its_own_string() -> None:
    assert isinstance(Reason.EXPIRED, str)
    assert f"{Reason.EXPIRED}" == "expired"
    assert str(Reason.EXPIRED) == "expired"
    assert Reason("small_order_r") is Reason.SMALL_ORDER_R


def test_every_code_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [r.value for r in Reason if f"`{r.value}`" not in text]
    assert not missing, f"docs/protocol.md does not document: {missing}"


def test_protocol_error_carries_reason_and_field() -> None:
    err = ProtocolError(Reason.BAD_FIELD, "nonce", "2^64 is outside 0..2^64-1")
    assert isinstance(err, ValueError)
    assert (err.reason, err.field) == (Reason.BAD_FIELD, "nonce")
    assert str(err) == "bad_field [nonce]: 2^64 is outside 0..2^64-1"
    again = pickle.loads(pickle.dumps(err))
    assert (again.reason, again.field, again.message) == (err.reason, err.field, err.message)
    assert str(ProtocolError(Reason.REPLAYED, None, "seen")) == "replayed: seen"
