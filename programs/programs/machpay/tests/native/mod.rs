//! A tier-1 harness: MachPay's real `entry` called natively over hand-built
//! accounts, with just enough of a runtime to follow its CPIs (into
//! GlobalBond's real `entry`, and a minimal System program for creating
//! channel accounts). It is NOT the Solana runtime: signatures are not
//! verified (the Ed25519 precompile does that; tier 2 in programs/localnet
//! runs it for real), and lamport/ownership rules are not enforced beyond
//! what the programs check themselves. What it proves: MachPay's own checks
//! (precompile layout, accounts, PDAs, domain) and its settlement arithmetic
//! through the real instruction handlers, including the CPI contract with
//! GlobalBond (account order, PDA signer).
//!
//! A transaction is atomic here as on-chain: account changes are written
//! back to the world only when the instruction succeeds.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Once;

use anchor_lang::compat::solana_instructions_sysvar::{self, construct_instructions_data};
use anchor_lang::prelude::*;
use anchor_lang::solana_program::entrypoint::ProgramResult;
use anchor_lang::solana_program::instruction::{BorrowedAccountMeta, BorrowedInstruction, Instruction};
use anchor_lang::{AccountSerialize, InstructionData, ToAccountMetas};
use global_bond::state::Bond;
use machpay::state::{Channel, Config};
use machpay_protocol::channel::{channel_seeds, NATIVE_ASSET};
use machpay_protocol::ed25519::{self, ED25519_PROGRAM_ID};
use machpay_protocol::Intent;
use solana_sysvar::program_stubs::{set_syscall_stubs, SyscallStubs};

pub const DOMAIN: [u8; 8] = *b"mp-test1";

thread_local! {
    static NOW: RefCell<i64> = const { RefCell::new(1_700_000_000) };
    static LOGS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static CALLERS: RefCell<Vec<Pubkey>> = const { RefCell::new(Vec::new()) };
}

struct Stubs;

impl SyscallStubs for Stubs {
    fn sol_log(&self, _message: &str) {}

    fn sol_log_data(&self, fields: &[&[u8]]) {
        LOGS.with(|l| l.borrow_mut().push(fields.concat()));
    }

    fn sol_get_rent_sysvar(&self, var_addr: *mut u8) -> u64 {
        // SAFETY: the caller passes a pointer to a `Rent`.
        unsafe { *(var_addr as *mut Rent) = Rent::default() };
        0
    }

    fn sol_get_clock_sysvar(&self, var_addr: *mut u8) -> u64 {
        let clock = Clock { slot: 42, unix_timestamp: NOW.with(|n| *n.borrow()), ..Clock::default() };
        // SAFETY: the caller passes a pointer to a `Clock`.
        unsafe { *(var_addr as *mut Clock) = clock };
        0
    }

    fn sol_invoke_signed(&self, ix: &Instruction, infos: &[AccountInfo], seeds: &[&[&[u8]]]) -> ProgramResult {
        let caller = CALLERS.with(|c| *c.borrow().last().expect("a caller"));
        let pda_signers = seeds
            .iter()
            .map(|s| Pubkey::create_program_address(s, &caller).map_err(|_| ProgramError::InvalidSeeds))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut accounts = Vec::with_capacity(ix.accounts.len());
        for meta in &ix.accounts {
            let info = infos.iter().find(|i| *i.key == meta.pubkey).ok_or(ProgramError::NotEnoughAccountKeys)?;
            let signer = info.is_signer || pda_signers.contains(&meta.pubkey);
            if meta.is_signer && !signer {
                return Err(ProgramError::MissingRequiredSignature);
            }
            if meta.is_writable && !info.is_writable {
                return Err(ProgramError::InvalidArgument);
            }
            let mut a = info.clone();
            a.is_signer = meta.is_signer;
            a.is_writable = meta.is_writable;
            accounts.push(a);
        }
        CALLERS.with(|c| c.borrow_mut().push(ix.program_id));
        // Anchor's `entry` ties program id, accounts and data to one
        // (invariant) lifetime: leak copies so they all outlive the accounts.
        let program_id: &'static Pubkey = Box::leak(Box::new(ix.program_id));
        let data: &'static [u8] = Box::leak(ix.data.clone().into_boxed_slice());
        let accounts: &[AccountInfo] = Box::leak(accounts.into_boxed_slice());
        let result = if ix.program_id == global_bond::ID {
            global_bond::entry(program_id, accounts, data)
        } else if ix.program_id == anchor_lang::system_program::ID {
            system(accounts, data)
        } else {
            Err(ProgramError::IncorrectProgramId)
        };
        CALLERS.with(|c| c.borrow_mut().pop());
        result
    }
}

