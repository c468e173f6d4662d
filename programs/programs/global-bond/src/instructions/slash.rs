use anchor_lang::prelude::*;

use crate::error::BondError;
use crate::events::{emit_event, BondSlashed};
use crate::state::{Bond, BOND_SEED};
use crate::MACHPAY_BOND_AUTHORITY;

#[derive(Accounts)]
pub struct Slash<'info> {
    #[account(address = MACHPAY_BOND_AUTHORITY @ BondError::NotMachPayAuthority)]
    pub authority: Signer<'info>,
    #[account(mut, seeds = [BOND_SEED, bond.agent.as_ref()], bump = bond.bump)]
    pub bond: Account<'info, Bond>,
    /// Receives the reward: MachPay passes the fraud prover.
    /// CHECK: any writable account may receive lamports.
    #[account(mut)]
    pub prover: UncheckedAccount<'info>,
    /// Receives the rest: MachPay passes its configured treasury.
    /// CHECK: any writable account may receive lamports.
    #[account(mut)]
    pub treasury: UncheckedAccount<'info>,
}

/// Take the whole balance: `prover_reward` to the prover, the rest to the
/// treasury. The pending withdrawal is cancelled and the bond marked slashed.
pub fn handler(ctx: Context<Slash>, prover_reward: u64) -> Result<()> {
    let bond = &mut ctx.accounts.bond;
    let amount = bond.balance;
    require!(prover_reward <= amount, BondError::RewardTooLarge);
    bond.balance = 0;
    bond.pending_withdrawal = 0;
    bond.unlock_at = 0;
    bond.slashed = true;
    bond.total_slashed = bond.total_slashed.checked_add(amount).ok_or(BondError::Overflow)?;
    let agent = bond.agent;
    if amount > 0 {
        ctx.accounts.bond.sub_lamports(amount)?;
        ctx.accounts.prover.add_lamports(prover_reward)?;
        ctx.accounts.treasury.add_lamports(amount - prover_reward)?;
    }
    emit_event(BondSlashed {
        agent,
        amount,
        prover: ctx.accounts.prover.key(),
        prover_reward,
        treasury: ctx.accounts.treasury.key(),
    });
    Ok(())
}
