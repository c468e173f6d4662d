"""solana-py (AsyncClient + solders) against machpay-localnet: every RPC method the
settler and the SDK use, parsed by the real client, with the real MachPay programs
(a bond deposit, a settlement through a lookup table, a preflight failure)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solana.rpc.models import MemcmpOpts, TxOpts
from solders.address_lookup_table_account import (
    ID as LOOKUP_TABLE_PROGRAM,
)
from solders.address_lookup_table_account import (
    AddressLookupTable,
    AddressLookupTableAccount,
    derive_lookup_table_address,
)
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.sysvar import CLOCK, INSTRUCTIONS
from solders.transaction import VersionedTransaction

from machpay.protocol.intent import Intent, channel_address
from machpay.protocol.keys import Keypair as AgentKey

pytestmark = pytest.mark.integration

SOL = 1_000_000_000
MACHPAY = Pubkey.from_string("MachPay111111111111111111111111111111111111")
GLOBAL_BOND = Pubkey.from_string("GBond11111111111111111111111111111111111111")
ED25519 = Pubkey.from_string("Ed25519SigVerify111111111111111111111111111")
CHANNEL_DISCRIMINATOR = bytes.fromhex("319f636adc57db58")


def _ix_discriminator(name: str) -> bytes:
    return hashlib.sha256(f"global:{name}".encode()).digest()[:8]


def _pda(seeds: list[bytes], program: Pubkey) -> Pubkey:
    return Pubkey.find_program_address(seeds, program)[0]


MACHPAY_CONFIG = _pda([b"config"], MACHPAY)
BOND_CONFIG = _pda([b"config"], GLOBAL_BOND)
BOND_AUTHORITY = _pda([b"bond_authority"], MACHPAY)


def _bond(agent: Pubkey) -> Pubkey:
    return _pda([b"bond", bytes(agent)], GLOBAL_BOND)


def _channel(agent: Pubkey, vendor: Pubkey) -> Pubkey:
    return Pubkey.from_bytes(
        channel_address(program_id=bytes(MACHPAY), agent=bytes(agent), vendor=bytes(vendor))
    )


def _b58(data: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


@pytest.fixture
async def client(localnet_url: str) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(localnet_url)
    try:
        yield c
    finally:
        await c.close()


async def _raw(url: str, method: str, params: list[object]) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        )
    body: dict[str, Any] = reply.json()
    return body


async def _funded(client: AsyncClient, lamports: int = 10 * SOL) -> Keypair:
    key = Keypair()
    sig = (await client.request_airdrop(key.pubkey(), lamports)).value
    status = (await client.get_signature_statuses([sig])).value[0]
    assert status is not None
    assert status.err is None
    return key


async def _send(client: AsyncClient, payer: Keypair, ixs: list[Instruction]) -> Signature:
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    tx = VersionedTransaction(Message.new_with_blockhash(ixs, payer.pubkey(), blockhash), [payer])
    return (await client.send_transaction(tx)).value


async def _domain(client: AsyncClient, admin: Keypair) -> bytes:
    """The deployment domain: the session's node may already be initialized by another test."""
    account = (await client.get_account_info(MACHPAY_CONFIG)).value
    if account is not None:
        return bytes(account.data[72:80])
    domain = b"localnet"
    bond_init = Instruction(
        GLOBAL_BOND,
        _ix_discriminator("initialize") + struct.pack("<q", 3600),
        [
            AccountMeta(admin.pubkey(), True, True),
            AccountMeta(BOND_CONFIG, False, True),
            AccountMeta(SYSTEM_PROGRAM, False, False),
        ],
    )
    machpay_init = Instruction(
        MACHPAY,
        _ix_discriminator("initialize")
        + domain
        + bytes(Pubkey.new_unique())
        + struct.pack("<H", 1000),
        [
            AccountMeta(admin.pubkey(), True, True),
            AccountMeta(MACHPAY_CONFIG, False, True),
            AccountMeta(SYSTEM_PROGRAM, False, False),
        ],
    )
    await _send(client, admin, [bond_init, machpay_init])
    return domain


def _deposit(agent: Pubkey, amount: int) -> Instruction:
    return Instruction(
        GLOBAL_BOND,
        _ix_discriminator("deposit") + struct.pack("<Q", amount),
        [
            AccountMeta(agent, True, True),
            AccountMeta(_bond(agent), False, True),
            AccountMeta(SYSTEM_PROGRAM, False, False),
        ],
    )