/// The System instructions `settle` uses, on preallocated account buffers.
fn system(accounts: &[AccountInfo], data: &[u8]) -> ProgramResult {
    let tag = u32::from_le_bytes(data[..4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
    match tag {
        0 => {
            // CreateAccount { lamports, space, owner }
            let (from, to) = (&accounts[0], &accounts[1]);
            let (lamports, space) = (u64_at(4), u64_at(12));
            let owner = Pubkey::new_from_array(data[20..52].try_into().unwrap());
            if to.lamports() != 0 || *to.owner != anchor_lang::system_program::ID {
                return Err(ProgramError::AccountAlreadyInitialized);
            }
            assert_eq!(to.data_len() as u64, space, "harness: preallocate the account at its final size");
            **from.try_borrow_mut_lamports()? =
                from.lamports().checked_sub(lamports).ok_or(ProgramError::InsufficientFunds)?;
            **to.try_borrow_mut_lamports()? += lamports;
            to.assign(&owner);
            Ok(())
        }
        2 => {
            let (from, to, lamports) = (&accounts[0], &accounts[1], u64_at(4));
            **from.try_borrow_mut_lamports()? =
                from.lamports().checked_sub(lamports).ok_or(ProgramError::InsufficientFunds)?;
            **to.try_borrow_mut_lamports()? += lamports;
            Ok(())
        }
        _ => Err(ProgramError::InvalidInstructionData),
    }
}

/// Set the unix time `Clock::get` returns on this thread.
pub fn set_now(unix_timestamp: i64) {
    NOW.with(|n| *n.borrow_mut() = unix_timestamp);
}

pub fn install_stubs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        set_syscall_stubs(Box::new(Stubs));
    });
}

#[derive(Clone, Debug)]
pub struct Acct {
    pub owner: Pubkey,
    pub lamports: u64,
    pub data: Vec<u8>,
    pub executable: bool,
}

pub struct Voucher {
    pub agent: Pubkey,
    pub message: [u8; 97],
}

/// Accounts of one deployment: config, bond authority, programs, and the
/// channels and bonds tests add.
pub struct World {
    pub accounts: BTreeMap<Pubkey, Acct>,
    /// Buffer sizes for accounts an instruction will create (default: a channel).
    pub prealloc: BTreeMap<Pubkey, usize>,
    pub vendor: Pubkey,
    pub settler: Pubkey,
}

pub fn serialize<T: AccountSerialize>(account: &T) -> Vec<u8> {
    let mut out = Vec::new();
    account.try_serialize(&mut out).unwrap();
    out
}

pub fn channel_address(agent: &Pubkey, vendor: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(&channel_seeds(&agent.to_bytes(), &vendor.to_bytes(), &NATIVE_ASSET), &machpay::ID).0
}

pub fn bond_address(agent: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(&[b"bond", agent.as_ref()], &global_bond::ID).0
}

pub fn config_address() -> Pubkey {
    Pubkey::find_program_address(&[b"config"], &machpay::ID).0
}

pub fn message(agent: &Pubkey, vendor: &Pubkey, nonce: u64, cumulative: u64, amount: u64) -> [u8; 97] {
    Intent {
        domain: DOMAIN,
        channel: channel_address(agent, vendor).to_bytes(),
        nonce,
        cumulative,
        amount,
        expires_at: 1_700_000_000,
        context: [nonce as u8; 16],
    }
    .to_bytes()
}

pub fn precompile_data(vouchers: &[Voucher]) -> Vec<u8> {
    // Signatures are not checked natively; a fixed pattern stands in.
    let sig = [0x5a; 64];
    let keys: Vec<[u8; 32]> = vouchers.iter().map(|v| v.agent.to_bytes()).collect();
    let entries: Vec<_> = vouchers.iter().zip(&keys).map(|(v, k)| (k, &sig, &v.message)).collect();
    ed25519::build(&entries)
}

