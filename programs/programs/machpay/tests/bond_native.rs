//! GlobalBond through its real entrypoint (tier 1, see tests/native):
//! deposits, the withdrawal timelock, and that only MachPay can debit.
mod native;

use anchor_lang::prelude::*;
use anchor_lang::solana_program::instruction::Instruction;
use anchor_lang::{InstructionData, ToAccountMetas};
use global_bond::error::BondError;
use global_bond::events::{BondDeposited, WithdrawalRequested, Withdrawn};
use global_bond::state::{Bond, BondConfig};
use native::*;

const TIMELOCK: i64 = 3_600;

fn with_config(w: &mut World) {
    let (config, bump) = Pubkey::find_program_address(&[b"config"], &global_bond::ID);
    let cfg = BondConfig { admin: Pubkey::new_unique(), withdrawal_timelock: TIMELOCK, bump };
    w.accounts
        .insert(config, Acct { owner: global_bond::ID, lamports: 1_000_000, data: serialize(&cfg), executable: false });
}

fn bond_ix(accounts: Vec<AccountMeta>, data: Vec<u8>) -> Vec<Instruction> {
    vec![Instruction { program_id: global_bond::ID, accounts, data }]
}

fn deposit(w: &mut World, agent: Pubkey, amount: u64) -> std::result::Result<Vec<Vec<u8>>, ProgramError> {
    let accounts = global_bond::accounts::Deposit {
        agent,
        bond: bond_address(&agent),
        system_program: anchor_lang::system_program::ID,
    }
    .to_account_metas(None);
    w.prealloc.insert(bond_address(&agent), 8 + Bond::INIT_SPACE);
    w.execute(&bond_ix(accounts, global_bond::instruction::Deposit { amount }.data()), 0)
}

fn request(w: &mut World, agent: Pubkey, amount: u64) -> std::result::Result<Vec<Vec<u8>>, ProgramError> {
    let config = Pubkey::find_program_address(&[b"config"], &global_bond::ID).0;
    let accounts =
        global_bond::accounts::RequestWithdrawal { agent, bond: bond_address(&agent), config }.to_account_metas(None);
    w.execute(&bond_ix(accounts, global_bond::instruction::RequestWithdrawal { amount }.data()), 0)
}

fn withdraw(w: &mut World, agent: Pubkey) -> std::result::Result<Vec<Vec<u8>>, ProgramError> {
    let accounts = global_bond::accounts::Withdraw { agent, bond: bond_address(&agent) }.to_account_metas(None);
    w.execute(&bond_ix(accounts, global_bond::instruction::Withdraw {}.data()), 0)
}

#[test]
fn deposits_open_the_bond_then_add_to_it() {
    let mut w = World::new();
    let agent = w.add_wallet(1_000_000_000);
    let logs = deposit(&mut w, agent, 5_000).unwrap();
    let rent = Rent::default().minimum_balance(8 + Bond::INIT_SPACE);
    assert_eq!(w.lamports(&bond_address(&agent)), rent + 5_000);
    assert_eq!(w.lamports(&agent), 1_000_000_000 - rent - 5_000);
    assert_eq!(events::<BondDeposited>(&logs)[0].balance, 5_000);
    deposit(&mut w, agent, 2_000).unwrap();
    let bond = w.bond(&agent);
    assert_eq!((bond.agent, bond.balance), (agent, 7_000));
    assert_eq!(w.lamports(&bond_address(&agent)), rent + 7_000);
    assert_eq!(code(deposit(&mut w, agent, 0).unwrap_err()), u32::from(BondError::ZeroAmount));
}

#[test]
fn withdrawal_waits_for_the_timelock_and_settlements_come_first() {
    let mut w = World::new();
    with_config(&mut w);
    let agent = w.add_wallet(1_000_000_000);
    deposit(&mut w, agent, 5_000).unwrap();
    set_now(1_000_000);
    assert_eq!(code(request(&mut w, agent, 6_000).unwrap_err()), u32::from(BondError::InsufficientBond));
    let logs = request(&mut w, agent, 5_000).unwrap();
    assert_eq!(events::<WithdrawalRequested>(&logs)[0].unlock_at, 1_000_000 + TIMELOCK);
    assert_eq!(code(withdraw(&mut w, agent).unwrap_err()), u32::from(BondError::WithdrawalLocked));
    set_now(1_000_000 + TIMELOCK - 1);
    assert_eq!(code(withdraw(&mut w, agent).unwrap_err()), u32::from(BondError::WithdrawalLocked));

    // during the timelock the settler collects a voucher from the bond
    let channel = channel_address(&agent, &w.vendor);
    let v = Voucher { agent, message: message(&agent, &w.vendor, 1, 1_200, 1_200) };
    w.settle(&[v], &[(channel, bond_address(&agent))]).unwrap();
    assert_eq!(w.lamports(&w.vendor), 1_200);

    set_now(1_000_000 + TIMELOCK);
    let before = w.lamports(&agent);
    let logs = withdraw(&mut w, agent).unwrap();
    let out = &events::<Withdrawn>(&logs)[0];
    assert_eq!((out.amount, out.balance), (3_800, 0), "pays the request capped by what settlement left");
    assert_eq!(w.lamports(&agent) - before, 3_800);
    let bond = w.bond(&agent);
    assert_eq!((bond.pending_withdrawal, bond.unlock_at, bond.balance), (0, 0, 0));
    assert_eq!(code(withdraw(&mut w, agent).unwrap_err()), u32::from(BondError::NoPendingWithdrawal));
}

#[test]
fn only_machpays_pda_can_debit_a_bond() {
    let mut w = World::new();
    let agent = w.add_wallet(1_000_000_000);
    deposit(&mut w, agent, 5_000).unwrap();
    let thief = w.add_wallet(1);
    // a random signer
    let accounts = global_bond::accounts::Debit { authority: thief, bond: bond_address(&agent), recipient: thief }
        .to_account_metas(None);
    let e = w
        .execute(&bond_ix(accounts, global_bond::instruction::Debit { amount: 100, mark_insolvent: false }.data()), 0)
        .unwrap_err();
    assert_eq!(code(e), u32::from(BondError::NotMachPayAuthority));
    // the right address, but nobody can sign for it outside MachPay
    let accounts = global_bond::accounts::Debit {
        authority: global_bond::MACHPAY_BOND_AUTHORITY,
        bond: bond_address(&agent),
        recipient: thief,
    };
    let mut metas = accounts.to_account_metas(None);
    metas[0].is_signer = false;
    let e = w
        .execute(&bond_ix(metas, global_bond::instruction::Debit { amount: 100, mark_insolvent: false }.data()), 0)
        .unwrap_err();
    assert_eq!(code(e), u32::from(anchor_lang::error::ErrorCode::AccountNotSigner));
    // slash likewise
    let accounts =
        global_bond::accounts::Slash { authority: thief, bond: bond_address(&agent), prover: thief, treasury: thief }
            .to_account_metas(None);
    let e = w.execute(&bond_ix(accounts, global_bond::instruction::Slash { prover_reward: 0 }.data()), 0).unwrap_err();
    assert_eq!(code(e), u32::from(BondError::NotMachPayAuthority));
    assert_eq!(w.bond(&agent).balance, 5_000);
    assert_eq!(w.lamports(&thief), 1);
}
