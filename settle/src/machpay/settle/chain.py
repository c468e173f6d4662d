"""The few Solana JSON-RPC calls the settler makes, typed, over solana-py's AsyncClient.

Works against any endpoint (a validator, an RPC provider, the local runtime
of ``machpay localnet``): nothing here assumes a particular cluster. Calls
that fail at the transport level raise :class:`ChainUnavailableError` (retry
later); a transaction the cluster refuses raises :class:`TransactionRejectedError`
with the error and logs (preflight), which is a fact about the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

__all__ = [
    "Chain",
    "ChainUnavailableError",
    "SignatureInfo",
    "TransactionInfo",
    "TransactionRejectedError",
    "TxStatus",
]

CommitmentName = Literal["processed", "confirmed", "finalized"]
_RANK = {"processed": 0, "confirmed": 1, "finalized": 2}


class ChainUnavailableError(Exception):
    """The RPC endpoint could not be reached or answered garbage; try again later."""


class TransactionRejectedError(Exception):
    """The cluster refused the transaction (preflight): ``err`` and ``logs`` say why."""

    def __init__(self, err: str, logs: Sequence[str]) -> None:
        super().__init__(err)
        self.err = err
        self.logs = list(logs)


@dataclass(frozen=True, slots=True)
class TxStatus:
    slot: int
    err: str | None
    commitment: str | None
    """processed / confirmed / finalized (None from endpoints that omit it)."""

    def reached(self, commitment: CommitmentName) -> bool:
        if self.commitment is None:
            return True
        return _RANK.get(self.commitment, 0) >= _RANK[commitment]


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    signature: str
    slot: int
    block_time: int | None
    fee: int
    err: str | None
    logs: tuple[str, ...]
    pre_balances: tuple[int, ...]
    post_balances: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    signature: str
    slot: int
    err: str | None
    block_time: int | None


def _commitment_name(status: Any) -> str | None:
    if status is None:
        return None
    text = str(status).rsplit(".", 1)[-1].lower()
    return text if text in _RANK else None


class Chain:
    """One RPC endpoint at one commitment."""

    def __init__(self, url: str, commitment: CommitmentName = "confirmed") -> None:
        self.url = url
        self.commitment: CommitmentName = commitment
        self._commitment = Commitment(commitment)
        self.client = AsyncClient(url, commitment=self._commitment, timeout=30)

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> Chain:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except SolanaRpcException as exc:
            raise ChainUnavailableError(f"{self.url}: {exc}") from exc
        except (TimeoutError, OSError) as exc:
            raise ChainUnavailableError(f"{self.url}: {exc}") from exc

    async def healthy(self) -> bool:
        try:
            return bool(await self._call(self.client.is_connected()))
        except ChainUnavailableError:
            return False

    async def accounts(self, keys: Sequence[Pubkey]) -> list[bytes | None]:
        """Account data of each key (None where no account exists), 100 keys per call."""
        out: list[bytes | None] = []
        for start in range(0, len(keys), 100):
            chunk = list(keys[start : start + 100])
            resp = await self._call(self.client.get_multiple_accounts(chunk, self._commitment))
            out.extend(None if acc is None else bytes(acc.data) for acc in resp.value)
        return out

    async def account(self, key: Pubkey) -> bytes | None:
        return (await self.accounts([key]))[0]

    async def balance(self, key: Pubkey) -> int:
        resp = await self._call(self.client.get_balance(key, self._commitment))
        return int(resp.value)

    async def latest_blockhash(self) -> tuple[Hash, int]:
        """(blockhash, last block height at which a transaction using it can land)."""
        resp = await self._call(self.client.get_latest_blockhash(self._commitment))
        return resp.value.blockhash, int(resp.value.last_valid_block_height)

    async def block_height(self) -> int:
        resp = await self._call(self.client.get_block_height(self._commitment))
        return int(resp.value)

    async def slot(self) -> int:
        resp = await self._call(self.client.get_slot(self._commitment))
        return int(resp.value)

    async def rent_exempt(self, size: int) -> int:
        resp = await self._call(self.client.get_minimum_balance_for_rent_exemption(size))
        return int(resp.value)

    async def send(self, tx: VersionedTransaction, *, preflight: bool = True) -> str:
        """Send; the signature (known before sending: the payer's) on acceptance."""
        opts = TxOpts(
            skip_preflight=not preflight,
            preflight_commitment=self._commitment,
            max_retries=0,  # we rebroadcast ourselves until the blockhash expires
        )
        try:
            resp = await self._call(self.client.send_raw_transaction(bytes(tx), opts))
        except RPCException as exc:
            raise _rejected(exc) from exc
        return str(resp.value)

    async def statuses(self, signatures: Sequence[str]) -> list[TxStatus | None]:
        out: list[TxStatus | None] = []
        for start in range(0, len(signatures), 256):
            chunk = [Signature.from_string(s) for s in signatures[start : start + 256]]
            resp = await self._call(
                self.client.get_signature_statuses(chunk, search_transaction_history=True)
            )
            for st in resp.value:
                if st is None:
                    out.append(None)
                    continue
                out.append(
                    TxStatus(
                        slot=int(st.slot),
                        err=None if st.err is None else str(st.err),
                        commitment=_commitment_name(st.confirmation_status),
                    )
                )
        return out

    async def transaction(self, signature: str) -> TransactionInfo | None:
        resp = await self._call(
            self.client.get_transaction(
                Signature.from_string(signature),
                encoding="json",
                commitment=self._commitment,
                max_supported_transaction_version=0,
            )
        )
        value = resp.value
        if value is None:
            return None
        meta = value.transaction.meta
        if meta is None:
            raise ChainUnavailableError(f"{self.url}: transaction {signature} has no meta")
        return TransactionInfo(
            signature=signature,
            slot=int(value.slot),
            block_time=None if value.block_time is None else int(value.block_time),
            fee=int(meta.fee),
            err=None if meta.err is None else str(meta.err),
            logs=tuple(meta.log_messages or ()),
            pre_balances=tuple(int(b) for b in meta.pre_balances),
            post_balances=tuple(int(b) for b in meta.post_balances),
        )

    async def signatures_for(
        self,
        address: Pubkey,
        *,
        before: str | None = None,
        until: str | None = None,
        limit: int = 1000,
    ) -> list[SignatureInfo]:
        """Newest first, as the RPC answers."""
        resp = await self._call(
            self.client.get_signatures_for_address(
                address,
                before=Signature.from_string(before) if before else None,
                until=Signature.from_string(until) if until else None,
                limit=limit,
                commitment=self._commitment,
            )
        )
        return [
            SignatureInfo(
                signature=str(s.signature),
                slot=int(s.slot),
                err=None if s.err is None else str(s.err),
                block_time=None if s.block_time is None else int(s.block_time),
            )
            for s in resp.value
        ]

    async def airdrop(self, key: Pubkey, lamports: int) -> str:
        resp = await self._call(self.client.request_airdrop(key, lamports, self._commitment))
        return str(resp.value)


def _rejected(exc: RPCException) -> TransactionRejectedError:
    """The preflight error with its logs, from solana-py's exception payload."""
    payload = exc.args[0] if exc.args else exc
    message = getattr(payload, "message", None) or str(payload)
    data = getattr(payload, "data", None)
    logs: list[str] = []
    err = message
    if data is not None:
        logs = list(getattr(data, "logs", None) or [])
        inner = getattr(data, "err", None)
        if inner is not None:
            err = f"{message}: {inner}"
    return TransactionRejectedError(str(err), logs)