impl World {
    pub fn new() -> Self {
        install_stubs();
        let vendor = Pubkey::new_unique();
        let settler = Pubkey::new_unique();
        let mut accounts = BTreeMap::new();
        let (config, bump) = Pubkey::find_program_address(&[b"config"], &machpay::ID);
        let (_, authority_bump) = Pubkey::find_program_address(&[b"bond_authority"], &machpay::ID);
        let cfg = Config {
            admin: Pubkey::new_unique(),
            treasury: Pubkey::new_unique(),
            domain: DOMAIN,
            prover_reward_bps: 1_000,
            bump,
            bond_authority_bump: authority_bump,
        };
        accounts
            .insert(config, Acct { owner: machpay::ID, lamports: 1_000_000, data: serialize(&cfg), executable: false });
        accounts.insert(
            settler,
            Acct { owner: anchor_lang::system_program::ID, lamports: 10_000_000_000, data: vec![], executable: false },
        );
        accounts.insert(
            vendor,
            Acct { owner: anchor_lang::system_program::ID, lamports: 0, data: vec![], executable: false },
        );
        for program in [global_bond::ID, anchor_lang::system_program::ID, machpay::ID] {
            accounts.insert(program, Acct { owner: Pubkey::default(), lamports: 1, data: vec![], executable: true });
        }
        World { accounts, prealloc: BTreeMap::new(), vendor, settler }
    }

    /// A GlobalBond bond for `agent` holding `balance` above rent.
    pub fn add_bond(&mut self, agent: &Pubkey, balance: u64) -> Pubkey {
        let (address, bump) = Pubkey::find_program_address(&[b"bond", agent.as_ref()], &global_bond::ID);
        let bond = Bond {
            agent: *agent,
            balance,
            pending_withdrawal: 0,
            unlock_at: 0,
            total_debited: 0,
            total_slashed: 0,
            insolvent: false,
            slashed: false,
            bump,
        };
        let rent = Rent::default().minimum_balance(8 + Bond::INIT_SPACE);
        self.accounts.insert(
            address,
            Acct { owner: global_bond::ID, lamports: rent + balance, data: serialize(&bond), executable: false },
        );
        address
    }

    /// An existing channel already settled up to `settled`.
    pub fn add_channel(&mut self, agent: &Pubkey, settled: u64) -> Pubkey {
        let (address, bump) = Pubkey::find_program_address(
            &channel_seeds(&agent.to_bytes(), &self.vendor.to_bytes(), &NATIVE_ASSET),
            &machpay::ID,
        );
        let channel =
            Channel { agent: *agent, vendor: self.vendor, asset: Pubkey::default(), settled, last_nonce: 0, bump };
        let rent = Rent::default().minimum_balance(8 + Channel::INIT_SPACE);
        self.accounts
            .insert(address, Acct { owner: machpay::ID, lamports: rent, data: serialize(&channel), executable: false });
        address
    }

    pub fn bond(&self, agent: &Pubkey) -> Bond {
        let acct = &self.accounts[&bond_address(agent)];
        Bond::try_deserialize(&mut &acct.data[..]).unwrap()
    }

    pub fn channel(&self, address: &Pubkey) -> Option<Channel> {
        let acct = self.accounts.get(address)?;
        (acct.owner == machpay::ID).then(|| Channel::try_deserialize(&mut &acct.data[..]).unwrap())
    }

    pub fn lamports(&self, key: &Pubkey) -> u64 {
        self.accounts.get(key).map_or(0, |a| a.lamports)
    }

    /// The settle instruction's accounts for (channel, bond) pairs.
    pub fn settle_metas(&self, pairs: &[(Pubkey, Pubkey)]) -> Vec<AccountMeta> {
        let mut metas = machpay::accounts::Settle {
            settler: self.settler,
            vendor: self.vendor,
            config: config_address(),
            bond_authority: Pubkey::find_program_address(&[b"bond_authority"], &machpay::ID).0,
            instructions: solana_instructions_sysvar::ID,
            global_bond_program: global_bond::ID,
            system_program: anchor_lang::system_program::ID,
        }
        .to_account_metas(None);
        for (channel, bond) in pairs {
            metas.push(AccountMeta::new(*channel, false));
            metas.push(AccountMeta::new(*bond, false));
        }
        metas
    }

    pub fn settle_data(root: [u8; 32], leaf_count: u64, total: u64) -> Vec<u8> {
        machpay::instruction::Settle { root, leaf_count, total }.data()
    }

    /// The ordinary settle transaction: [precompile(vouchers), settle(pairs)].
    pub fn settle(
        &mut self,
        vouchers: &[Voucher],
        pairs: &[(Pubkey, Pubkey)],
    ) -> std::result::Result<Vec<Vec<u8>>, ProgramError> {
        let precompile = Instruction {
            program_id: Pubkey::new_from_array(ED25519_PROGRAM_ID),
            accounts: vec![],
            data: precompile_data(vouchers),
        };
        let settle = Instruction {
            program_id: machpay::ID,
            accounts: self.settle_metas(pairs),
            data: Self::settle_data([3; 32], 7, 1_500),
        };
        self.execute(&[precompile, settle], 1)
    }