def _settle_ixs(
    settler: Pubkey, vendor: Pubkey, agent: AgentKey, message: bytes
) -> list[Instruction]:
    """Ed25519 precompile (canonical layout, docs/onchain.md §5, K = 1) + settle."""
    base = 2 + 14
    offsets = struct.pack("<7H", base + 32, 0xFFFF, base, 0xFFFF, base + 96, len(message), 0xFFFF)
    precompile = Instruction(
        ED25519, bytes([1, 0]) + offsets + agent.public + agent.sign(message) + message, []
    )
    agent_key = Pubkey.from_bytes(agent.public)
    settle = Instruction(
        MACHPAY,
        _ix_discriminator("settle") + bytes(32) + struct.pack("<QQ", 1, 1),
        [
            AccountMeta(settler, True, True),
            AccountMeta(vendor, False, True),
            AccountMeta(MACHPAY_CONFIG, False, False),
            AccountMeta(BOND_AUTHORITY, False, False),
            AccountMeta(INSTRUCTIONS, False, False),
            AccountMeta(GLOBAL_BOND, False, False),
            AccountMeta(SYSTEM_PROGRAM, False, False),
            AccountMeta(_channel(agent_key, vendor), False, True),
            AccountMeta(_bond(agent_key), False, True),
        ],
    )
    return [precompile, settle]


async def _lookup_table(
    client: AsyncClient, url: str, authority: Keypair, addresses: list[Pubkey]
) -> AddressLookupTableAccount:
    recent = (await client.get_slot()).value
    table, bump = derive_lookup_table_address(authority.pubkey(), recent)
    metas = [
        AccountMeta(table, False, True),
        AccountMeta(authority.pubkey(), True, False),
        AccountMeta(authority.pubkey(), True, True),
        AccountMeta(SYSTEM_PROGRAM, False, False),
    ]
    create = Instruction(LOOKUP_TABLE_PROGRAM, struct.pack("<IQB", 0, recent, bump), metas)
    extend = Instruction(
        LOOKUP_TABLE_PROGRAM,
        struct.pack("<IQ", 2, len(addresses)) + b"".join(bytes(a) for a in addresses),
        metas,
    )
    await _send(client, authority, [create])
    await _send(client, authority, [extend])
    # Entries added in a slot are usable from the next one.
    await _raw(url, "machpayLocalnetWarp", [{"slots": 1}])
    account = (await client.get_account_info(table)).value
    assert account is not None
    assert account.owner == LOOKUP_TABLE_PROGRAM
    assert list(AddressLookupTable.deserialize(bytes(account.data)).addresses) == addresses
    return AddressLookupTableAccount(table, addresses)


async def test_cluster_queries_parse(client: AsyncClient, localnet_url: str) -> None:
    assert await client.is_connected()
    version = (await client.get_version()).value
    assert version.solana_core
    slot = (await client.get_slot()).value
    latest = (await client.get_latest_blockhash()).value
    assert latest.last_valid_block_height >= slot
    # solana-py has no isBlockhashValid; the settler's own client calls it raw.
    valid = await _raw(localnet_url, "isBlockhashValid", [str(latest.blockhash)])
    assert valid["result"] == {"context": valid["result"]["context"], "value": True}
    unknown = await _raw(localnet_url, "isBlockhashValid", [str(Hash.new_unique())])
    assert unknown["result"]["value"] is False
    rent = (await client.get_minimum_balance_for_rent_exemption(83)).value
    assert rent == (128 + 83) * 3480 * 2
    key = await _funded(client, 2 * SOL)
    assert (await client.get_balance(key.pubkey())).value == 2 * SOL
    accounts = (await client.get_multiple_accounts([key.pubkey(), Pubkey.new_unique()])).value
    assert accounts[0] is not None
    assert accounts[0].lamports == 2 * SOL
    assert accounts[1] is None
    clock = (await client.get_account_info(CLOCK)).value
    assert clock is not None
    assert len(clock.data) == 40


