use anchor_lang::prelude::*;

use crate::error::RegistryError;
use crate::events::{emit_event, ServiceUpdated};
use crate::state::{Service, ServiceTerms, SERVICE_SEED};
use crate::validate;

#[derive(Accounts)]
pub struct UpdateService<'info> {
    pub authority: Signer<'info>,
    #[account(
        mut,
        seeds = [SERVICE_SEED, authority.key().as_ref(), service.name.as_bytes()],
        bump = service.bump,
        constraint = service.vendor == authority.key() @ RegistryError::Unauthorized,
    )]
    pub service: Account<'info, Service>,
}

/// Replaces the terms and re-activates the service.
pub fn handler(ctx: Context<UpdateService>, terms: ServiceTerms) -> Result<()> {
    validate::terms(&terms)?;
    let service = &mut ctx.accounts.service;
    service.active = true;
    service.price = terms.price;
    service.asset = terms.asset;
    service.unit = terms.unit;
    service.gateway_url = terms.gateway_url;
    service.metadata_uri = terms.metadata_uri;
    emit_event(ServiceUpdated {
        vendor: service.vendor,
        service: service.key(),
        name: service.name.clone(),
        price: service.price,
        asset: service.asset,
        unit: service.unit.clone(),
        gateway_url: service.gateway_url.clone(),
        created: false,
    });
    Ok(())
}
