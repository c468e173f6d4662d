"""`machpay settle run`: batches and fraud proofs from Kafka to Solana, outcomes back to Kafka.

The loop (one process; scale by partitions of ``batches.ready``):

1. fetch ``batches.ready`` and ``fraud.proofs`` records in the consumer group
   ``settle.group_id`` and queue them (:class:`~machpay.settle.scheduling.WorkQueue`:
   batches holding an agent with a pending withdrawal or a held proof first; a
   proof is held for ``settle.slash_grace_seconds`` and then until none of its
   agent's batches waits, so the vendors the agent served are paid before the
   slash takes the rest of the bond);
2. take the next item and carry it to an outcome on-chain:
   a batch: resolve any transaction of it the journal still holds as
   pending, read its channels, drop vouchers at or below the settled
   cumulative, pack the rest into measured v0 transactions, and for each:
   journal it, produce SUBMITTED (acks=all), send, confirm, produce CONFIRMED
   (slot, per-channel settled/paid from the program's event) or FAILED
   (reason, signature); re-read and retry up to ``settle.max_attempts``;
   a proof: ``verify_proof``, skip if its proof record already exists
   on-chain (one slash per proof), else submit it the same way;
3. commit the contiguous prefix of finished offsets (after every record the
   outcome produced was acknowledged).

A crash anywhere redelivers the unfinished records; the journal and the
chain make the second pass idempotent (see :mod:`machpay.settle.journal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from solders.keypair import Keypair as SoldersKeypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from machpay import topics
from machpay.config import Settings
from machpay.kafka.clients import consumer_kwargs, producer_kwargs, topic_name
from machpay.protocol import (
    FraudProof,
    ProofKind,
    ProtocolError,
    SignedIntent,
    load_keypair,
    verify_proof,
)
from machpay.settle.chain import Chain, ChainUnavailableError, TransactionRejectedError
from machpay.settle.idl import events_from_logs
from machpay.settle.journal import Attempt, AttemptState, Journal
from machpay.settle.lookup import LookupTables
from machpay.settle.programs import Deployment
from machpay.settle.records import ChannelOutcome, SettlementStatus, settlement
from machpay.settle.scheduling import OffsetTracker, WorkQueue
from machpay.settle.transactions import (
    PackError,
    budget_instructions,
    compile_message,
    pack,
    sign,
)
from machpay.wire import WireCodec, WireDecodeError

__all__ = ["BatchWork", "ProofWork", "Settler", "SettlerCounters", "load_payer"]

log = logging.getLogger(__name__)

REBROADCAST_SECONDS = 2.0
JOURNAL_KEEP_MS = 7 * 24 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def load_payer(settings: Settings) -> SoldersKeypair:
    path = settings.settle.payer_keypair
    if path is None:
        raise ValueError(
            "setting settle.payer_keypair is required (MACHPAY_SETTLE__PAYER_KEYPAIR): the fee "
            "payer's keypair file"
        )
    key = load_keypair(path)
    return SoldersKeypair.from_bytes(key.to_solana_bytes())


@dataclass(frozen=True, slots=True)
class BatchWork:
    tp: TopicPartition
    offset: int
    batch_id: bytes
    vendor: bytes
    root: bytes
    leaf_count: int
    total: int
    vouchers: tuple[SignedIntent, ...]
    urgent: bool

    @property
    def agents(self) -> list[bytes]:
        return [v.agent for v in self.vouchers]


@dataclass(frozen=True, slots=True)
class ProofWork:
    tp: TopicPartition
    offset: int
    proof: FraudProof | None
    proof_id: bytes
    problem: str | None = None


Work = BatchWork | ProofWork


@dataclass(slots=True)
class SettlerCounters:
    batches: int = 0
    batches_failed: int = 0
    transactions: int = 0
    confirmed: int = 0
    failed: int = 0
    channels_settled: int = 0
    vouchers_skipped: int = 0
    vouchers_invalid: int = 0
    paid: int = 0
    fees: int = 0
    proofs_submitted: int = 0
    proofs_already: int = 0
    proofs_invalid: int = 0
    proofs_held: int = 0
    resumed: int = 0

    def line(self) -> str:
        return " ".join(f"{k}={getattr(self, k)}" for k in self.__slots__)


@dataclass(frozen=True, slots=True)
class Landed:
    signature: str
    slot: int
    channels: tuple[ChannelOutcome, ...]
    fee: int


@dataclass(frozen=True, slots=True)
class NotLanded:
    signature: str
    reason: str
    expired: bool = False
    """True when it can never land (blockhash past); False when it landed with an error
    or was refused outright."""


Outcome = Landed | NotLanded


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, settler: Settler) -> None:
        self.settler = settler

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.settler.revoked(tp)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


@dataclass
class Settler:
    settings: Settings
    payer: SoldersKeypair
    deployment: Deployment
    chain: Chain
    counters: SettlerCounters = field(default_factory=SettlerCounters)
    on_progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        cfg = self.settings.settle
        self.cfg = cfg
        kafka = self.settings.kafka
        self.codec = WireCodec.from_settings(
            self.settings.schema_registry, topic_prefix=kafka.topic_prefix
        )
        self.t_batches = topic_name(topics.BATCHES_READY, kafka)
        self.t_proofs = topic_name(topics.FRAUD_PROOFS, kafka)
        self.t_settlements = topic_name(topics.SETTLEMENTS, kafka)
        self.journal = Journal(cfg.state_dir / "journal.sqlite")
        self.tables: LookupTables | None = None
        if cfg.use_lookup_table:
            existing = [Pubkey.from_string(cfg.lookup_table)] if cfg.lookup_table else []
            self.tables = LookupTables(
                self.chain, self.payer, cfg.state_dir / "lookup-tables.json", existing=existing
            )
        self.queue: WorkQueue[Work] = WorkQueue()
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.domain = self.settings.deployment.domain
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._proofs_done: set[bytes] = set()
        self._revoked: set[TopicPartition] = set()
        self._last_progress = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        kafka = self.settings.kafka
        self._producer = AIOKafkaProducer(**producer_kwargs(kafka, role="settle", linger_ms=0))
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **consumer_kwargs(
                kafka, group_id=self.cfg.group_id, role="settle", max_poll_interval_ms=600_000
            )
        )
        self._consumer.subscribe([self.t_batches, self.t_proofs], listener=_Listener(self))
        await self._consumer.start()
        if self.tables is not None:
            await self.tables.load()

    async def stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self.journal.close()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.start()
            await self.resume()
            while not stop.is_set():
                await self.step()
        finally:
            await self.stop()

    def revoked(self, tp: TopicPartition) -> None:
        """The group moved ``tp`` away: its queued work is the next owner's now."""
        self.tracker.forget(tp)
        self._revoked.add(tp)

    # -- one iteration ------------------------------------------------------------

    async def step(self) -> None:
        assert self._consumer is not None
        # Held proofs do not count: while only they wait, fetch with a timeout (not a spin),
        # cut short when a grace ends sooner.
        timeout_ms = 0
        if not self.queue.ready():
            timeout_ms = 200
            release_in = self.queue.next_release_in()
            if release_in is not None:
                timeout_ms = max(1, min(timeout_ms, int(release_in * 1000)))
        fetched = await self._consumer.getmany(
            timeout_ms=timeout_ms, max_records=200 if len(self.queue) < 1_000 else 1
        )
        for tp, recs in fetched.items():
            self._revoked.discard(tp)
            for rec in recs:
                self.tracker.fetched(tp, rec.offset)
                work = self._decode(tp, rec)
                if work is None:
                    self.tracker.finished(tp, rec.offset)
                    continue
                self._enqueue(work)
        await self.work_one()
        await self._commit()
        self._progress()

    async def work_one(self) -> None:
        """Carry the next queued item to its outcome (or back into the queue)."""
        work = self.queue.pop()
        if work is not None and work.tp not in self._revoked:
            try:
                if isinstance(work, BatchWork):
                    await self.settle_batch(work)
                else:
                    await self.submit_proof(work)
            except ChainUnavailableError as exc:
                # The endpoint went away mid-way: keep the record unfinished and try again
                # later; the journal and the channel reads make the next pass idempotent.
                log.warning("rpc unavailable (%s); the work goes back in the queue", exc)
                self._enqueue(work, hold=False)  # its grace was counted when first fetched
                await asyncio.sleep(self.cfg.poll_interval_seconds * 5)
            else:
                with contextlib.suppress(KeyError):  # revoked while we worked on it
                    self.tracker.finished(work.tp, work.offset)

    def _enqueue(self, work: Work, *, hold: bool = True) -> None:
        """Proofs first, once their grace is over; then batches closed for a withdrawal or
        holding an agent that is withdrawing or has a held proof; then arrival order.

        A proof is held (``settle.slash_grace_seconds``) because ``prove_fraud`` takes the
        whole bond: batches of the cheat already queued, or arriving meanwhile, would then
        pay its vendors nothing. Holding is harmless: the agent is banned at every gateway
        through agents.status already (no new exposure), and moving the bond away needs a
        withdrawal, which waits for the GlobalBond timelock (far longer than the grace).
        The proof's offset stays uncommitted while it is held, so a crash re-reads it.
        """
        if isinstance(work, BatchWork):
            self.queue.push(work, work.agents, urgent=work.urgent)
            return
        grace = self.cfg.slash_grace_seconds
        if (
            hold
            and grace > 0
            and work.proof is not None  # a malformed one is refused at once
            and work.proof_id not in self._proofs_done  # a duplicate is a single read
        ):
            promoted = self.queue.hold(work, work.proof.agent, grace)
            self.counters.proofs_held += 1
            log.info(
                "proof %s against %s held %.1fs: %d queued batches of that agent moved up",
                work.proof_id.hex()[:16],
                work.proof.agent.hex()[:16],
                grace,
                promoted,
            )
        else:
            self.queue.push(work, [], urgent=True)

    async def _commit(self) -> None:
        commits = self.tracker.committable()
        if not commits:
            return
        assert self._consumer is not None
        try:
            await self._consumer.commit(commits)
        except KafkaError as exc:  # a rebalance: the next owner redoes it, idempotently
            log.warning("commit of %s failed (%s); records will be redelivered", commits, exc)

    def _progress(self, force: bool = False) -> None:
        mono = time.monotonic()
        if not force and mono - self._last_progress < self.cfg.status_interval_seconds:
            return
        self._last_progress = mono
        line = f"settle: queued={len(self.queue)} held={self.queue.held} {self.counters.line()}"
        log.info(line)
        if self.on_progress is not None:
            self.on_progress(line)

    def withdrawal_requested(self, agent: bytes) -> None:
        """From the chain follower: settle this agent's channels before anything else."""
        promoted = self.queue.withdrawal_requested(agent)
        if promoted:
            log.info("withdrawal by %s: %d queued batches moved up", agent.hex()[:16], promoted)

    # -- decoding -------------------------------------------------------------------

    def _decode(self, tp: TopicPartition, rec: Any) -> Work | None:
        try:
            value = self.codec.decode(
                rec.value, topic=tp.topic, partition=tp.partition, offset=rec.offset
            )
        except WireDecodeError as exc:
            log.error("skipping undecodable record: %s", exc)
            return None
        if tp.topic == self.t_batches:
            vouchers: list[SignedIntent] = []
            for v in value["vouchers"]:
                try:
                    vouchers.append(SignedIntent(v["message"], v["signature"], v["agent"]))
                except ProtocolError as exc:
                    log.error(
                        "batch %s: malformed voucher dropped: %s", value["batch_id"].hex(), exc
                    )
                    self.counters.vouchers_invalid += 1
            return BatchWork(
                tp=tp,
                offset=rec.offset,
                batch_id=value["batch_id"],
                vendor=value["vendor"],
                root=value["root"],
                leaf_count=int(value["leaf_count"]),
                total=int(value["total"]),
                vouchers=tuple(vouchers),
                urgent=value["close_reason"] == "WITHDRAWAL",
            )
        proof_id = value["proof_id"]
        try:
            first = SignedIntent(
                value["first"]["message"], value["first"]["signature"], value["agent"]
            )
            second = SignedIntent(
                value["second"]["message"], value["second"]["signature"], value["agent"]
            )
            proof = FraudProof(ProofKind[value["kind"]], first, second)
        except (ProtocolError, KeyError) as exc:
            return ProofWork(tp, rec.offset, None, proof_id, f"malformed proof: {exc}")
        if proof.proof_id != proof_id:
            return ProofWork(tp, rec.offset, None, proof_id, "proof_id does not match the intents")
        return ProofWork(tp, rec.offset, proof, proof_id)

    # -- records ------------------------------------------------------------------

    async def _produce(self, work: BatchWork, status: SettlementStatus, **fields: Any) -> None:
        assert self._producer is not None
        value = settlement(
            batch_id=work.batch_id, vendor=work.vendor, status=status, at_ms=now_ms(), **fields
        )
        data = self.codec.encode(self.t_settlements, value)
        fut = await self._producer.send(self.t_settlements, data, key=work.vendor)
        await fut

    async def _record_outcome(self, work: BatchWork, outcome: Outcome) -> None:
        if isinstance(outcome, Landed):
            await self._produce(
                work,
                SettlementStatus.CONFIRMED,
                signature=outcome.signature,
                slot=outcome.slot,
                channels=outcome.channels,
            )
            self.journal.resolve(outcome.signature, AttemptState.CONFIRMED)
            self.counters.confirmed += 1
            self.counters.fees += outcome.fee
            self.counters.channels_settled += len(outcome.channels)
            self.counters.paid += sum(c.paid for c in outcome.channels)
        else:
            await self._produce(
                work, SettlementStatus.FAILED, signature=outcome.signature, reason=outcome.reason
            )
            self.journal.resolve(outcome.signature, AttemptState.FAILED)
            self.counters.failed += 1

    # -- batches ------------------------------------------------------------------

    def _valid_vouchers(self, work: BatchWork) -> tuple[list[SignedIntent], list[str]]:
        """Vouchers the program will accept; one bad voucher would fail a whole transaction."""
        good: list[SignedIntent] = []
        problems: list[str] = []
        for v in work.vouchers:
            try:
                v.verify()
                if v.domain != self.domain:
                    raise ValueError("wrong_domain")
                if bytes(self.deployment.channel(v.agent, work.vendor)) != v.channel:
                    raise ValueError("wrong_channel")
            except (ProtocolError, ValueError) as exc:
                reason = exc.reason.value if isinstance(exc, ProtocolError) else str(exc)
                problems.append(f"{v.channel.hex()[:16]}:{reason}")
                continue
            good.append(v)
        return good, problems

    async def settle_batch(self, work: BatchWork) -> bool:
        """Carry one batch to CONFIRMED (True) or, after max_attempts, FAILED (False)."""
        self.counters.batches += 1
        for attempt in self.journal.pending("settle", work.batch_id):
            self.counters.resumed += 1
            await self._record_outcome(work, await self._resolve(attempt, work))
        vouchers, problems = self._valid_vouchers(work)
        if problems:
            self.counters.vouchers_invalid += len(problems)
            log.error("batch %s: invalid vouchers left out: %s", work.batch_id.hex(), problems)
            await self._produce(
                work,
                SettlementStatus.FAILED,
                reason="invalid vouchers not submitted: " + ", ".join(problems)[:900],
            )
        last_reason = ""
        # Only outcomes on-chain count as attempts. An unreachable endpoint raises
        # ChainUnavailableError to the loop, which puts the batch back in the queue: an
        # outage must never make the settler give a batch up.
        for _ in range(self.cfg.max_attempts):
            todo = await self._unsettled(work, vouchers)
            if not todo:
                if not self._confirmed_before(work):
                    # Nothing left to settle (replayed batch, or settled by a later one):
                    # the batch is done; say so, with no channel rows.
                    await self._produce(work, SettlementStatus.CONFIRMED)
                return True
            outcomes = await self._submit_vouchers(work, todo)
            failures = [o for o in outcomes if isinstance(o, NotLanded)]
            if not failures:
                return True
            last_reason = failures[-1].reason
            await asyncio.sleep(self.cfg.poll_interval_seconds * 5)  # then re-read and retry
        self.counters.batches_failed += 1
        log.error(
            "batch %s: gave up after %d attempts: %s",
            work.batch_id.hex(),
            self.cfg.max_attempts,
            last_reason,
        )
        return False

    def _confirmed_before(self, work: BatchWork) -> bool:
        return any(
            a.state is AttemptState.CONFIRMED
            for a in self.journal.attempts("settle", work.batch_id)
        )

    async def _unsettled(
        self, work: BatchWork, vouchers: Sequence[SignedIntent]
    ) -> list[SignedIntent]:
        """Vouchers above their channel's settled cumulative, withdrawing agents first."""
        keys = [Pubkey(v.channel) for v in vouchers]
        datas = await self.chain.accounts(keys)
        todo: list[SignedIntent] = []
        for v, data in zip(vouchers, datas, strict=True):
            state = self.deployment.channel_state(data)
            if state is not None and v.cumulative <= state.settled:
                self.counters.vouchers_skipped += 1
                continue
            todo.append(v)
        withdrawing = self.queue.withdrawing
        if withdrawing:
            todo.sort(key=lambda v: v.agent not in withdrawing)  # stable: order kept otherwise
        return todo

    async def _submit_vouchers(self, work: BatchWork, todo: list[SignedIntent]) -> list[Outcome]:
        payer = self.payer.pubkey()
        prefix = budget_instructions(self.cfg.compute_unit_limit, self.cfg.compute_unit_price)

        def assemble(group: Sequence[SignedIntent]) -> list[Any]:
            return self.deployment.settle_instructions(
                payer=payer,
                vendor=work.vendor,
                root=work.root,
                leaf_count=work.leaf_count,
                total=work.total,
                vouchers=group,
                prefix=prefix,
            )

        tables = []
        if self.tables is not None:
            wanted = [
                *self.deployment.fixed_addresses(),
                Pubkey(work.vendor),
                *self.deployment.per_channel_addresses(work.vendor, (v.agent for v in todo)),
            ]
            try:
                await self.tables.ensure(wanted)
                tables = self.tables.accounts_for(wanted)
            except (TransactionRejectedError, TimeoutError) as exc:
                # Settling without a table still works, with fewer channels per transaction.
                log.warning("lookup table unavailable (%s); settling without one", exc)
        blockhash, last_valid = await self.chain.latest_blockhash()
        try:
            groups = pack(
                todo,
                assemble,
                payer=payer,
                blockhash=blockhash,
                tables=tables,
                max_per_tx=self.cfg.max_channels_per_tx,
            )
        except PackError as exc:
            reason = f"cannot build a transaction: {exc}"
            await self._produce(work, SettlementStatus.FAILED, reason=reason)
            return [NotLanded("", reason)]
        sent: list[tuple[VersionedTransaction, str]] = []
        for group in groups:
            tx = sign(group.message, self.payer)
            signature = str(tx.signatures[0])
            self.journal.record(
                signature=signature,
                kind="settle",
                key=work.batch_id,
                vendor=work.vendor,
                tx=bytes(tx),
                last_valid=last_valid,
            )
            await self._produce(work, SettlementStatus.SUBMITTED, signature=signature)
            self.journal.announced(signature)
            self.counters.transactions += 1
            sent.append((tx, signature))
        outcomes = await asyncio.gather(
            *(self._send_and_confirm(tx, sig, last_valid) for tx, sig in sent)
        )
        for outcome in outcomes:
            await self._record_outcome(work, outcome)
        return list(outcomes)

    async def _resolve(self, attempt: Attempt, work: BatchWork | None) -> Outcome:
        """A transaction the journal holds as pending: rebroadcast it until it lands or expires."""
        if work is not None and not attempt.announced:
            await self._produce(work, SettlementStatus.SUBMITTED, signature=attempt.signature)
            self.journal.announced(attempt.signature)
        tx = VersionedTransaction.from_bytes(attempt.tx)
        return await self._send_and_confirm(tx, attempt.signature, attempt.last_valid)

    async def _send_and_confirm(
        self, tx: VersionedTransaction, signature: str, last_valid: int
    ) -> Outcome:
        try:
            await self.chain.send(tx)
        except TransactionRejectedError as exc:
            # BlockhashNotFound proves nothing (a lagging node says it of fresh blockhashes
            # too): only the block height passing last_valid below tells it can never land.
            inconclusive = (
                "AlreadyProcessed",
                "already been processed",
                "BlockhashNotFound",
                "Blockhash not found",
            )
            if not any(word in exc.err for word in inconclusive):
                # Refused by preflight; it can still land if a copy was sent before (a
                # resumed attempt), so only call it failed if the chain does not have it.
                (status,) = await self.chain.statuses([signature])
                if status is None:
                    return NotLanded(signature, self.explain(exc.err, exc.logs))
        except ChainUnavailableError as exc:
            log.warning("send of %s: %s; polling its status", signature, exc)
        last_send = started = time.monotonic()
        warned = 0
        while True:
            waited = time.monotonic() - started
            if waited > (warned + 1) * self.cfg.confirm_timeout_seconds:
                warned += 1
                log.warning(
                    "%s not confirmed after %.0fs; waiting until block height %d passes",
                    signature,
                    waited,
                    last_valid,
                )
            try:
                (status,) = await self.chain.statuses([signature])
                if status is not None and status.reached(self.chain.commitment):
                    info = await self.chain.transaction(signature)
                    if info is None:
                        await asyncio.sleep(self.cfg.poll_interval_seconds)
                        continue
                    if info.err is not None:
                        return NotLanded(signature, self.explain(info.err, info.logs))
                    events = events_from_logs(info.logs, self.deployment.programs)
                    # A row that paid nothing changed nothing (settled moves by paid); leaving
                    # it out keeps a racing duplicate submission from recording a 0 first.
                    channels = tuple(
                        c for c in self.deployment.settled_channels(events) if c.paid > 0
                    )
                    return Landed(signature, info.slot, channels, info.fee)
                if status is None and await self.chain.block_height() > last_valid:
                    # Past its last valid height it can never land; check once more
                    # in case it landed between the two calls.
                    (status,) = await self.chain.statuses([signature])
                    if status is None:
                        return NotLanded(signature, "expired: blockhash passed", expired=True)
                    continue
                if status is None and time.monotonic() - last_send > REBROADCAST_SECONDS:
                    last_send = time.monotonic()
                    with contextlib.suppress(TransactionRejectedError, ChainUnavailableError):
                        await self.chain.send(tx, preflight=False)
            except ChainUnavailableError as exc:
                log.warning("confirming %s: %s", signature, exc)
            await asyncio.sleep(self.cfg.poll_interval_seconds)

    def explain(self, err: str, logs: Sequence[str] = ()) -> str:
        return self.deployment.explain_error(err, logs)

    # -- proofs --------------------------------------------------------------------

    async def submit_proof(self, work: ProofWork) -> bool:
        """One slash per proof: True when the proof is (now or already) on-chain."""
        proof = work.proof
        if proof is None:
            self.counters.proofs_invalid += 1
            log.error("proof %s refused: %s", work.proof_id.hex(), work.problem)
            return False
        if work.proof_id in self._proofs_done:
            self.counters.proofs_already += 1
            return True
        try:
            verify_proof(proof)
        except ProtocolError as exc:
            self.counters.proofs_invalid += 1
            log.error("proof %s does not verify: %s", work.proof_id.hex(), exc)
            return False
        if proof.first.domain != self.domain:
            self.counters.proofs_invalid += 1
            log.error("proof %s is for another deployment", work.proof_id.hex())
            return False
        record = self.deployment.proof_record(proof.proof_id)
        # As for batches, only on-chain outcomes count as attempts; an unreachable endpoint
        # raises to the loop, which queues the proof again.
        for _ in range(self.cfg.max_attempts):
            for attempt in self.journal.pending("proof", proof.proof_id):
                outcome = await self._resolve(attempt, None)
                self.journal.resolve(
                    attempt.signature,
                    AttemptState.CONFIRMED if isinstance(outcome, Landed) else AttemptState.FAILED,
                )
            if await self.chain.account(record) is not None:
                self._proofs_done.add(proof.proof_id)
                self.counters.proofs_already += 1
                log.info("proof %s is already on-chain", proof.proof_id.hex()[:16])
                return True
            config = await self.chain.account(self.deployment.config())
            if config is None:
                raise ChainUnavailableError(
                    "MachPay config account does not exist (not initialized?)"
                )
            ixs = self.deployment.proof_instructions(
                proof, prover=self.payer.pubkey(), treasury=self.deployment.treasury(config)
            )
            blockhash, last_valid = await self.chain.latest_blockhash()
            tx = sign(compile_message(self.payer.pubkey(), ixs, blockhash), self.payer)
            signature = str(tx.signatures[0])
            self.journal.record(
                signature=signature,
                kind="proof",
                key=proof.proof_id,
                vendor=proof.agent,
                tx=bytes(tx),
                last_valid=last_valid,
            )
            outcome = await self._send_and_confirm(tx, signature, last_valid)
            if isinstance(outcome, Landed):
                self.journal.resolve(outcome.signature, AttemptState.CONFIRMED)
                self._proofs_done.add(proof.proof_id)
                self.counters.proofs_submitted += 1
                self.counters.fees += outcome.fee
                log.info("proof %s slashed in slot %d", proof.proof_id.hex()[:16], outcome.slot)
                return True
            self.journal.resolve(outcome.signature, AttemptState.FAILED)
            log.warning("proof %s: %s", proof.proof_id.hex()[:16], outcome.reason)
            # Loop: the record check tells a concurrent success from a real failure.
        return False

    # -- restart ---------------------------------------------------------------------

    async def resume(self) -> None:
        """Log what the journal holds as pending (each is resolved with its batch or proof);
        forget resolved attempts older than a week (batches.ready keeps 30 days, but a
        redelivered batch is re-checked against the chain anyway)."""
        pruned = self.journal.prune(now_ms() - JOURNAL_KEEP_MS)
        if pruned:
            log.info("journal: forgot %d resolved attempts older than a week", pruned)
        pending = self.journal.pending()
        if pending:
            log.info("journal: %d transactions pending from a previous run", len(pending))
