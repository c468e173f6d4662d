use anchor_lang::prelude::*;
use machpay_protocol::timelock;

use crate::error::BondError;
use crate::events::{emit_event, WithdrawalRequested};
use crate::state::{Bond, BondConfig, BOND_SEED, CONFIG_SEED};

#[derive(Accounts)]
pub struct RequestWithdrawal<'info> {
    pub agent: Signer<'info>,
    #[account(mut, seeds = [BOND_SEED, agent.key().as_ref()], bump = bond.bump, has_one = agent @ BondError::WrongAgent)]
    pub bond: Account<'info, Bond>,
    #[account(seeds = [CONFIG_SEED], bump = config.bump)]
    pub config: Account<'info, BondConfig>,
}

/// Replaces any pending request and restarts the timelock: the settler sees
/// the event and settles this agent's channels before `unlock_at`.
pub fn handler(ctx: Context<RequestWithdrawal>, amount: u64) -> Result<()> {
    require!(amount > 0, BondError::ZeroAmount);
    let bond = &mut ctx.accounts.bond;
    require!(amount <= bond.balance, BondError::InsufficientBond);
    let now = Clock::get()?.unix_timestamp;
    let unlock_at =
        timelock::unlock_at(now, ctx.accounts.config.withdrawal_timelock).map_err(|_| BondError::Overflow)?;
    bond.pending_withdrawal = amount;
    bond.unlock_at = unlock_at;
    emit_event(WithdrawalRequested { agent: bond.agent, amount, unlock_at });
    Ok(())
}
