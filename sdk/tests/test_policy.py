"""Spend policy: each limit refuses with a typed exception naming it; budgets are durable."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machpay.sdk.errors import PolicyViolation
from machpay.sdk.ledger import AgentLedger
from machpay.sdk.policy import SpendPolicy

DOMAIN = b"testdom1"
CHANNEL_A = b"a" * 32
CHANNEL_B = b"b" * 32


@pytest.fixture
def ledger(tmp_path: Path) -> AgentLedger:
    return AgentLedger.for_agent("agent", tmp_path)


def pay(
    ledger: AgentLedger,
    policy: SpendPolicy,
    amount: int,
    *,
    vendor: str = "v1",
    service: str = "weather",
    now_ms: int | None = None,
) -> None:
    channel = CHANNEL_A if vendor == "v1" else CHANNEL_B
    ledger.allocate(
        domain=DOMAIN,
        channel=channel,
        vendor=vendor,
        service=service,
        amount=amount,
        policy=policy,
        now_ms=now_ms,
    )


def test_max_per_call(ledger: AgentLedger) -> None:
    policy = SpendPolicy(max_per_call=100)
    pay(ledger, policy, 100)
    with pytest.raises(PolicyViolation) as info:
        pay(ledger, policy, 101)
    assert info.value.limit == "max_per_call"
    assert (info.value.requested, info.value.allowed) == (101, 100)
    assert ledger.spent() == 100  # nothing recorded for the refused call


def test_max_per_vendor_counts_each_vendor_separately(ledger: AgentLedger) -> None:
    policy = SpendPolicy(max_per_vendor=10, vendor_limits={"v2": 25})
    pay(ledger, policy, 6)
    with pytest.raises(PolicyViolation) as info:
        pay(ledger, policy, 5)
    assert info.value.limit == "max_per_vendor"
    assert (info.value.spent, info.value.allowed, info.value.requested) == (6, 10, 5)
    pay(ledger, policy, 4)
    pay(ledger, policy, 25, vendor="v2")
    with pytest.raises(PolicyViolation, match="max_per_vendor"):
        pay(ledger, policy, 1, vendor="v2")


def test_rolling_window(ledger: AgentLedger) -> None:
    policy = SpendPolicy(window_limit=10, window_seconds=60)
    t0 = 1_000_000_000
    pay(ledger, policy, 7, now_ms=t0)
    with pytest.raises(PolicyViolation) as info:
        pay(ledger, policy, 4, now_ms=t0 + 59_000, vendor="v2")
    assert info.value.limit == "window"
    assert info.value.spent == 7
    # Once the first spend leaves the window, there is room again.
    pay(ledger, policy, 10, now_ms=t0 + 60_001)


def test_allowed_vendors_and_services(ledger: AgentLedger) -> None:
    policy = SpendPolicy(allowed_vendors=frozenset({"v1"}), allowed_services={"weather"})
    pay(ledger, policy, 1)
    with pytest.raises(PolicyViolation) as info:
        pay(ledger, policy, 1, vendor="v2")
    assert info.value.limit == "allowed_vendors"
    with pytest.raises(PolicyViolation) as info:
        pay(ledger, policy, 1, service="stocks")
    assert info.value.limit == "allowed_services"


def test_budget_survives_a_restart(tmp_path: Path) -> None:
    policy = SpendPolicy(max_per_vendor=10)
    with AgentLedger.for_agent("agent", tmp_path) as first:
        pay(first, policy, 8)
    with AgentLedger.for_agent("agent", tmp_path) as second, pytest.raises(PolicyViolation):
        pay(second, policy, 3)


def test_policy_validates_its_numbers() -> None:
    with pytest.raises(ValueError, match="max_per_call"):
        SpendPolicy(max_per_call=-1)
    with pytest.raises(ValueError, match="allowed_vendors"):
        SpendPolicy(allowed_vendors="v1")  # type: ignore[arg-type]


def test_violation_pickles_with_its_numbers() -> None:
    import pickle

    violation = PolicyViolation(
        "window", "too much", vendor="v", service="s", requested=3, allowed=2, spent=1
    )
    copy = pickle.loads(pickle.dumps(violation))
    assert (copy.limit, copy.requested, copy.allowed, copy.spent) == ("window", 3, 2, 1)
    assert str(copy) == str(violation)


def test_policy_from_a_toml_file(tmp_path: Path) -> None:
    from machpay.sdk.policy import load_policy

    path = tmp_path / "policy.toml"
    path.write_text(
        "[policy]\nmax_per_call = 5000\nwindow_limit = 20000\nwindow_seconds = 60\n"
        'allowed_services = ["search"]\n[policy.vendor_limits]\nv1 = 7\n'
    )
    policy = load_policy(path)
    assert policy.max_per_call == 5000
    assert policy.window_seconds == 60
    assert policy.allowed_services == frozenset({"search"})
    assert policy.vendor_limit("v1") == 7
    assert policy.vendor_limit("v2") is None


def test_policy_file_refuses_unknown_keys(tmp_path: Path) -> None:
    from machpay.sdk.policy import load_policy

    path = tmp_path / "policy.toml"
    path.write_text("max_per_cal = 5\n")
    with pytest.raises(ValueError, match="max_per_cal"):
        load_policy(path)


# -- properties -----------------------------------------------------------------

spends = st.lists(
    st.tuples(st.sampled_from(["v1", "v2", "v3"]), st.integers(1, 400), st.integers(0, 5_000)),
    max_size=60,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    calls=spends,
    per_vendor=st.integers(0, 3_000),
    window=st.integers(0, 3_000),
    per_call=st.integers(1, 400),
)
def test_accepted_spends_never_exceed_any_limit(
    tmp_path_factory: pytest.TempPathFactory,
    calls: list[tuple[str, int, int]],
    per_vendor: int,
    window: int,
    per_call: int,
) -> None:
    ledger = AgentLedger.for_agent("agent", tmp_path_factory.mktemp("p"))
    policy = SpendPolicy(
        max_per_call=per_call, max_per_vendor=per_vendor, window_limit=window, window_seconds=10
    )
    now = 1_000_000_000
    accepted: list[tuple[str, int, int]] = []
    for vendor, amount, step_ms in calls:
        now += step_ms
        vendor_total = sum(a for v, a, _ in accepted if v == vendor)
        in_window = sum(a for _, a, t in accepted if t > now - 10_000)
        should_pass = (
            amount <= per_call
            and vendor_total + amount <= per_vendor
            and in_window + amount <= window
        )
        refused = False
        try:
            ledger.allocate(
                domain=DOMAIN,
                channel=(vendor * 16).encode(),
                vendor=vendor,
                service="s",
                amount=amount,
                policy=policy,
                now_ms=now,
            )
        except PolicyViolation:
            refused = True
        assert refused == (not should_pass)
        if not refused:
            accepted.append((vendor, amount, now))
    assert ledger.spent() == sum(a for _, a, _ in accepted)
    ledger.close()
