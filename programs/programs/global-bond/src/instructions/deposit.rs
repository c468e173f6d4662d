use anchor_lang::prelude::*;
use anchor_lang::system_program::{transfer, Transfer};

use crate::error::BondError;
use crate::events::{emit_event, BondDeposited};
use crate::state::{Bond, BOND_SEED};

#[derive(Accounts)]
pub struct Deposit<'info> {
    /// The agent key whose vouchers this bond backs; pays the deposit (and
    /// the bond's rent the first time).
    #[account(mut)]
    pub agent: Signer<'info>,
    #[account(init_if_needed, payer = agent, space = 8 + Bond::INIT_SPACE, seeds = [BOND_SEED, agent.key().as_ref()], bump)]
    pub bond: Account<'info, Bond>,
    pub system_program: Program<'info, System>,
}

pub fn handler(ctx: Context<Deposit>, amount: u64) -> Result<()> {
    require!(amount > 0, BondError::ZeroAmount);
    transfer(
        CpiContext::new(
            ctx.accounts.system_program.key(),
            Transfer { from: ctx.accounts.agent.to_account_info(), to: ctx.accounts.bond.to_account_info() },
        ),
        amount,
    )?;
    let bond = &mut ctx.accounts.bond;
    if bond.agent == Pubkey::default() {
        bond.agent = ctx.accounts.agent.key();
        bond.bump = ctx.bumps.bond;
    }
    bond.balance = bond.balance.checked_add(amount).ok_or(BondError::Overflow)?;
    emit_event(BondDeposited { agent: bond.agent, amount, balance: bond.balance });
    Ok(())
}
