//! Building MachPay transactions against a [`Chain`]: the deployment set-up,
//! bonds, signed vouchers, the settle and fraud-proof instruction pairs of
//! docs/onchain.md §5–§6, and v0 transactions through an address lookup
//! table. Used by the tier-2 tests and the RPC tests; it only builds
//! transactions, every check is the programs' and the runtime's.

use anchor_lang::{InstructionData, ToAccountMetas};
use machpay_protocol::channel::NATIVE_ASSET;
use machpay_protocol::intent::INTENT_LEN;
use machpay_protocol::Intent;
use solana_address::Address;
use solana_address_lookup_table_interface::instruction as alt;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_message::{v0, AddressLookupTableAccount, Message, VersionedMessage};
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction::Transaction;
use solana_transaction_error::TransactionError;

use crate::chain::{Chain, LandedTransaction};
use crate::programs;

pub const SYSTEM_PROGRAM: Address = solana_sdk_ids::system_program::ID;
pub const INSTRUCTIONS_SYSVAR: Address = solana_sdk_ids::sysvar::instructions::ID;
pub const ED25519_PROGRAM: Address = solana_sdk_ids::ed25519_program::ID;

/// The domain tag of the local deployment (`deployment.domain_tag`).
pub const LOCAL_DOMAIN: [u8; 8] = *b"localnet";
pub const WITHDRAWAL_TIMELOCK: i64 = 3_600;
pub const PROVER_REWARD_BPS: u16 = 1_000;

pub fn machpay_config() -> Address {
    Address::find_program_address(&[b"config"], &machpay::ID).0
}

pub fn bond_config() -> Address {
    Address::find_program_address(&[b"config"], &global_bond::ID).0
}

pub fn bond_authority() -> Address {
    Address::find_program_address(&[b"bond_authority"], &machpay::ID).0
}

pub fn bond_of(agent: &Address) -> Address {
    Address::find_program_address(&[b"bond", agent.as_ref()], &global_bond::ID).0
}

pub fn channel_of(agent: &Address, vendor: &Address) -> Address {
    Address::find_program_address(&[b"channel", agent.as_ref(), vendor.as_ref(), &NATIVE_ASSET], &machpay::ID).0
}

pub fn fraud_record_of(proof_id: &[u8; 32]) -> Address {
    Address::find_program_address(&[b"proof", proof_id], &machpay::ID).0
}

/// A voucher as the settler holds it: the agent's key, its signature and the
/// 97-byte intent message.
#[derive(Clone)]
pub struct Voucher {
    pub agent: Address,
    pub signature: [u8; 64],
    pub message: [u8; INTENT_LEN],
}

impl Voucher {
    pub fn intent(&self) -> Intent {
        Intent::parse(&self.message).expect("test vouchers are well formed")
    }

    /// SHA-256 of the message (the intent id).
    pub fn id(&self) -> [u8; 32] {
        machpay_protocol::intent::intent_id(&self.message)
    }
}

/// Signs an intent for the channel (agent, vendor).
pub fn voucher(agent: &Keypair, vendor: &Address, nonce: u64, cumulative: u64, amount: u64) -> Voucher {
    voucher_with(
        agent,
        Intent {
            domain: LOCAL_DOMAIN,
            channel: channel_of(&agent.pubkey(), vendor).to_bytes(),
            nonce,
            cumulative,
            amount,
            expires_at: i64::MAX,
            context: [nonce as u8; 16],
        },
    )
}

pub fn voucher_with(agent: &Keypair, intent: Intent) -> Voucher {
    let message = intent.to_bytes();
    let signature = agent.sign_message(&message);
    Voucher { agent: agent.pubkey(), signature: signature.into(), message }
}

/// The Ed25519 precompile instruction in the canonical layout (§5).
pub fn precompile_ix(vouchers: &[Voucher]) -> Instruction {
    let entries: Vec<([u8; 32], [u8; 64], [u8; INTENT_LEN])> =
        vouchers.iter().map(|v| (v.agent.to_bytes(), v.signature, v.message)).collect();
    let refs: Vec<(&[u8; 32], &[u8; 64], &[u8; INTENT_LEN])> = entries.iter().map(|(a, s, m)| (a, s, m)).collect();
    Instruction::new_with_bytes(ED25519_PROGRAM, &machpay_protocol::ed25519::build(&refs), Vec::new())
}

