"""What the demo shows at the end, computed from the topics and the chain.

Every figure is read back from where the product put it (Kafka topics, chain
accounts), never from the demo's own bookkeeping; the demo's bookkeeping
(what the agents' receipts say they paid) is what the figures are checked
against.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from machpay import topics
from machpay.demo.observe import TopicObserver
from machpay.protocol import bytes_to_address
from machpay.wire.intents import unpack

if TYPE_CHECKING:
    from machpay.demo.chain import LocalChain
    from machpay.demo.traffic import Cheat, Paid, VendorEndpoint
    from machpay.protocol import Keypair


@dataclass
class Seen:
    """Where the report reads from, and what the agents' own receipts say."""

    observer: TopicObserver
    chain: LocalChain
    paid: Paid
    cheating: list[Cheat]
    after: dict[str, tuple[int, str]]
    agents: list[Keypair]
    vendors: list[VendorEndpoint]


def latest_statuses(observer: TopicObserver) -> dict[bytes, dict[str, Any]]:
    latest: dict[bytes, dict[str, Any]] = {}
    for status in observer.values(topics.AGENTS_STATUS):
        agent = bytes(status["agent"])
        if agent not in latest or status["version"] >= latest[agent]["version"]:
            latest[agent] = status
    return latest


def bonded_agents(observer: TopicObserver) -> set[bytes]:
    return {a for a, s in latest_statuses(observer).items() if s["bond"] > 0}


def banned_agents(observer: TopicObserver) -> set[bytes]:
    return {a for a, s in latest_statuses(observer).items() if s["banned"]}


def accepted_ids(observer: TopicObserver) -> set[bytes]:
    return {i.id for batch in observer.values(topics.INTENTS_ACCEPTED) for i in unpack(batch)}


def unique_batches(observer: TopicObserver) -> dict[bytes, dict[str, Any]]:
    return {bytes(b["batch_id"]): b for b in observer.values(topics.BATCHES_READY)}


def settlement_outcomes(observer: TopicObserver) -> dict[bytes, dict[str, Any]]:
    """The last status of each batch's settlement."""
    last: dict[bytes, dict[str, Any]] = {}
    for row in observer.values(topics.SETTLEMENTS):
        last[bytes(row["batch_id"])] = row
    return last


def slashed_agents(observer: TopicObserver) -> set[bytes]:
    return {
        bytes(e["agent"])
        for e in observer.values(topics.CHAIN_EVENTS)
        if e["kind"] == "SLASHED" and e["agent"] is not None
    }


def all_settled(observer: TopicObserver, cheating: list[Cheat]) -> bool:
    batches = unique_batches(observer)
    in_batches = {bytes(i) for b in batches.values() for i in b["intent_ids"]}
    if not batches or accepted_ids(observer) - in_batches:
        return False
    outcomes = settlement_outcomes(observer)
    if any(outcomes.get(bid, {}).get("status") != "CONFIRMED" for bid in batches):
        return False
    return {c.keypair.public for c in cheating} <= slashed_agents(observer)


