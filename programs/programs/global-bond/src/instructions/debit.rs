use anchor_lang::prelude::*;

use crate::error::BondError;
use crate::events::{emit_event, BondDebited};
use crate::state::{Bond, BOND_SEED};
use crate::MACHPAY_BOND_AUTHORITY;

#[derive(Accounts)]
pub struct Debit<'info> {
    /// MachPay's `bond_authority` PDA, signing through `invoke_signed`.
    #[account(address = MACHPAY_BOND_AUTHORITY @ BondError::NotMachPayAuthority)]
    pub authority: Signer<'info>,
    #[account(mut, seeds = [BOND_SEED, bond.agent.as_ref()], bump = bond.bump)]
    pub bond: Account<'info, Bond>,
    /// Receives the payment: MachPay passes the vendor of the channel it settles.
    /// CHECK: any writable account may receive lamports.
    #[account(mut)]
    pub recipient: UncheckedAccount<'info>,
}

/// Pay `amount` to `recipient`. Strict: MachPay computes what the bond can
/// cover and asks for exactly that, so asking for more is a bug, not a
/// partial payment.
pub fn handler(ctx: Context<Debit>, amount: u64, mark_insolvent: bool) -> Result<()> {
    require!(amount > 0, BondError::ZeroAmount);
    let bond = &mut ctx.accounts.bond;
    require!(amount <= bond.balance, BondError::InsufficientBond);
    bond.balance -= amount;
    bond.total_debited = bond.total_debited.checked_add(amount).ok_or(BondError::Overflow)?;
    bond.insolvent |= mark_insolvent;
    let event = BondDebited {
        agent: bond.agent,
        recipient: ctx.accounts.recipient.key(),
        amount,
        balance: bond.balance,
        insolvent: bond.insolvent,
    };
    ctx.accounts.bond.sub_lamports(amount)?;
    ctx.accounts.recipient.add_lamports(amount)?;
    emit_event(event);
    Ok(())
}
