use anchor_lang::prelude::*;

use crate::error::BondError;
use crate::events::{emit_event, BondConfigUpdated};
use crate::state::{BondConfig, CONFIG_SEED};

#[derive(Accounts)]
pub struct Initialize<'info> {
    /// Becomes the admin and pays the config rent.
    #[account(mut)]
    pub admin: Signer<'info>,
    #[account(init, payer = admin, space = 8 + BondConfig::INIT_SPACE, seeds = [CONFIG_SEED], bump)]
    pub config: Account<'info, BondConfig>,
    pub system_program: Program<'info, System>,
}

pub fn handler(ctx: Context<Initialize>, withdrawal_timelock: i64) -> Result<()> {
    require!(withdrawal_timelock >= 0, BondError::InvalidTimelock);
    let config = &mut ctx.accounts.config;
    config.admin = ctx.accounts.admin.key();
    config.withdrawal_timelock = withdrawal_timelock;
    config.bump = ctx.bumps.config;
    emit_event(BondConfigUpdated { admin: config.admin, withdrawal_timelock });
    Ok(())
}