def build(seen: Seen, *, bond: int) -> tuple[list[str], bool]:
    """The report's lines and whether every check held."""
    observer, chain, paid = seen.observer, seen.chain, seen.paid
    cheating, after, agents, vendors = seen.cheating, seen.after, seen.agents, seen.vendors
    checks: list[tuple[str, bool]] = []
    lines = ["", "=" * 78, "what happened", "=" * 78]

    accepted_batches = observer.values(topics.INTENTS_ACCEPTED)
    copies = [i for b in accepted_batches for i in unpack(b)]
    ids = {i.id for i in copies}
    lines.append(
        f"gateways accepted {len(ids):,} intents ({len(copies):,} copies on intents.accepted in "
        f"{len(accepted_batches)} records: at-least-once, deduplicated downstream)"
    )
    cheat_calls = sum(c.answers.count(200) for c in cheating)
    checks.append(("every paid call reached Kafka once", len(ids) == paid.calls + cheat_calls))

    batches = unique_batches(observer)
    leaves = [bytes(i) for b in batches.values() for i in b["intent_ids"]]
    lines.append(
        f"stream workers cut {len(batches)} batches holding {len(leaves):,} intents "
        f"(reasons: {dict(_count(b['close_reason'] for b in batches.values()))})"
    )
    checks.append(
        ("every intent in exactly one batch", len(leaves) == len(set(leaves)) == len(ids))
    )

    proofs = {bytes(p["proof_id"]): p for p in observer.values(topics.FRAUD_PROOFS)}
    for proof in proofs.values():
        lines.append(
            f"fraud proof {proof['kind']:<21} "
            f"agent {bytes_to_address(bytes(proof['agent']))[:10]}… "
            f"proof {bytes(proof['proof_id']).hex()[:12]}… by {proof['detected_by']}"
        )
    checks.append(("one proof per cheat", len(proofs) == len(cheating)))
    for name, (status, reason) in after.items():
        lines.append(f"{name} after the proof: gateway answers {status} {reason}")
        checks.append(
            (f"{name} refused at the gateway", status == 402 and reason == "agent_banned")
        )

    outcomes = settlement_outcomes(observer)
    per_vendor: dict[bytes, int] = defaultdict(int)
    for bid, row in outcomes.items():
        if row["status"] == "CONFIRMED" and bid in batches:
            for ch in row["channels"]:
                per_vendor[bytes(row["vendor"])] += ch["paid"]
    signatures = {
        row["signature"]
        for row in observer.values(topics.SETTLEMENTS)
        if row["status"] == "CONFIRMED" and row["signature"]
    }
    lines.append(
        f"settler confirmed {sum(1 for r in outcomes.values() if r['status'] == 'CONFIRMED')} "
        f"batch settlements in {len(signatures)} transactions"
    )

    cheat_keys = {c.keypair.public for c in cheating}
    cheat_settled = sum(
        ch["paid"]
        for bid, row in outcomes.items()
        if row["status"] == "CONFIRMED" and bid in batches
        for ch in row["channels"]
        if bytes(ch["agent"]) in cheat_keys
    )
    header = f"{'vendor':<10} {'receipts':>12} {'settled (topic)':>16} {'on-chain delta':>15}"
    lines += ["", header]
    deltas = chain.vendor_deltas([v.keypair for v in vendors])
    for vendor in vendors:
        receipts = paid.by_vendor.get(vendor.name, 0) + sum(
            c.by_vendor.get(vendor.name, 0) for c in cheating
        )
        settled = per_vendor.get(vendor.keypair.public, 0)
        delta = deltas.get(vendor.keypair.public, 0)
        lines.append(f"{vendor.name:<10} {receipts:>12,} {settled:>16,} {delta:>15,}")
        checks.append(
            (f"{vendor.name}: on-chain balance moved by exactly what settled", delta == settled)
        )
    cheat_receipts = sum(c.amount for c in cheating)
    lines.append(
        f"of that, the cheats' calls: {cheat_receipts:,} lamports, {cheat_settled:,} settled, "
        f"{cheat_receipts - cheat_settled:,} unpaid "
        "(conflicting vouchers the streams keep out of every batch, or left to the slash)"
    )

    statuses = latest_statuses(observer)
    honest = {a.public for a in agents}
    honest_settled = sum(s["settled"] for a, s in statuses.items() if a in honest)
    honest_outstanding = sum(s["exposure"] for a, s in statuses.items() if a in honest)
    lines.append("")
    lines.append(
        f"honest agents: paid {paid.lamports:,} by receipts = settled {honest_settled:,} "
        f"+ outstanding {honest_outstanding:,}"
    )
    checks.append(
        (
            "conservation: receipts = settled + outstanding",
            paid.lamports == honest_settled + honest_outstanding,
        )
    )
    bonds = chain.bond_balances([*agents, *(c.keypair for c in cheating)])
    for cheat in cheating:
        lines.append(
            f"{cheat.name}: bond now {bonds.get(cheat.keypair.public, 0):,} lamports "
            f"(deposited {bond:,}; slashed once)"
        )
    checks.append(
        (
            "cheats slashed on-chain",
            {c.keypair.public for c in cheating} <= slashed_agents(observer),
        )
    )

    lines += ["", "checks"]
    for name, ok in checks:
        lines.append(f"  [{'ok' if ok else 'FAILED'}] {name}")
    all_ok = all(ok for _, ok in checks)
    lines += [
        "",
        "RESULT: "
        + (
            "every payment accounted for, on Kafka and on-chain"
            if all_ok
            else "MISMATCH (see above)"
        ),
    ]
    return lines, all_ok


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[str(v)] += 1
    return dict(out)
