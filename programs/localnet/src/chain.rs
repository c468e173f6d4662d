//! A single-node chain around LiteSVM: every landed transaction gets its own
//! slot, a fresh blockhash and a clock that moves with wall time; recent
//! blockhashes stay valid for [`BLOCKHASH_WINDOW`] slots like on a validator;
//! landed transactions are kept with what `getTransaction`,
//! `getSignatureStatuses` and `getSignaturesForAddress` answer.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use litesvm::types::{FailedTransactionMetadata, TransactionMetadata};
use litesvm::LiteSVM;
use solana_account::Account;
use solana_address::Address;
use solana_address_lookup_table_interface::state::AddressLookupTable;
use solana_clock::Clock;
use solana_hash::Hash;
use solana_message::inner_instruction::InnerInstructionsList;
use solana_signature::Signature;
use solana_slot_hashes::SlotHashes;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_error::TransactionError;

use solana_keypair::Keypair;
use solana_program_runtime::solana_sbpf::program::BuiltinFunctionDefinition;
use solana_signer::Signer;

use crate::bridge::{self, NativeEntry};

/// Lamports the faucet starts with (`requestAirdrop` pays from it).
pub const FAUCET_LAMPORTS: u64 = 500_000_000 * 1_000_000_000;

/// How many slots a blockhash stays usable (the validator's
/// `MAX_PROCESSING_AGE`).
pub const BLOCKHASH_WINDOW: usize = 150;

/// LiteSVM's default fee structure (as on mainnet): 5,000 lamports per signature.
pub const LAMPORTS_PER_SIGNATURE: u64 = 5_000;

/// Signatures kept per address for `getSignaturesForAddress`.
const SIGNATURES_PER_ADDRESS: usize = 10_000;

/// Landed transactions kept for `getTransaction` and statuses (oldest go
/// first), so a long-running node's memory stays bounded. A validator
/// without a ledger archive forgets old transactions too.
pub const TRANSACTIONS_KEPT: usize = 50_000;

/// A transaction the chain has executed and included in a slot.
#[derive(Debug, Clone)]
pub struct LandedTransaction {
    pub signature: Signature,
    pub slot: u64,
    pub block_time: i64,
    pub transaction: VersionedTransaction,
    /// Static keys, then keys loaded from lookup tables (writable, readonly).
    pub account_keys: Vec<Address>,
    pub loaded_writable: Vec<Address>,
    pub loaded_readonly: Vec<Address>,
    pub pre_balances: Vec<u64>,
    pub post_balances: Vec<u64>,
    pub err: Option<TransactionError>,
    pub fee: u64,
    pub logs: Vec<String>,
    pub compute_units_consumed: u64,
    pub inner_instructions: InnerInstructionsList,
}

/// Why a transaction did not land, with what a validator reports alongside.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub err: TransactionError,
    pub logs: Vec<String>,
    pub compute_units_consumed: u64,
}

/// What a simulation tells.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub err: Option<TransactionError>,
    pub logs: Vec<String>,
    pub compute_units_consumed: u64,
    pub post_accounts: Vec<(Address, Account)>,
}

pub struct Chain {
    svm: LiteSVM,
    slot: u64,
    /// Blockhash of each recent slot, oldest first.
    recent_blockhashes: VecDeque<(Hash, u64)>,
    transactions: HashMap<Signature, LandedTransaction>,
    /// Landing order of `transactions`, oldest first.
    landing_order: VecDeque<Signature>,
    by_address: HashMap<Address, VecDeque<Signature>>,
    /// Seconds added to wall time by `warp` (timelock tests).
    clock_offset: i64,
    /// Pays airdrops with ordinary System transfers.
    faucet: Keypair,
    genesis_hash: Hash,
}

