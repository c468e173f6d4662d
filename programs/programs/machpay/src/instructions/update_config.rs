use anchor_lang::prelude::*;

use crate::error::MachPayError;
use crate::events::{emit_event, ConfigUpdated};
use crate::state::{Config, CONFIG_SEED};

#[derive(Accounts)]
pub struct UpdateConfig<'info> {
    pub admin: Signer<'info>,
    #[account(mut, seeds = [CONFIG_SEED], bump = config.bump, has_one = admin @ MachPayError::Unauthorized)]
    pub config: Account<'info, Config>,
}

/// Admin, treasury and reward share can change; the domain cannot.
pub fn handler(ctx: Context<UpdateConfig>, new_admin: Pubkey, treasury: Pubkey, prover_reward_bps: u16) -> Result<()> {
    require!(prover_reward_bps <= 10_000, MachPayError::InvalidRewardBps);
    let config = &mut ctx.accounts.config;
    config.admin = new_admin;
    config.treasury = treasury;
    config.prover_reward_bps = prover_reward_bps;
    emit_event(ConfigUpdated { admin: new_admin, treasury, domain: config.domain, prover_reward_bps });
    Ok(())
}
