use anchor_lang::prelude::*;

use crate::error::RegistryError;
use crate::events::{emit_event, ServiceDeactivated};
use crate::state::{Service, SERVICE_SEED};

#[derive(Accounts)]
pub struct DeactivateService<'info> {
    pub authority: Signer<'info>,
    #[account(
        mut,
        seeds = [SERVICE_SEED, authority.key().as_ref(), service.name.as_bytes()],
        bump = service.bump,
        constraint = service.vendor == authority.key() @ RegistryError::Unauthorized,
    )]
    pub service: Account<'info, Service>,
}

pub fn handler(ctx: Context<DeactivateService>) -> Result<()> {
    ctx.accounts.service.active = false;
    emit_event(ServiceDeactivated { vendor: ctx.accounts.service.vendor, service: ctx.accounts.service.key() });
    Ok(())
}