/// The MachPay `settle` instruction for `vouchers` (all to `vendor`).
pub fn settle_ix(
    settler: &Address,
    vendor: &Address,
    vouchers: &[Voucher],
    root: [u8; 32],
    leaf_count: u64,
    total: u64,
) -> Instruction {
    let mut accounts = machpay::accounts::Settle {
        settler: *settler,
        vendor: *vendor,
        config: machpay_config(),
        bond_authority: bond_authority(),
        instructions: INSTRUCTIONS_SYSVAR,
        global_bond_program: global_bond::ID,
        system_program: SYSTEM_PROGRAM,
    }
    .to_account_metas(None);
    for v in vouchers {
        accounts.push(AccountMeta::new(channel_of(&v.agent, vendor), false));
        accounts.push(AccountMeta::new(bond_of(&v.agent), false));
    }
    Instruction {
        program_id: machpay::ID,
        accounts,
        data: machpay::instruction::Settle { root, leaf_count, total }.data(),
    }
}

/// Precompile + settle, the pair a settlement transaction carries.
pub fn settle_ixs(settler: &Address, vendor: &Address, vouchers: &[Voucher]) -> Vec<Instruction> {
    let total = vouchers.iter().map(|v| v.intent().amount).sum();
    vec![precompile_ix(vouchers), settle_ix(settler, vendor, vouchers, [9; 32], vouchers.len() as u64, total)]
}

/// Precompile (first, second) + prove_fraud.
pub fn prove_fraud_ixs(
    prover: &Address,
    kind: u8,
    first: &Voucher,
    second: &Voucher,
    treasury: &Address,
) -> Vec<Instruction> {
    let fraud_kind = machpay_protocol::fraud::FraudKind::from_byte(kind).expect("kind 1 or 2");
    let proof_id = machpay_protocol::fraud::proof_id(fraud_kind, &first.id(), &second.id());
    let accounts = machpay::accounts::ProveFraud {
        prover: *prover,
        config: machpay_config(),
        fraud_record: fraud_record_of(&proof_id),
        bond: bond_of(&first.agent),
        treasury: *treasury,
        bond_authority: bond_authority(),
        instructions: INSTRUCTIONS_SYSVAR,
        global_bond_program: global_bond::ID,
        system_program: SYSTEM_PROGRAM,
    }
    .to_account_metas(None);
    vec![
        precompile_ix(&[first.clone(), second.clone()]),
        Instruction {
            program_id: machpay::ID,
            accounts,
            data: machpay::instruction::ProveFraud { kind, proof_id }.data(),
        },
    ]
}

pub fn deposit_ix(agent: &Address, amount: u64) -> Instruction {
    Instruction {
        program_id: global_bond::ID,
        accounts: global_bond::accounts::Deposit {
            agent: *agent,
            bond: bond_of(agent),
            system_program: SYSTEM_PROGRAM,
        }
        .to_account_metas(None),
        data: global_bond::instruction::Deposit { amount }.data(),
    }
}

pub fn request_withdrawal_ix(agent: &Address, amount: u64) -> Instruction {
    Instruction {
        program_id: global_bond::ID,
        accounts: global_bond::accounts::RequestWithdrawal {
            agent: *agent,
            bond: bond_of(agent),
            config: bond_config(),
        }
        .to_account_metas(None),
        data: global_bond::instruction::RequestWithdrawal { amount }.data(),
    }
}

pub fn withdraw_ix(agent: &Address) -> Instruction {
    Instruction {
        program_id: global_bond::ID,
        accounts: global_bond::accounts::Withdraw { agent: *agent, bond: bond_of(agent) }.to_account_metas(None),
        data: global_bond::instruction::Withdraw {}.data(),
    }
}

/// A chain with the three programs loaded and both configs initialized.
pub struct MachPayNet {
    pub chain: Chain,
    pub admin: Keypair,
    pub treasury: Address,
}

impl Default for MachPayNet {
    fn default() -> Self {
        Self::new()
    }
}

