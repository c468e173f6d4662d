use anchor_lang::prelude::*;

use crate::error::RegistryError;
use crate::events::{emit_event, ServiceUpdated};
use crate::state::{Service, ServiceTerms, Vendor, SERVICE_SEED, VENDOR_SEED};
use crate::validate;

#[derive(Accounts)]
#[instruction(name: String)]
pub struct RegisterService<'info> {
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(mut, seeds = [VENDOR_SEED, authority.key().as_ref()], bump = vendor.bump, has_one = authority @ RegistryError::Unauthorized)]
    pub vendor: Account<'info, Vendor>,
    #[account(init, payer = authority, space = 8 + Service::INIT_SPACE, seeds = [SERVICE_SEED, authority.key().as_ref(), name.as_bytes()], bump)]
    pub service: Account<'info, Service>,
    pub system_program: Program<'info, System>,
}

pub fn handler(ctx: Context<RegisterService>, name: String, terms: ServiceTerms) -> Result<()> {
    validate::name(&name)?;
    validate::terms(&terms)?;
    require!(ctx.accounts.vendor.active, RegistryError::VendorInactive);
    let vendor = &mut ctx.accounts.vendor;
    vendor.service_count = vendor.service_count.checked_add(1).ok_or(RegistryError::Overflow)?;
    let service = &mut ctx.accounts.service;
    service.vendor = vendor.authority;
    service.active = true;
    service.price = terms.price;
    service.asset = terms.asset;
    service.unit = terms.unit;
    service.name = name;
    service.gateway_url = terms.gateway_url;
    service.metadata_uri = terms.metadata_uri;
    service.bump = ctx.bumps.service;
    emit_event(ServiceUpdated {
        vendor: service.vendor,
        service: service.key(),
        name: service.name.clone(),
        price: service.price,
        asset: service.asset,
        unit: service.unit.clone(),
        gateway_url: service.gateway_url.clone(),
        created: true,
    });
    Ok(())
}
