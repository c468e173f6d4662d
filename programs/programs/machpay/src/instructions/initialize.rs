use anchor_lang::prelude::*;

use crate::error::MachPayError;
use crate::events::{emit_event, ConfigUpdated};
use crate::state::{Config, BOND_AUTHORITY_SEED, CONFIG_SEED};

#[derive(Accounts)]
pub struct Initialize<'info> {
    /// Becomes the admin and pays the config rent.
    #[account(mut)]
    pub admin: Signer<'info>,
    #[account(init, payer = admin, space = 8 + Config::INIT_SPACE, seeds = [CONFIG_SEED], bump)]
    pub config: Account<'info, Config>,
    pub system_program: Program<'info, System>,
}

pub fn handler(ctx: Context<Initialize>, domain: [u8; 8], treasury: Pubkey, prover_reward_bps: u16) -> Result<()> {
    require!(prover_reward_bps <= 10_000, MachPayError::InvalidRewardBps);
    let (authority, authority_bump) = Pubkey::find_program_address(&[BOND_AUTHORITY_SEED], ctx.program_id);
    // GlobalBond trusts a compile-time constant; a program deployed at another
    // id could never debit, so refuse to configure it.
    require_keys_eq!(authority, global_bond::MACHPAY_BOND_AUTHORITY, MachPayError::Unauthorized);
    let config = &mut ctx.accounts.config;
    config.admin = ctx.accounts.admin.key();
    config.treasury = treasury;
    config.domain = domain;
    config.prover_reward_bps = prover_reward_bps;
    config.bump = ctx.bumps.config;
    config.bond_authority_bump = authority_bump;
    emit_event(ConfigUpdated { admin: config.admin, treasury, domain, prover_reward_bps });
    Ok(())
}
