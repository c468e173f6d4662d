"""The allocator's guarantees, across threads, processes and SIGKILL.

Every check runs the protocol's own fraud detectors over every pair of
signed intents: an allocator bug shows up exactly as the streams would see
it, as equivocation (a reused nonce) or channel inconsistency (a forked
cumulative sequence).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machpay.protocol import Intent, Keypair, SignedIntent, detect_fraud, sign_intent
from machpay.sdk.errors import LedgerError
from machpay.sdk.ledger import AgentLedger

SEED = bytes(range(32))
KEY = Keypair.from_seed(SEED)
DOMAIN = b"testdom1"
CHANNELS = [bytes([i]) * 32 for i in range(1, 4)]
FORK = multiprocessing.get_context("fork")


def ledger_for(state_dir: Path) -> AgentLedger:
    return AgentLedger.for_agent(KEY.address, state_dir)


def allocate_and_sign(ledger: AgentLedger, channel: bytes, amount: int) -> SignedIntent:
    """What the payment flow does: allocate durably, then sign."""
    allocation = ledger.allocate(
        domain=DOMAIN, channel=channel, vendor=channel.hex()[:8], service="s", amount=amount
    )
    intent = Intent(
        domain=DOMAIN,
        channel=channel,
        nonce=allocation.nonce,
        cumulative=allocation.cumulative,
        amount=amount,
        expires_at=2_000_000_000,
        context=bytes(16),
    )
    return sign_intent(intent, KEY)


def assert_honest(intents: list[SignedIntent]) -> None:
    nonces = [s.nonce for s in intents]
    assert len(set(nonces)) == len(nonces), "a nonce was handed out twice"
    for a, b in itertools.combinations(intents, 2):
        proof = detect_fraud(a, b)
        assert proof is None, f"{proof.kind.name}: nonces {a.nonce}, {b.nonce}"


# -- single process -----------------------------------------------------------


def test_allocations_grow_nonce_and_cumulative(tmp_path: Path) -> None:
    ledger = ledger_for(tmp_path)
    first = ledger.allocate(domain=DOMAIN, channel=CHANNELS[0], vendor="v", service="s", amount=3)
    second = ledger.allocate(domain=DOMAIN, channel=CHANNELS[0], vendor="v", service="s", amount=4)
    other = ledger.allocate(domain=DOMAIN, channel=CHANNELS[1], vendor="w", service="s", amount=5)
    assert second.nonce == first.nonce + 1
    assert other.nonce == second.nonce + 1
    assert (first.cumulative, second.cumulative, other.cumulative) == (3, 7, 5)
    assert ledger.cumulative(domain=DOMAIN, channel=CHANNELS[0]) == 7
    # Another deployment's channel of the same address is a separate sequence.
    assert ledger.cumulative(domain=b"otherdom", channel=CHANNELS[0]) == 0


def test_fresh_ledger_starts_nonces_at_the_clock(tmp_path: Path) -> None:
    before = time.time_ns() // 1000
    assert ledger_for(tmp_path).next_nonce() >= before


def test_restart_continues_after_every_handed_out_nonce(tmp_path: Path) -> None:
    with ledger_for(tmp_path) as ledger:
        seen = [allocate_and_sign(ledger, CHANNELS[0], 2) for _ in range(5)]
    with ledger_for(tmp_path) as ledger:
        seen += [allocate_and_sign(ledger, CHANNELS[0], 2) for _ in range(5)]
    assert_honest(seen)
    assert seen[-1].cumulative == 20


def test_resync_raises_never_lowers(tmp_path: Path) -> None:
    ledger = ledger_for(tmp_path)
    ledger.allocate(domain=DOMAIN, channel=CHANNELS[0], vendor="v", service="s", amount=10)
    assert ledger.resync(domain=DOMAIN, channel=CHANNELS[0], vendor="v", hint=4) == 10
    assert ledger.resync(domain=DOMAIN, channel=CHANNELS[0], vendor="v", hint=50) == 50
    nxt = ledger.allocate(domain=DOMAIN, channel=CHANNELS[0], vendor="v", service="s", amount=1)
    assert nxt.cumulative == 51
    # An unknown channel can be seeded from the gateway's hint.
    assert ledger.resync(domain=DOMAIN, channel=CHANNELS[1], vendor="w", hint=7) == 7


def test_a_ledger_belongs_to_one_agent(tmp_path: Path) -> None:
    AgentLedger(tmp_path / "x.sqlite3", agent="alice").close()
    with pytest.raises(LedgerError, match="alice"):
        AgentLedger(tmp_path / "x.sqlite3", agent="bob")


def test_database_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    import sqlite3

    ledger_for(tmp_path).close()
    conn = sqlite3.connect(tmp_path / f"{KEY.address}.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_threads_sharing_one_ledger(tmp_path: Path) -> None:
    ledger = ledger_for(tmp_path)
    out: list[SignedIntent] = []
    lock = threading.Lock()

    def work(channel: bytes) -> None:
        for amount in range(1, 21):
            signed = allocate_and_sign(ledger, channel, amount)
            with lock:
                out.append(signed)

    threads = [threading.Thread(target=work, args=(CHANNELS[i % 3],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 120
    assert_honest(out)


# -- many processes -----------------------------------------------------------


def _worker(state_dir: str, plan: list[tuple[int, int]], queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    # Each process opens its own ledger on the shared file, as separate agents
    # processes with one key would.
    with AgentLedger.for_agent(KEY.address, state_dir) as ledger:
        signed = [allocate_and_sign(ledger, CHANNELS[c], amount).to_bytes() for c, amount in plan]
    queue.put(signed)


def run_processes(state_dir: Path, plans: list[list[tuple[int, int]]]) -> list[SignedIntent]:
    queue = FORK.Queue()
    procs = [FORK.Process(target=_worker, args=(str(state_dir), plan, queue)) for plan in plans]
    for p in procs:
        p.start()
    results: list[SignedIntent] = []
    for _ in procs:
        results += [SignedIntent.from_bytes(b) for b in queue.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


plans = st.lists(
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 1_000)), min_size=1, max_size=25),
    min_size=2,
    max_size=4,
)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plans=plans)
def test_concurrent_processes_never_collide(
    tmp_path_factory: pytest.TempPathFactory, plans: list[list[tuple[int, int]]]
) -> None:
    state_dir = tmp_path_factory.mktemp("ledger")
    intents = run_processes(state_dir, plans)
    assert len(intents) == sum(len(p) for p in plans)
    assert_honest(intents)
    # Each channel ends at exactly the sum of what was authorised on it.
    with ledger_for(state_dir) as ledger:
        for c, channel in enumerate(CHANNELS):
            total = sum(a for plan in plans for cc, a in plan if cc == c)
            assert ledger.cumulative(domain=DOMAIN, channel=channel) == total


# -- crashes ------------------------------------------------------------------


def _crashing_worker(state_dir: str, out_path: str, start: int) -> None:
    """Allocate and sign forever from three threads (so allocations are group
    committed), appending each signed intent to a per-thread file."""
    ledger = AgentLedger.for_agent(KEY.address, state_dir)

    def loop(thread: int) -> None:
        with open(f"{out_path}.{thread}", "ab") as out:
            i = start + 10 * thread
            while True:
                signed = allocate_and_sign(ledger, CHANNELS[i % 3], 1 + i % 7)
                out.write(signed.to_bytes())
                out.flush()
                i += 1

    threads = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(delays=st.lists(st.floats(0.02, 0.3), min_size=2, max_size=4))
def test_sigkill_mid_allocation_never_reuses(
    tmp_path_factory: pytest.TempPathFactory, delays: list[float]
) -> None:
    state_dir = tmp_path_factory.mktemp("ledger")
    outputs: list[Path] = []
    for round_, delay in enumerate(delays):
        out = state_dir / f"round{round_}.bin"
        # Two processes per round share the key; both are killed with SIGKILL
        # at an arbitrary point, usually inside a transaction.
        procs = [
            FORK.Process(target=_crashing_worker, args=(str(state_dir), f"{out}.{k}", k))
            for k in range(2)
        ]
        for p in procs:
            p.start()
        time.sleep(delay)
        for p in procs:
            assert p.pid is not None
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == -signal.SIGKILL
        outputs += [Path(f"{out}.{k}.{t}") for k in range(2) for t in range(3)]
    intents: list[SignedIntent] = []
    for path in outputs:
        data = path.read_bytes() if path.exists() else b""
        whole = len(data) - len(data) % 193  # a kill may cut the last record
        intents += [SignedIntent.from_bytes(data[i : i + 193]) for i in range(0, whole, 193)]
    assert intents, "the workers signed nothing before being killed"
    assert_honest(intents)
    # The state on disk is past everything that was ever handed out.
    with ledger_for(state_dir) as ledger:
        assert ledger.next_nonce() > max(s.nonce for s in intents)
        for channel in CHANNELS:
            seen = [s.cumulative for s in intents if s.channel == channel]
            assert ledger.cumulative(domain=DOMAIN, channel=channel) >= max(seen, default=0)
        # And a restart carries on honestly.
        after = [allocate_and_sign(ledger, CHANNELS[i % 3], 5) for i in range(6)]
    assert_honest(intents + after)


def _budget_worker(state_dir: str, attempts: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from machpay.sdk.errors import PolicyViolation
    from machpay.sdk.policy import SpendPolicy

    policy = SpendPolicy(max_per_vendor=100, window_limit=150)
    paid = 0
    with AgentLedger.for_agent(KEY.address, state_dir) as ledger:
        for i in range(attempts):
            try:
                ledger.allocate(
                    domain=DOMAIN,
                    channel=CHANNELS[i % 2],
                    vendor=f"v{i % 2}",
                    service="s",
                    amount=3,
                    policy=policy,
                )
                paid += 3
            except PolicyViolation:
                pass
    queue.put(paid)


def test_budgets_hold_across_processes(tmp_path: Path) -> None:
    queue = FORK.Queue()
    procs = [FORK.Process(target=_budget_worker, args=(str(tmp_path), 40, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    paid = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    # Two vendors of 100 each (33 calls of 3 = 99), capped by the window at 150 (50 calls).
    assert sum(paid) == 150
    with ledger_for(tmp_path) as ledger:
        assert ledger.spent() == 150
        assert ledger.spent(vendor="v0") <= 100
        assert ledger.spent(vendor="v1") <= 100


def test_ledger_files_are_owner_only(tmp_path: Path) -> None:
    import stat

    with ledger_for(tmp_path) as ledger:
        ledger.allocate(domain=DOMAIN, channel=CHANNELS[0], vendor="v", service="s", amount=1)
        for path in tmp_path.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_group_commit_keeps_policy_refusals_per_allocation(tmp_path: Path) -> None:
    from machpay.sdk.errors import PolicyViolation
    from machpay.sdk.policy import SpendPolicy

    ledger = ledger_for(tmp_path)
    policy = SpendPolicy(max_per_vendor=200)
    results: list[int] = []
    refused: list[PolicyViolation] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(30):
            try:
                allocation = ledger.allocate(
                    domain=DOMAIN,
                    channel=CHANNELS[0],
                    vendor="v",
                    service="s",
                    amount=7,
                    policy=policy,
                )
            except PolicyViolation as exc:
                with lock:
                    refused.append(exc)
                continue
            with lock:
                results.append(allocation.cumulative)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 // 7
    assert sorted(results) == [7 * (i + 1) for i in range(len(results))]
    assert len(refused) == 240 - len(results)
    assert ledger.spent(vendor="v") == 7 * len(results)
    assert [a.cumulative for a in ledger.allocations()] == sorted(results)


def _allocate_once(ledger: AgentLedger, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(allocate_and_sign(ledger, CHANNELS[0], 1).to_bytes())


def test_fork_while_a_thread_holds_the_ledger_does_not_deadlock_the_child(
    tmp_path: Path,
) -> None:
    ledger = ledger_for(tmp_path)
    first = allocate_and_sign(ledger, CHANNELS[0], 1)
    queue = FORK.Queue()
    with ledger._lock:  # as if another thread were mid-commit when fork() happened
        child = FORK.Process(target=_allocate_once, args=(ledger, queue))
        child.start()
        child.join(timeout=30)
    assert child.exitcode == 0
    forked = SignedIntent.from_bytes(queue.get(timeout=5))
    after = allocate_and_sign(ledger, CHANNELS[0], 1)
    assert_honest([first, forked, after])
