"""The demo's main job, in the order a deployment lives through it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from machpay import topics
from machpay.config import Settings, default_cache_dir
from machpay.demo import chain as chain_side
from machpay.demo import report, traffic
from machpay.demo.observe import TopicObserver
from machpay.demo.processes import ServiceGroup
from machpay.demo.stack import DemoStack, wait_for
from machpay.demo.vendor_api import VendorApi
from machpay.protocol import Keypair
from machpay.testing import free_port, serve_in_thread

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    agents: int = 8
    vendors: int = 3
    calls: int = 1_500
    workers: int = 2
    bond: int = 50_000_000
    seed: int = 7
    bootstrap: str | None = None
    keep_running: bool = False
    batch_max_age_ms: int = 1_500


def _kafka(settings: Settings, bootstrap: str | None, run_id: str, echo: Echo) -> Settings:
    """Settings pointing at the broker (started if need be) with this run's topics."""
    from machpay.kafka.admin import create_topics
    from machpay.kafka.broker import LocalBroker

    if bootstrap is None:
        broker = LocalBroker(settings.local_kafka, echo=echo)
        if broker.running_pid() is None:
            echo("starting the local Kafka broker (it stays up: `machpay kafka down` stops it)")
            broker.fetch()
            if not broker.status(with_topics=False).formatted:
                broker.format()
            broker.start()
        else:
            echo(f"using the running local Kafka broker on {broker.bootstrap}")
        bootstrap = broker.bootstrap
    kafka = settings.kafka.model_copy(
        update={
            "bootstrap_servers": bootstrap,
            "topic_prefix": f"demo-{run_id}.",
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 500,
        }
    )
    settings = settings.model_copy(update={"kafka": kafka})
    create_topics(settings, strict=False)
    echo(f"topics of this run: demo-{run_id}.* on {bootstrap}")
    return settings


def run(settings: Settings, options: DemoOptions, *, echo: Echo) -> bool:
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()
    run_dir = default_cache_dir() / "demo" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    echo(f"demo run {run_id}: configs and logs in {run_dir}")
    settings = _kafka(settings, options.bootstrap, run_id, echo)

    agents = [Keypair.generate() for _ in range(options.agents)]
    cheats = {"equivocator": Keypair.generate(), "rewinder": Keypair.generate()}
    vendor_keys = [Keypair.generate() for _ in range(options.vendors)]

    with ServiceGroup(echo) as group:
        echo("\n1. the chain: a local Solana runtime with GlobalBond, MachPay and ServiceRegistry")
        chain = chain_side.start(run_dir, settings, group, echo=echo)
        settings = chain.settings
        stack = DemoStack(run_dir, settings, group, echo)
        apis = [VendorApi(f"vendor-{i}") for i in range(options.vendors)]
        upstream_cms = [serve_in_thread(api, free_port()) for api in apis]
        upstreams = [cm.__enter__() for cm in upstream_cms]
        try:
            chain.register_vendors(vendor_keys, upstreams)
            chain.deposit_bonds([*agents, *cheats.values()], options.bond)

            echo("\n2. the slow path: settler (follows the chain) and stream workers")
            observer = TopicObserver(settings).start()
            try:
                chain.start_settler(stack)
                stack.start_streams(options.workers, batch_max_age_ms=options.batch_max_age_ms)
                everyone = {k.public for k in [*agents, *cheats.values()]}
                wait_for(
                    "every bond to reach agents.status",
                    lambda: everyone <= report.bonded_agents(observer),
                    timeout_s=120,
                    echo=echo,
                    group=group,
                )
                echo("\n3. the fast path: one gateway per vendor (two replicas of vendor-0)")
                vendors = stack.start_gateways(vendor_keys, upstreams)
                time.sleep(1.0)  # the gateways' agents.status caches catch up (a few records)

                echo(f"\n4. {options.agents} agents pay {options.calls:,} calls through the SDK")
                paid = traffic.honest_traffic(
                    agents,
                    vendors,
                    calls=options.calls,
                    state_dir=run_dir / "agents",
                    seed=options.seed,
                    echo=echo,
                )
                echo(
                    f"  {paid.calls:,} calls paid, {paid.lamports:,} lamports, in {paid.seconds:.1f}s "
                    f"({paid.calls / paid.seconds:,.0f} calls/s)"
                )

                echo("\n5. two cheats: a double-spend across vendors, a rewound channel across replicas")
                cheating = [traffic.equivocate(cheats["equivocator"], vendors[0], vendors[-1])]
                if len(vendors[0].gateway_urls) > 1:
                    cheating.append(traffic.rewind(cheats["rewinder"], vendors[0]))
                for cheat in cheating:
                    echo(f"  {cheat.name}: gateways answered {cheat.answers} (each saw one honest-looking call)")
                wait_for(
                    "both fraud proofs and the bans",
                    lambda: report.banned_agents(observer) >= {c.keypair.public for c in cheating},
                    timeout_s=60,
                    echo=echo,
                    group=group,
                )
                time.sleep(0.5)
                after = {c.name: traffic.try_again(c.keypair, vendors[0]) for c in cheating}
                for name, (status, reason) in after.items():
                    echo(f"  {name} tries again: {status} {reason}")

                echo("\n6. settlement: batches close, the settler pays vendors from the bonds")
                wait_for(
                    "every batch settled and every proof slashed on-chain",
                    lambda: report.all_settled(observer, cheating),
                    timeout_s=180,
                    echo=echo,
                    group=group,
                )
                lines, ok = report.build(observer, chain, paid, cheating, after, agents, vendors, options)
                for line in lines:
                    echo(line)
                if options.keep_running:
                    echo("\nservices keep running; Ctrl-C stops them")
                    try:
                        while True:
                            group.check()
                            time.sleep(1)
                    except KeyboardInterrupt:
                        pass
                return ok
            finally:
                observer.stop()
        finally:
            for cm in reversed(upstream_cms):
                cm.__exit__(None, None, None)
            chain.stop()


__all__ = ["DemoOptions", "Path", "run", "topics"]
