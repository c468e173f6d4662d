"""Gateway building blocks: challenges, routes, ledgers, exposure, the spool."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machpay.config import ConfigError, load_settings
from machpay.gateway.challenge import CHALLENGE_LEN, ChallengeIssuer
from machpay.gateway.ledger import AgentStatus, ChannelLedger, ExposureBook, IntentClaims
from machpay.gateway.routes import Route, RouteTable
from machpay.gateway.spool import Position, Spool, decode_accepted, encode_accepted
from machpay.protocol import Intent, Keypair, sign_intent
from machpay.wire.intents import AcceptedIntent

SECRET = bytes(range(32))

# --- challenges -----------------------------------------------------------------


def issuer(**kw: int) -> ChallengeIssuer:
    return ChallengeIssuer(
        SECRET, bucket_seconds=kw.get("bucket", 30), max_age_seconds=kw.get("age", 120)
    )


def test_challenge_is_bucket_then_mac_and_checks() -> None:
    challenges = issuer()
    now = 1_700_000_015.5
    challenge = challenges.issue(b"/v1/search", "GET", now)
    assert len(challenge) == CHALLENGE_LEN == 20
    assert struct.unpack(">I", challenge[:4])[0] == int(now) // 30
    assert challenges.check(challenge, b"/v1/search", "GET", now) is None
    # Any replica with the same secret agrees; stateless.
    assert issuer().check(challenge, b"/v1/search", "GET", now + 100) is None


@pytest.mark.parametrize(
    ("route", "method", "delta", "words"),
    [
        (b"/v1/other", "GET", 0, "not issued"),
        (b"/v1/search", "POST", 0, "not issued"),
        (b"/v1/search", "GET", 151, "old"),
        (b"/v1/search", "GET", -31, "future"),
    ],
)
def test_challenge_refused_for_other_route_method_or_age(
    route: bytes, method: str, delta: float, words: str
) -> None:
    challenges = issuer()
    now = 1_700_000_000.0
    challenge = challenges.issue(b"/v1/search", "GET", now)
    why = challenges.check(challenge, route, method, now + delta)
    assert why is not None
    assert words in why


def test_challenge_forged_wrong_secret_or_length() -> None:
    now = 1_700_000_000.0
    other = ChallengeIssuer(os.urandom(32), bucket_seconds=30, max_age_seconds=120)
    forged = other.issue(b"/v1/search", "GET", now)
    assert issuer().check(forged, b"/v1/search", "GET", now) is not None
    assert issuer().check(b"\x00" * 5, b"/v1/search", "GET", now) is not None
    good = issuer().issue(b"/v1/search", "GET", now)
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    assert issuer().check(flipped, b"/v1/search", "GET", now) is not None


def test_route_id_is_length_prefixed() -> None:
    now = 1_700_000_000.0
    a = issuer().issue(b"/aG", "ET", now)
    b = issuer().issue(b"/a", "GET", now)
    assert a != b


def test_challenge_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ChallengeIssuer(b"short", bucket_seconds=30, max_age_seconds=60)


# --- routes ---------------------------------------------------------------------


def table() -> RouteTable:
    return RouteTable(
        [
            Route("/v1/search", frozenset({"GET", "POST"}), "http://u", "search", 10),
            Route("/v1/items/{id}", frozenset({"GET"}), "http://u", "items", 5),
            Route("/static/{rest:path}", frozenset({"GET"}), "http://u"),
        ]
    )


@pytest.mark.parametrize(
    ("method", "path", "pattern"),
    [
        ("GET", "/v1/search", "/v1/search"),
        ("POST", "/v1/search", "/v1/search"),
        ("PUT", "/v1/search", None),
        ("GET", "/v1/search/", None),
        ("GET", "/v1/items/42", "/v1/items/{id}"),
        ("GET", "/v1/items/42/x", None),
        ("GET", "/v1/items/", None),
        ("GET", "/static/a/b/c.css", "/static/{rest:path}"),
        ("GET", "/nope", None),
    ],
)
def test_route_matching(method: str, path: str, pattern: str | None) -> None:
    found = table().match(method, path)
    assert (found.pattern if found else None) == pattern


def test_route_metadata() -> None:
    route = table().match("GET", "/v1/items/7")
    assert route is not None
    assert route.paid
    assert route.label("GET") == "GET /v1/items/{id}"
    assert table().allows_path("/v1/search")
    assert not table().allows_path("/nope")


@pytest.mark.parametrize(
    ("routes", "words"),
    [
        ([{"path": "v1", "service": "s", "price": 1, "upstream": "http://u"}], "route path"),
        ([{"path": "/metrics", "service": "s", "price": 1, "upstream": "http://u"}], "reserved"),
        ([{"path": "/a", "service": "s", "price": 0, "upstream": "http://u"}], "price"),
        ([{"path": "/a", "service": "s", "price": 1, "upstream": "ftp://u"}], "upstream"),
        (
            [{"path": "/a", "service": "s", "price": 1, "upstream": "http://u", "methods": []}],
            "method",
        ),
        (
            [
                {"path": "/a", "service": "s", "price": 1, "upstream": "http://u"},
                {"path": "/a", "service": "t", "price": 2, "upstream": "http://u"},
            ],
            "configured twice",
        ),
    ],
)
def test_bad_route_config_names_the_setting(routes: list[dict[str, object]], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_settings(environ={}, overrides={"gateway": {"routes": routes}})


def test_gateway_settings_from_toml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        "[gateway]\nport = 9000\nvendor_address = '11111111111111111111111111111112'\n"
        "[[gateway.routes]]\npath = '/v1/items/{id}'\nmethods = ['get']\nservice = 'items'\n"
        "price = 250\nupstream = 'http://127.0.0.1:9001/'\n"
    )
    settings = load_settings(config, environ={"MACHPAY_GATEWAY__CHALLENGE_SECRET": "ab" * 32})
    gw = settings.gateway
    assert gw.port == 9000
    assert gw.routes[0].methods == ["GET"]
    assert gw.routes[0].upstream == "http://127.0.0.1:9001"
    assert gw.challenge_key == bytes([0xAB]) * 32
    assert "abab" not in repr(gw)  # the secret never prints


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MACHPAY_GATEWAY__CHALLENGE_SECRET": "zz"}, "hex"),
        ({"MACHPAY_GATEWAY__CHALLENGE_SECRET": "ab" * 8}, "16 bytes"),
        ({"MACHPAY_GATEWAY__VENDOR_ADDRESS": "nope"}, "base58"),
        ({"MACHPAY_GATEWAY__EXPOSURE_SHARE": "1.5"}, "exposure_share"),
        ({"MACHPAY_GATEWAY__CHALLENGE_MAX_AGE_SECONDS": "5"}, "challenge_bucket_seconds"),
    ],
)
def test_bad_gateway_settings_fail_naming_the_setting(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_settings(environ=env)


# --- claims and channels ----------------------------------------------------------


def test_claims_are_exclusive_and_evicted_after_expiry() -> None:
    claims = IntentClaims()
    assert claims.claim(b"a", forget_at=100, now=0)
    assert not claims.claim(b"a", forget_at=100, now=50)
    assert claims.claim(b"b", forget_at=10, now=0)
    claims.evict(now=20)
    assert b"b" not in claims
    assert b"a" in claims
    claims.evict(now=101)
    assert len(claims) == 0
    claims.claim(b"c", forget_at=100, now=0)
    claims.release(b"c")
    assert claims.claim(b"c", forget_at=100, now=0)


def test_channel_ledger_needs_a_higher_nonce_and_no_lower_cumulative() -> None:
    ledger = ChannelLedger()
    assert ledger.check(b"ch", nonce=5, cumulative=700, amount=100) is None  # first seen
    ledger.advance(b"ch", 5, 700)
    assert ledger.check(b"ch", nonce=6, cumulative=800, amount=100) is None
    assert "not above" in (ledger.check(b"ch", nonce=5, cumulative=800, amount=100) or "")
    assert "plus amount" in (ledger.check(b"ch", nonce=9, cumulative=799, amount=100) or "")
    # A gap (the agent signed intents this gateway refused) is allowed and counted.
    assert ledger.check(b"ch", nonce=9, cumulative=900, amount=100) is None
    assert ledger.increment(b"ch", cumulative=900, amount=100) == 200
    assert ledger.increment(b"new", cumulative=900, amount=100) == 100
    previous = ledger.advance(b"ch", 6, 800)
    ledger.rollback(b"ch", 6, previous)
    state = ledger.get(b"ch")
    assert state is not None
    assert (state.nonce, state.cumulative) == (5, 700)


# --- exposure -----------------------------------------------------------------------


def status(**kw: object) -> AgentStatus:
    fields: dict[str, object] = {
        "agent": b"A" * 32,
        "bond": 1_000_000,
        "exposure": 200_000,
        "pending_withdrawal": 0,
        "banned": False,
        "insolvent": False,
        "ban_reason": None,
        "version": 1,
        "updated_at_ms": 1_000,
    }
    fields.update(kw)
    return AgentStatus(**fields)  # type: ignore[arg-type]


def test_exposure_cap_is_share_of_free_bond() -> None:
    book = ExposureBook(share=0.1, unknown_allowance=0)
    book.update(status(pending_withdrawal=300_000))
    assert book.cap(b"A" * 32) == 50_000  # 0.1 * (1,000,000 - 300,000 - 200,000)
    assert book.check(b"A" * 32, 50_000) is None
    book.record(b"A" * 32, 40_000, at_ms=2_000)
    refused = book.check(b"A" * 32, 10_001)
    assert refused is not None
    assert refused[0] == "exposure_cap"
    assert book.check(b"A" * 32, 10_000) is None


def test_newer_status_absorbs_what_it_covers() -> None:
    book = ExposureBook(share=0.5, unknown_allowance=0)
    book.update(status(version=1, updated_at_ms=1_000))
    book.record(b"A" * 32, 100, at_ms=1_500)
    book.record(b"A" * 32, 200, at_ms=2_500)
    assert book.outstanding(b"A" * 32) == 300
    book.update(status(version=2, updated_at_ms=2_000, exposure=200_100))
    assert book.outstanding(b"A" * 32) == 200
    book.update(status(version=1, updated_at_ms=9_000))  # older version: ignored
    assert book.outstanding(b"A" * 32) == 200


def test_banned_insolvent_and_unknown_agents() -> None:
    book = ExposureBook(share=0.1, unknown_allowance=500)
    book.update(status(agent=b"B" * 32, banned=True, ban_reason="equivocation"))
    book.update(status(agent=b"C" * 32, insolvent=True))
    assert book.check(b"B" * 32, 1) == ("agent_banned", "agent is refused: equivocation")
    assert (book.check(b"C" * 32, 1) or ("",))[0] == "agent_banned"
    assert book.check(b"U" * 32, 500) is None
    book.record(b"U" * 32, 400)
    assert (book.check(b"U" * 32, 101) or ("",))[0] == "agent_unknown"
    strict = ExposureBook(share=0.1, unknown_allowance=0)
    assert (strict.check(b"U" * 32, 1) or ("",))[0] == "agent_unknown"


@given(
    bond=st.integers(0, 10**12),
    exposure=st.integers(0, 10**12),
    pending=st.integers(0, 10**12),
    share=st.floats(0.01, 1.0),
    served=st.lists(st.integers(1, 10**9), max_size=20),
)
def test_exposure_never_exceeds_cap(
    bond: int, exposure: int, pending: int, share: float, served: list[int]
) -> None:
    book = ExposureBook(share=share, unknown_allowance=0)
    book.update(status(bond=bond, exposure=exposure, pending_withdrawal=pending))
    agent = b"A" * 32
    for amount in served:
        if book.check(agent, amount) is None:
            book.record(agent, amount, at_ms=5_000)
    cap = book.cap(agent)
    assert cap is not None
    assert book.outstanding(agent) <= cap <= max(0, bond - exposure - pending)


# --- spool ----------------------------------------------------------------------------

AGENT = Keypair.from_seed(bytes([7]) * 32)


def accepted(n: int) -> AcceptedIntent:
    intent = Intent(
        domain=b"d" * 8,
        channel=b"c" * 32,
        nonce=n,
        cumulative=100 * n,
        amount=100,
        expires_at=2_000_000_000,
        context=bytes(16),
    )
    return AcceptedIntent(
        signed=sign_intent(intent, AGENT),
        vendor=b"v" * 32,
        service="search",
        route="GET /v1/search",
        accepted_at_ms=1_700_000_000_000 + n,
    )


def test_spool_record_round_trips() -> None:
    original = accepted(3)
    assert decode_accepted(encode_accepted(original)) == original


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


def tear(segment: Path) -> int:
    """Append half a record, as a crash in the middle of a write leaves; returns the
    size before."""
    size = segment.stat().st_size
    with segment.open("ab") as fh:
        fh.write(struct.pack("<II", 300, 12345) + b"x" * 40)
    return size


def size_of(path: Path) -> int:
    return path.stat().st_size


def flip_byte(segment: Path, index: int) -> None:
    data = bytearray(segment.read_bytes())
    data[index] ^= 0xFF
    segment.write_bytes(bytes(data))


async def write(spool: Spool, items: list[AcceptedIntent]) -> list[Position]:
    positions = []
    waits = []
    for item in items:
        position, committed = spool.append(item)
        positions.append(position)
        if committed is not None:
            waits.append(committed)
    await asyncio.gather(*waits)
    return positions


async def test_spool_write_ack_and_replay(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=2_000)
    assert spool.open() == []
    items = [accepted(n) for n in range(1, 21)]
    positions = await write(spool, items)
    assert len(segments(tmp_path)) > 1  # rotated
    assert spool.syncs >= 1
    spool.ack(positions[9])
    await spool.close()

    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=2_000)
    recovered = again.open()
    pending = [item for item, _, acked in recovered if not acked]
    assert pending == items[10:]
    assert again.pending_bytes == sum(len(encode_accepted(i)) + 8 for i in items[10:])
    again.ack(max(position for _, position, _ in recovered))
    assert again.pending_bytes == 0
    await again.close()
    # Everything acknowledged: closed segments are gone.
    assert len(segments(tmp_path)) == 1


async def test_spool_is_bounded(tmp_path: Path) -> None:
    record_size = len(encode_accepted(accepted(1))) + 8
    spool = Spool(tmp_path, max_bytes=record_size * 3, fsync=False)
    spool.open()
    positions = await write(spool, [accepted(n) for n in range(1, 3)])
    assert spool.has_room()
    await write(spool, [accepted(3)])
    assert not spool.has_room()
    spool.ack(positions[0])
    assert spool.has_room()
    await spool.close()


async def test_spool_truncates_a_torn_last_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    items = [accepted(n) for n in range(1, 6)]
    await write(spool, items)
    await spool.close()
    (segment,) = segments(tmp_path)
    size = tear(segment)  # a crash in the middle of the sixth write

    again = Spool(tmp_path, max_bytes=1 << 20)
    assert [item for item, _, _ in again.open()] == items
    assert size_of(segment) == size
    await write(again, [accepted(6)])  # appendable after recovery
    await again.close()
    third = Spool(tmp_path, max_bytes=1 << 20)
    assert [item for item, _, _ in third.open()] == [*items, accepted(6)]
    await third.close()


async def test_spool_refuses_a_corrupt_record_and_keeps_the_good_prefix(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.open()
    await write(spool, [accepted(n) for n in range(1, 4)])
    await spool.close()
    (segment,) = segments(tmp_path)
    flip_byte(segment, -5)  # in the last record: its CRC no longer matches
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert [item for item, _, _ in again.open()] == [accepted(1), accepted(2)]
    await again.close()


async def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, commit_interval_ms=2)
    spool.open()
    await write(spool, [accepted(n) for n in range(1, 101)])
    assert 1 <= spool.syncs <= 3
    await spool.close()
