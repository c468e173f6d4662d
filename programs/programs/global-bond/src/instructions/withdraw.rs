use anchor_lang::prelude::*;
use machpay_protocol::timelock;

use crate::error::BondError;
use crate::events::{emit_event, Withdrawn};
use crate::state::{Bond, BOND_SEED};

#[derive(Accounts)]
pub struct Withdraw<'info> {
    #[account(mut)]
    pub agent: Signer<'info>,
    #[account(mut, seeds = [BOND_SEED, agent.key().as_ref()], bump = bond.bump, has_one = agent @ BondError::WrongAgent)]
    pub bond: Account<'info, Bond>,
}

/// Pays the pending amount, capped by what settlements and slashes left.
pub fn handler(ctx: Context<Withdraw>) -> Result<()> {
    let bond = &mut ctx.accounts.bond;
    require!(bond.pending_withdrawal > 0, BondError::NoPendingWithdrawal);
    let now = Clock::get()?.unix_timestamp;
    require!(timelock::is_unlocked(now, bond.unlock_at), BondError::WithdrawalLocked);
    let amount = bond.pending_withdrawal.min(bond.balance);
    bond.balance -= amount;
    bond.pending_withdrawal = 0;
    bond.unlock_at = 0;
    let (agent, balance) = (bond.agent, bond.balance);
    if amount > 0 {
        ctx.accounts.bond.sub_lamports(amount)?;
        ctx.accounts.agent.add_lamports(amount)?;
    }
    emit_event(Withdrawn { agent, amount, balance });
    Ok(())
}