fn wall_clock_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// A chain with LiteSVM's builtins, default programs (SPL token, memo,
    /// address lookup tables) and precompiles (Ed25519, secp256k1/r1), with
    /// signature verification on.
    pub fn new() -> Self {
        let svm = LiteSVM::new()
            .with_sigverify(true)
            // The chain checks blockhash age itself, over a window of recent
            // slots; LiteSVM alone accepts only the latest blockhash.
            .with_blockhash_check(false)
            // Kept by the chain; LiteSVM's own history is only used to tell
            // whether a failed transaction was included (it paid its fee).
            .with_transaction_history(64);
        let mut chain = Self {
            svm,
            slot: 0,
            recent_blockhashes: VecDeque::new(),
            transactions: HashMap::new(),
            landing_order: VecDeque::new(),
            by_address: HashMap::new(),
            clock_offset: 0,
            faucet: Keypair::new(),
            genesis_hash: Hash::default(),
        };
        let faucet_account = Account {
            lamports: FAUCET_LAMPORTS,
            data: Vec::new(),
            owner: solana_sdk_ids::system_program::id(),
            executable: false,
            rent_epoch: 0,
        };
        chain.svm.set_account(chain.faucet.pubkey(), faucet_account).expect("a system account is always valid");
        chain.start_slot(1);
        chain.genesis_hash = chain.svm.latest_blockhash();
        chain
    }

    /// Loads a natively compiled program (an Anchor `entry`) at `program_id`.
    pub fn add_native_program(&mut self, program_id: Address, entry: NativeEntry) {
        bridge::register(program_id, entry);
        self.svm.add_builtin(program_id, <bridge::NativeProgram as BuiltinFunctionDefinition<_>>::register);
    }

    pub fn svm(&self) -> &LiteSVM {
        &self.svm
    }

    /// Direct state access for tests and the airdrop path.
    pub fn svm_mut(&mut self) -> &mut LiteSVM {
        &mut self.svm
    }

    /// The slot being filled: the next transaction lands in it.
    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// The last completed slot (the one of the latest landed transaction):
    /// what `getSlot` reports, and present in the SlotHashes sysvar.
    pub fn processed_slot(&self) -> u64 {
        self.slot.saturating_sub(1)
    }

    pub fn clock(&self) -> Clock {
        self.svm.get_sysvar::<Clock>()
    }

    /// The blockhash of the first slot.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    pub fn transaction_count(&self) -> usize {
        self.transactions.len()
    }

    /// What `message` would pay: the base fee per signature, counting the
    /// signatures that precompile instructions verify, as the runtime does
    /// (compute-unit prices are not added).
    pub fn fee_for(&self, message: &solana_message::VersionedMessage) -> u64 {
        let per_signature = LAMPORTS_PER_SIGNATURE;
        let keys = message.static_account_keys();
        let precompiles = [
            solana_sdk_ids::ed25519_program::id(),
            solana_sdk_ids::secp256k1_program::id(),
            solana_sdk_ids::secp256r1_program::id(),
        ];
        let precompile_signatures: u64 = message
            .instructions()
            .iter()
            .filter(|ix| keys.get(ix.program_id_index as usize).is_some_and(|k| precompiles.contains(k)))
            .map(|ix| u64::from(ix.data.first().copied().unwrap_or(0)))
            .sum();
        per_signature * (u64::from(message.header().num_required_signatures) + precompile_signatures)
    }

    pub fn latest_blockhash(&self) -> Hash {
        self.svm.latest_blockhash()
    }

    /// The last slot in which `blockhash` can still be used.
    pub fn last_valid_slot(&self, blockhash: &Hash) -> Option<u64> {
        self.recent_blockhashes
            .iter()
            .find(|(hash, _)| hash == blockhash)
            .map(|(_, slot)| slot + BLOCKHASH_WINDOW as u64)
    }

    /// Whether a transaction signed with `blockhash` can still land: its slot
    /// is at most [`BLOCKHASH_WINDOW`] slots old (a warp ages it too).
    pub fn is_blockhash_valid(&self, blockhash: &Hash) -> bool {
        self.last_valid_slot(blockhash).is_some_and(|last| last >= self.slot)
    }

    pub fn account(&self, address: &Address) -> Option<Account> {
        self.svm.get_account(address).filter(|a| a.lamports > 0)
    }

    pub fn balance(&self, address: &Address) -> u64 {
        self.svm.get_balance(address).unwrap_or(0)
    }

    pub fn transaction(&self, signature: &Signature) -> Option<&LandedTransaction> {
        self.transactions.get(signature)
    }

    /// Signatures that touched `address`, newest first.
    pub fn signatures_for(&self, address: &Address) -> Vec<&LandedTransaction> {
        self.by_address
            .get(address)
            .map(|sigs| sigs.iter().rev().filter_map(|s| self.transactions.get(s)).collect())
            .unwrap_or_default()
    }

    /// Moves the clock `seconds` ahead of wall time and advances `slots` slots.
    pub fn warp(&mut self, seconds: i64, slots: u64) {
        self.clock_offset = self.clock_offset.saturating_add(seconds);
        self.start_slot(self.slot + slots.max(1));
    }

    /// Ends the current slot and starts `slot`: new blockhash, slot hashes,
    /// clock (never going back).
    fn start_slot(&mut self, slot: u64) {
        if self.slot > 0 {
            let mut slot_hashes = self.svm.get_sysvar::<SlotHashes>();
            slot_hashes.add(self.slot, self.svm.latest_blockhash());
            self.svm.set_sysvar(&slot_hashes);
            self.svm.expire_blockhash();
        }
        self.slot = slot;
        let mut clock = self.svm.get_sysvar::<Clock>();
        let now = wall_clock_seconds().saturating_add(self.clock_offset);
        clock.slot = slot;
        clock.unix_timestamp = clock.unix_timestamp.max(now);
        if clock.epoch_start_timestamp == 0 {
            clock.epoch_start_timestamp = clock.unix_timestamp;
        }
        self.svm.set_sysvar(&clock);
        self.recent_blockhashes.push_back((self.svm.latest_blockhash(), slot));
        while self.recent_blockhashes.len() > BLOCKHASH_WINDOW {
            self.recent_blockhashes.pop_front();
        }
    }

    /// Static keys plus the keys a v0 message loads from lookup tables.
    fn resolve_keys(&self, tx: &VersionedTransaction) -> (Vec<Address>, Vec<Address>, Vec<Address>) {
        let static_keys = tx.message.static_account_keys().to_vec();
        let mut writable = Vec::new();
        let mut readonly = Vec::new();
        for lookup in tx.message.address_table_lookups().unwrap_or_default() {
            let Some(table) = self.svm.get_account(&lookup.account_key) else {
                continue;
            };
            let Ok(table) = AddressLookupTable::deserialize(&table.data) else {
                continue;
            };
            for (indexes, out) in [(&lookup.writable_indexes, &mut writable), (&lookup.readonly_indexes, &mut readonly)]
            {
                for &i in indexes.iter() {
                    if let Some(address) = table.addresses.get(i as usize) {
                        out.push(*address);
                    }
                }
            }
        }
        (static_keys, writable, readonly)
    }

    fn check_age(&self, tx: &VersionedTransaction) -> Result<(), Rejection> {
        if self.is_blockhash_valid(tx.message.recent_blockhash()) {
            Ok(())
        } else {
            Err(Rejection { err: TransactionError::BlockhashNotFound, logs: Vec::new(), compute_units_consumed: 0 })
        }
    }

    /// Runs `tx` against the current state without changing it; with
    /// `sig_verify` false its signatures are not checked (`simulateTransaction`'s
    /// default), precompile instructions still are.
    pub fn simulate(&mut self, tx: &VersionedTransaction, sig_verify: bool) -> Simulation {
        if sig_verify {
            return self.simulate_verified(tx);
        }
        // LiteSVM takes the switch by value; a default instance is cheap (no
        // programs loaded) and only holds the place for the duration.
        let svm = std::mem::take(&mut self.svm).with_sigverify(false);
        self.svm = svm;
        let simulation = self.simulate_verified(tx);
        let svm = std::mem::take(&mut self.svm).with_sigverify(true);
        self.svm = svm;
        simulation
    }

    fn simulate_verified(&self, tx: &VersionedTransaction) -> Simulation {
        if let Err(rejection) = self.check_age(tx) {
            return Simulation {
                err: Some(rejection.err),
                logs: rejection.logs,
                compute_units_consumed: 0,
                post_accounts: Vec::new(),
            };
        }
        match self.svm.simulate_transaction(tx.clone()) {
            Ok(info) => Simulation {
                err: None,
                logs: info.meta.logs,
                compute_units_consumed: info.meta.compute_units_consumed,
                post_accounts: info.post_accounts.into_iter().map(|(k, a)| (k, a.into())).collect(),
            },
            Err(FailedTransactionMetadata { err, meta }) => Simulation {
                err: Some(err),
                logs: meta.logs,
                compute_units_consumed: meta.compute_units_consumed,
                post_accounts: Vec::new(),
            },
        }
    }

    /// Executes `tx`. It lands (in a slot of its own) when it succeeds, and
    /// also when it fails after paying its fee, like on a validator; a
    /// transaction that fails before that (bad signature, unknown blockhash,
    /// fee payer cannot pay, already processed) is rejected and leaves no trace.
    pub fn send(&mut self, tx: VersionedTransaction) -> Result<&LandedTransaction, Rejection> {
        self.check_age(&tx)?;
        let signature = tx.signatures.first().copied().unwrap_or_default();
        if self.transactions.contains_key(&signature) {
            return Err(Rejection {
                err: TransactionError::AlreadyProcessed,
                logs: Vec::new(),
                compute_units_consumed: 0,
            });
        }
        let (static_keys, loaded_writable, loaded_readonly) = self.resolve_keys(&tx);
        let account_keys: Vec<Address> =
            static_keys.iter().chain(&loaded_writable).chain(&loaded_readonly).copied().collect();
        let pre_balances: Vec<u64> = account_keys.iter().map(|k| self.balance(k)).collect();

        let (meta, err): (TransactionMetadata, Option<TransactionError>) = match self.svm.send_transaction(tx.clone()) {
            Ok(meta) => (meta, None),
            Err(FailedTransactionMetadata { err, meta }) => {
                if self.svm.get_transaction(&signature).is_none() {
                    return Err(Rejection {
                        err,
                        logs: meta.logs,
                        compute_units_consumed: meta.compute_units_consumed,
                    });
                }
                (meta, Some(err))
            }
        };
        let post_balances: Vec<u64> = account_keys.iter().map(|k| self.balance(k)).collect();
        let landed = LandedTransaction {
            signature,
            slot: self.slot,
            block_time: self.clock().unix_timestamp,
            transaction: tx,
            account_keys: account_keys.clone(),
            loaded_writable,
            loaded_readonly,
            pre_balances,
            post_balances,
            err,
            fee: meta.fee,
            logs: meta.logs,
            compute_units_consumed: meta.compute_units_consumed,
            inner_instructions: meta.inner_instructions,
        };
        for key in &account_keys {
            let sigs = self.by_address.entry(*key).or_default();
            sigs.push_back(signature);
            if sigs.len() > SIGNATURES_PER_ADDRESS {
                sigs.pop_front();
            }
        }
        self.transactions.insert(signature, landed);
        self.landing_order.push_back(signature);
        while self.landing_order.len() > TRANSACTIONS_KEPT {
            if let Some(oldest) = self.landing_order.pop_front() {
                // `by_address` entries of forgotten transactions are skipped
                // when read and age out with SIGNATURES_PER_ADDRESS.
                self.transactions.remove(&oldest);
            }
        }
        self.start_slot(self.slot + 1);
        Ok(&self.transactions[&signature])
    }

    /// Credits `lamports` to `address` with a real System transfer from the
    /// faucet account, landing like any transaction.
    pub fn airdrop(&mut self, address: &Address, lamports: u64) -> Result<Signature, Rejection> {
        use solana_message::Message;
        let faucet = self.faucet.insecure_clone();
        let ix = solana_system_interface::instruction::transfer(&faucet.pubkey(), address, lamports);
        let message = Message::new_with_blockhash(&[ix], Some(&faucet.pubkey()), &self.latest_blockhash());
        let tx = solana_transaction::Transaction::new(&[&faucet], message, self.latest_blockhash());
        let landed = self.send(VersionedTransaction::from(tx))?;
        match &landed.err {
            None => Ok(landed.signature),
            Some(err) => Err(Rejection {
                err: err.clone(),
                logs: landed.logs.clone(),
                compute_units_consumed: landed.compute_units_consumed,
            }),
        }
    }
}