    /// A system account holding `lamports` (a wallet).
    pub fn add_wallet(&mut self, lamports: u64) -> Pubkey {
        let key = Pubkey::new_unique();
        self.accounts
            .insert(key, Acct { owner: anchor_lang::system_program::ID, lamports, data: vec![], executable: false });
        key
    }

    /// Run instruction `index` of `instructions` (MachPay, GlobalBond or ServiceRegistry) with the others
    /// visible through the instructions sysvar; commit on success.
    pub fn execute(
        &mut self,
        instructions: &[Instruction],
        index: usize,
    ) -> std::result::Result<Vec<Vec<u8>>, ProgramError> {
        let borrowed: Vec<BorrowedInstruction> = instructions
            .iter()
            .map(|ix| BorrowedInstruction {
                program_id: &ix.program_id,
                accounts: ix
                    .accounts
                    .iter()
                    .map(|m| BorrowedAccountMeta {
                        pubkey: &m.pubkey,
                        is_signer: m.is_signer,
                        is_writable: m.is_writable,
                    })
                    .collect(),
                data: &ix.data,
            })
            .collect();
        let mut sysvar = construct_instructions_data(&borrowed);
        solana_instructions_sysvar::store_current_index_checked(&mut sysvar, index as u16).unwrap();
        self.accounts.insert(
            solana_instructions_sysvar::ID,
            Acct {
                owner: pubkey!("Sysvar1111111111111111111111111111111111111"),
                lamports: 1,
                data: sysvar,
                executable: false,
            },
        );

        let ix = &instructions[index];
        // One AccountInfo per distinct key (duplicates share state, as on-chain).
        let mut infos: Vec<AccountInfo<'static>> = Vec::new();
        let mut by_key: BTreeMap<Pubkey, usize> = BTreeMap::new();
        for meta in &ix.accounts {
            if let Some(&i) = by_key.get(&meta.pubkey) {
                let mut dup = infos[i].clone();
                dup.is_signer |= meta.is_signer;
                dup.is_writable |= meta.is_writable;
                infos.push(dup);
                continue;
            }
            let acct = self.accounts.get(&meta.pubkey).cloned().unwrap_or_else(|| Acct {
                owner: anchor_lang::system_program::ID,
                lamports: 0,
                data: vec![0; self.prealloc.get(&meta.pubkey).copied().unwrap_or(8 + Channel::INIT_SPACE)],
                executable: false,
            });
            let info = AccountInfo::new(
                Box::leak(Box::new(meta.pubkey)),
                meta.is_signer,
                meta.is_writable,
                Box::leak(Box::new(acct.lamports)),
                Box::leak(acct.data.into_boxed_slice()),
                Box::leak(Box::new(acct.owner)),
                acct.executable,
            );
            by_key.insert(meta.pubkey, infos.len());
            infos.push(info);
        }
        let infos: &'static [AccountInfo<'static>] = Box::leak(infos.into_boxed_slice());

        LOGS.with(|l| l.borrow_mut().clear());
        CALLERS.with(|c| c.borrow_mut().push(ix.program_id));
        let program_id: &'static Pubkey = Box::leak(Box::new(ix.program_id));
        let data: &'static [u8] = Box::leak(ix.data.clone().into_boxed_slice());
        let result = if ix.program_id == global_bond::ID {
            global_bond::entry(program_id, infos, data)
        } else if ix.program_id == service_registry::ID {
            service_registry::entry(program_id, infos, data)
        } else {
            machpay::entry(program_id, infos, data)
        };
        CALLERS.with(|c| c.borrow_mut().pop());
        let logs = LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()));
        result?;
        for info in infos {
            let acct = Acct {
                owner: *info.owner,
                lamports: info.lamports(),
                data: info.data.borrow().to_vec(),
                executable: info.executable,
            };
            self.accounts.insert(*info.key, acct);
        }
        Ok(logs)
    }
}

/// Events of type `E` among the captured `Program data` entries.
pub fn events<E: anchor_lang::Event + AnchorDeserialize>(logs: &[Vec<u8>]) -> Vec<E> {
    logs.iter().filter(|d| d.starts_with(E::DISCRIMINATOR)).map(|d| E::try_from_slice(&d[8..]).unwrap()).collect()
}

/// The Anchor custom error code inside a ProgramError.
pub fn code(err: ProgramError) -> u32 {
    match err {
        ProgramError::Custom(c) => c,
        other => panic!("expected a custom error, got {other:?}"),
    }
}
