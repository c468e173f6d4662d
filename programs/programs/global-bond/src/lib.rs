//! GlobalBond: one bond PDA per agent, holding the lamports that back the
//! agent's payments to every vendor. Deposits and two-step withdrawals are
//! the agent's; debits (settlement) and slashes (fraud) are callable only by
//! the MachPay program's `bond_authority` PDA. Contract: docs/onchain.md §3.
#![allow(unexpected_cfgs)]

use anchor_lang::prelude::*;

pub mod error;
pub mod events;
pub mod instructions;
pub mod state;

use instructions::*;

declare_id!("GBond11111111111111111111111111111111111111");

/// The MachPay program, whose `bond_authority` PDA alone may debit or slash.
pub const MACHPAY_PROGRAM_ID: Pubkey = pubkey!("MachPay111111111111111111111111111111111111");
/// Seed of that PDA (in the MachPay program).
pub const BOND_AUTHORITY_SEED: &[u8] = b"bond_authority";
/// `find_program_address([b"bond_authority"], MachPay)`, computed at compile time.
pub const MACHPAY_BOND_AUTHORITY: Pubkey = Pubkey::new_from_array(
    anchor_lang::derive_program_address(&[BOND_AUTHORITY_SEED], &MACHPAY_PROGRAM_ID.to_bytes()).0,
);

#[program]
pub mod global_bond {
    use super::*;

    pub fn initialize(ctx: Context<Initialize>, withdrawal_timelock: i64) -> Result<()> {
        instructions::initialize::handler(ctx, withdrawal_timelock)
    }

    pub fn update_config(ctx: Context<UpdateConfig>, new_admin: Pubkey, withdrawal_timelock: i64) -> Result<()> {
        instructions::update_config::handler(ctx, new_admin, withdrawal_timelock)
    }

    pub fn deposit(ctx: Context<Deposit>, amount: u64) -> Result<()> {
        instructions::deposit::handler(ctx, amount)
    }

    pub fn request_withdrawal(ctx: Context<RequestWithdrawal>, amount: u64) -> Result<()> {
        instructions::request_withdrawal::handler(ctx, amount)
    }

    pub fn withdraw(ctx: Context<Withdraw>) -> Result<()> {
        instructions::withdraw::handler(ctx)
    }

    pub fn debit(ctx: Context<Debit>, amount: u64, mark_insolvent: bool) -> Result<()> {
        instructions::debit::handler(ctx, amount, mark_insolvent)
    }

    pub fn slash(ctx: Context<Slash>, prover_reward: u64) -> Result<()> {
        instructions::slash::handler(ctx, prover_reward)
    }
}
