"""The demo's main job, in the order a deployment lives through it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
    run_dir: Path | None = None
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


@contextlib.contextmanager
def _vendor_apis(count: int) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(serve_in_thread(VendorApi(f"vendor-{i}"), free_port()))
            for i in range(count)
        ]


class DemoRun:
    """One run: its keys, its services, and what it observed."""

    def __init__(self, settings: Settings, options: DemoOptions, echo: Echo) -> None:
        self.options = options
        self.echo = echo
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()
        self.run_dir = options.run_dir or default_cache_dir() / "demo" / self.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        echo(f"demo run {self.run_id}: configs and logs in {self.run_dir}")
        self.settings = _kafka(settings, options.bootstrap, self.run_id, echo)
        self.agents = [Keypair.generate() for _ in range(options.agents)]
        self.cheat_keys = {"equivocator": Keypair.generate(), "rewinder": Keypair.generate()}
        self.vendor_keys = [Keypair.generate() for _ in range(options.vendors)]

    def everyone(self) -> list[Keypair]:
        return [*self.agents, *self.cheat_keys.values()]

    def run(self) -> bool:
        echo, options = self.echo, self.options
        with ServiceGroup(echo) as group, _vendor_apis(options.vendors) as upstreams:
            echo("\n1. the chain: a local Solana runtime with GlobalBond, MachPay, ServiceRegistry")
            chain = chain_side.start(self.run_dir, self.settings, group, echo=echo)
            try:
                stack = DemoStack(self.run_dir, chain.settings, group, echo)
                vendors = stack.plan_vendors(self.vendor_keys)
                chain.register_vendors(
                    self.vendor_keys,
                    [v.gateway_urls[0] for v in vendors],
                    [[(r.service, r.price) for r in v.routes] for v in vendors],
                )
                chain.deposit_bonds(self.everyone(), options.bond)
                observer = TopicObserver(chain.settings).start()
                try:
                    return self._services_and_traffic(group, chain, stack, observer, upstreams)
                finally:
                    observer.stop()
            finally:
                chain.stop()

    def _services_and_traffic(
        self,
        group: ServiceGroup,
        chain: chain_side.LocalChain,
        stack: DemoStack,
        observer: TopicObserver,
        upstreams: list[str],
    ) -> bool:
        echo, options = self.echo, self.options
        echo("\n2. the slow path: the settler (it follows the chain) and the stream workers")
        chain.start_settler(group, stack.write_config)
        stack.start_streams(options.workers, batch_max_age_ms=options.batch_max_age_ms)
        bonded = {k.public for k in self.everyone()}
        wait_for(
            "every bond to reach agents.status (chain -> settler -> chain.events -> streams)",
            lambda: bonded <= report.bonded_agents(observer),
            timeout_s=120,
            echo=echo,
            group=group,
        )

        echo("\n3. the fast path: one gateway per vendor (two replicas of vendor-0)")
        stack.start_gateways(upstreams)
        vendors = stack.vendors

        echo(f"\n4. {options.agents} agents pay {options.calls:,} calls through the SDK")
        paid = traffic.honest_traffic(
            self.agents,
            vendors,
            calls=options.calls,
            state_dir=self.run_dir / "agents",
            seed=options.seed,
            echo=echo,
        )
        rate = paid.calls / paid.seconds if paid.seconds else 0.0
        echo(f"  {paid.calls:,} calls paid ({paid.lamports:,} lamports) in {paid.seconds:.1f}s")
        echo(f"  {rate:,.0f} paid calls/s; refused: {dict(paid.refused) or 'none'}")

        echo("\n5. two cheats: a double spend across vendors, a rewound channel across replicas")
        cheating = [traffic.equivocate(self.cheat_keys["equivocator"], vendors[0], vendors[-1])]
        if len(vendors[0].gateway_urls) > 1:
            cheating.append(traffic.rewind(self.cheat_keys["rewinder"], vendors[0]))
        for cheat in cheating:
            echo(f"  {cheat.name}: the two gateways answered {cheat.answers}")
        wait_for(
            "the fraud proofs and the bans",
            lambda: report.banned_agents(observer) >= {c.keypair.public for c in cheating},
            timeout_s=60,
            echo=echo,
            group=group,
        )
        time.sleep(0.5)  # the gateways' agents.status caches take the ban
        after = {c.name: traffic.try_again(c, vendors[0]) for c in cheating}
        for name, (status, reason) in after.items():
            echo(f"  {name} tries again: {status} {reason}")

        echo("\n6. settlement: batches close, the settler pays the vendors from the bonds")
        wait_for(
            "every batch settled and every proof slashed on-chain",
            lambda: report.all_settled(observer, cheating),
            timeout_s=180,
            echo=echo,
            group=group,
        )
        seen = report.Seen(observer, chain, paid, cheating, after, self.agents, vendors)
        lines, ok = report.build(seen, bond=options.bond)
        for line in lines:
            echo(line)
        if options.keep_running:
            echo("\nthe services keep running; Ctrl-C stops them")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    group.check()
                    time.sleep(1)
        return ok


def run(settings: Settings, options: DemoOptions, *, echo: Echo) -> bool:
    return DemoRun(settings, options, echo).run()