async def test_bond_and_settlement_through_a_lookup_table(
    client: AsyncClient, localnet_url: str
) -> None:
    admin = await _funded(client)
    domain = await _domain(client, admin)
    settler = await _funded(client)
    vendor = (await _funded(client, SOL)).pubkey()
    agent_sol = await _funded(client, 5 * SOL)
    agent = AgentKey.from_seed(bytes(agent_sol.secret()))
    assert agent.public == bytes(agent_sol.pubkey())

    await _send(client, agent_sol, [_deposit(agent_sol.pubkey(), 3 * SOL)])
    bond = (await client.get_account_info(_bond(agent_sol.pubkey()))).value
    assert bond is not None
    assert bond.owner == GLOBAL_BOND
    assert struct.unpack_from("<Q", bytes(bond.data), 40)[0] == 3 * SOL

    channel = _channel(agent_sol.pubkey(), vendor)
    table = await _lookup_table(
        client, localnet_url, settler, [vendor, channel, _bond(agent_sol.pubkey())]
    )
    intent = Intent(
        domain=domain,
        channel=bytes(channel),
        nonce=1,
        cumulative=4_000_000,
        amount=4_000_000,
        expires_at=2**62,
        context=bytes(16),
    )
    ixs = _settle_ixs(settler.pubkey(), vendor, agent, intent.encode())
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    tx = VersionedTransaction(
        MessageV0.try_compile(settler.pubkey(), ixs, [table], blockhash), [settler]
    )
    simulated = (await client.simulate_transaction(tx, sig_verify=True)).value
    assert simulated.err is None, simulated.logs
    vendor_before = (await client.get_balance(vendor)).value

    sig = (await client.send_transaction(tx)).value

    assert (await client.get_balance(vendor)).value == vendor_before + 4_000_000
    got = (await client.get_transaction(sig, max_supported_transaction_version=0)).value
    assert got is not None
    meta = got.transaction.meta
    assert meta is not None
    assert meta.err is None
    assert meta.fee == 10_000, "fee payer + one precompile signature"
    logs = meta.log_messages or []
    assert any(line.startswith("Program data: ") for line in logs), logs
    assert logs[:2] == [f"Program {MACHPAY} invoke [1]", "Program log: Instruction: Settle"], logs
    debit = logs.index("Program log: Instruction: Debit")
    assert logs[debit - 1] == f"Program {GLOBAL_BOND} invoke [2]", "msg! lines keep their place"
    assert any(line == f"Program {GLOBAL_BOND} invoke [2]" for line in logs), logs
    assert meta.loaded_addresses is not None
    assert len(meta.loaded_addresses.writable) == 3
    history = (await client.get_signatures_for_address(MACHPAY, limit=5)).value
    assert history[0].signature == sig

    channels = (
        await client.get_program_accounts(
            MACHPAY,
            encoding="base64",
            filters=[
                MemcmpOpts(offset=0, bytes=_b58(CHANNEL_DISCRIMINATOR)),
                MemcmpOpts(offset=8, bytes=str(agent_sol.pubkey())),
                121,
            ],
        )
    ).value
    assert [c.pubkey for c in channels] == [channel]
    assert struct.unpack_from("<Q", bytes(channels[0].account.data), 104)[0] == 4_000_000


async def test_a_failing_transaction_raises_with_the_program_logs(client: AsyncClient) -> None:
    agent = await _funded(client, SOL)
    withdraw = Instruction(
        GLOBAL_BOND,
        _ix_discriminator("withdraw"),
        [AccountMeta(agent.pubkey(), True, True), AccountMeta(_bond(agent.pubkey()), False, True)],
    )
    with pytest.raises(RPCException) as raised:
        await _send(client, agent, [withdraw])
    text = str(raised.value)
    assert "Transaction simulation failed" in text, text
    assert str(GLOBAL_BOND) in text, "the program's logs come with the error"
    # Anchor's msg! lines reach the logs as on a validator (stdout_logs.rs).
    assert "Program log: Instruction: Withdraw" in text, text
    assert "Program log: AnchorError caused by account: bond" in text, text
    assert (await client.get_balance(agent.pubkey())).value == SOL, "preflight charges nothing"

    blockhash = (await client.get_latest_blockhash()).value.blockhash
    tx = VersionedTransaction(
        Message.new_with_blockhash([withdraw], agent.pubkey(), blockhash), [agent]
    )
    sig = (await client.send_transaction(tx, opts=TxOpts(skip_preflight=True))).value
    status = (await client.get_signature_statuses([sig])).value[0]
    assert status is not None
    assert status.err is not None
    assert (await client.get_balance(agent.pubkey())).value == SOL - 5_000


async def test_warp_moves_the_clock_programs_read(client: AsyncClient, localnet_url: str) -> None:
    def unix_time(data: bytes) -> int:
        return int(struct.unpack_from("<q", data, 32)[0])

    before = (await client.get_account_info(CLOCK)).value
    assert before is not None
    reply = await _raw(localnet_url, "machpayLocalnetWarp", [{"seconds": 600, "slots": 3}])
    assert "result" in reply, reply
    after = (await client.get_account_info(CLOCK)).value
    assert after is not None
    assert unix_time(bytes(after.data)) >= unix_time(bytes(before.data)) + 600
    bad = await _raw(localnet_url, "machpayLocalnetWarp", [{"seconds": "soon"}])
    assert isinstance(bad.get("error"), dict)
    assert bad["error"]["code"] == -32602


async def test_unknown_methods_and_bad_params_follow_json_rpc(localnet_url: str) -> None:
    missing = await _raw(localnet_url, "getNoSuchThing", [])
    assert isinstance(missing["error"], dict)
    assert missing["error"]["code"] == -32601
    bad = await _raw(localnet_url, "getBalance", ["not a key"])
    assert isinstance(bad["error"], dict)
    assert bad["error"]["code"] == -32602
    with pytest.raises(SolanaRpcException):
        await AsyncClient("http://127.0.0.1:1").get_slot()
