use anchor_lang::prelude::*;

use crate::error::BondError;
use crate::events::{emit_event, BondConfigUpdated};
use crate::state::{BondConfig, CONFIG_SEED};

#[derive(Accounts)]
pub struct UpdateConfig<'info> {
    pub admin: Signer<'info>,
    #[account(mut, seeds = [CONFIG_SEED], bump = config.bump, has_one = admin @ BondError::Unauthorized)]
    pub config: Account<'info, BondConfig>,
}

/// A new timelock applies to withdrawals requested from now on; pending
/// requests keep the unlock time they were given.
pub fn handler(ctx: Context<UpdateConfig>, new_admin: Pubkey, withdrawal_timelock: i64) -> Result<()> {
    require!(withdrawal_timelock >= 0, BondError::InvalidTimelock);
    let config = &mut ctx.accounts.config;
    config.admin = new_admin;
    config.withdrawal_timelock = withdrawal_timelock;
    emit_event(BondConfigUpdated { admin: new_admin, withdrawal_timelock });
    Ok(())
}