impl MachPayNet {
    pub fn new() -> Self {
        let mut chain = Chain::new();
        programs::load(&mut chain);
        let admin = Keypair::new();
        let treasury = Address::new_unique();
        chain.airdrop(&admin.pubkey(), 100_000_000_000).expect("airdrop");
        chain.airdrop(&treasury, 1_000_000_000).expect("airdrop");
        let mut net = Self { chain, admin, treasury };
        let init_bond = Instruction {
            program_id: global_bond::ID,
            accounts: global_bond::accounts::Initialize {
                admin: net.admin.pubkey(),
                config: bond_config(),
                system_program: SYSTEM_PROGRAM,
            }
            .to_account_metas(None),
            data: global_bond::instruction::Initialize { withdrawal_timelock: WITHDRAWAL_TIMELOCK }.data(),
        };
        let init_machpay = Instruction {
            program_id: machpay::ID,
            accounts: machpay::accounts::Initialize {
                admin: net.admin.pubkey(),
                config: machpay_config(),
                system_program: SYSTEM_PROGRAM,
            }
            .to_account_metas(None),
            data: machpay::instruction::Initialize {
                domain: LOCAL_DOMAIN,
                treasury: net.treasury,
                prover_reward_bps: PROVER_REWARD_BPS,
            }
            .data(),
        };
        let admin = net.admin.insecure_clone();
        net.send(&[init_bond, init_machpay], &admin, &[]).expect("configs initialize");
        net
    }

    /// A funded key.
    pub fn funded(&mut self, lamports: u64) -> Keypair {
        let key = Keypair::new();
        self.chain.airdrop(&key.pubkey(), lamports).expect("airdrop");
        key
    }

    /// An agent with `bond` lamports deposited in its GlobalBond bond.
    pub fn agent_with_bond(&mut self, bond: u64) -> Keypair {
        let agent = self.funded(bond + 1_000_000_000);
        self.send(&[deposit_ix(&agent.pubkey(), bond)], &agent, &[]).expect("deposit");
        agent
    }

    /// The `balance` field of an agent's bond (offset 40, docs/onchain.md §3).
    pub fn bond_balance(&self, agent: &Address) -> u64 {
        let account = self.chain.account(&bond_of(agent)).expect("bond exists");
        u64::from_le_bytes(account.data[40..48].try_into().unwrap())
    }

    /// The `settled` field of a channel (offset 104), 0 when it does not exist.
    pub fn channel_settled(&self, agent: &Address, vendor: &Address) -> u64 {
        self.chain
            .account(&channel_of(agent, vendor))
            .map(|a| u64::from_le_bytes(a.data[104..112].try_into().unwrap()))
            .unwrap_or(0)
    }

    /// A legacy transaction paid by `payer`; `Err` carries the transaction
    /// error whether it was rejected or landed failed.
    pub fn send(
        &mut self,
        ixs: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<LandedTransaction, (TransactionError, Vec<String>)> {
        let blockhash = self.chain.latest_blockhash();
        let message = Message::new_with_blockhash(ixs, Some(&payer.pubkey()), &blockhash);
        let mut all: Vec<&Keypair> = vec![payer];
        all.extend_from_slice(signers);
        let tx = Transaction::new(&all, message, blockhash);
        self.submit(VersionedTransaction::from(tx))
    }

    pub fn submit(&mut self, tx: VersionedTransaction) -> Result<LandedTransaction, (TransactionError, Vec<String>)> {
        match self.chain.send(tx) {
            Ok(landed) if landed.err.is_none() => Ok(landed.clone()),
            Ok(landed) => Err((landed.err.clone().unwrap(), landed.logs.clone())),
            Err(rejection) => Err((rejection.err, rejection.logs)),
        }
    }

    /// Creates and extends an address lookup table holding `addresses` with
    /// real ALT-program transactions, then moves one slot on so the new
    /// entries are usable.
    pub fn lookup_table(&mut self, authority: &Keypair, addresses: &[Address]) -> AddressLookupTableAccount {
        let recent_slot = self.chain.slot() - 1;
        let (create, table) = alt::create_lookup_table(authority.pubkey(), authority.pubkey(), recent_slot);
        self.send(&[create], authority, &[]).expect("lookup table created");
        for chunk in addresses.chunks(20) {
            let extend = alt::extend_lookup_table(table, authority.pubkey(), Some(authority.pubkey()), chunk.to_vec());
            self.send(&[extend], authority, &[]).expect("lookup table extended");
        }
        self.chain.warp(0, 1);
        AddressLookupTableAccount { key: table, addresses: addresses.to_vec() }
    }

    /// A signed v0 transaction using `tables`.
    pub fn v0_transaction(
        &self,
        ixs: &[Instruction],
        payer: &Keypair,
        tables: &[AddressLookupTableAccount],
    ) -> VersionedTransaction {
        let message = v0::Message::try_compile(&payer.pubkey(), ixs, tables, self.chain.latest_blockhash())
            .expect("v0 message compiles");
        VersionedTransaction::try_new(VersionedMessage::V0(message), &[payer]).expect("signs")
    }
}
