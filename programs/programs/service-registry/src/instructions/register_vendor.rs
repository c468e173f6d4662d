use anchor_lang::prelude::*;

use crate::events::{emit_event, VendorRegistered};
use crate::state::{Vendor, VENDOR_SEED};
use crate::validate;

#[derive(Accounts)]
pub struct RegisterVendor<'info> {
    /// The vendor key: receives payments, signs every change.
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(init, payer = authority, space = 8 + Vendor::INIT_SPACE, seeds = [VENDOR_SEED, authority.key().as_ref()], bump)]
    pub vendor: Account<'info, Vendor>,
    pub system_program: Program<'info, System>,
}

pub fn handler(ctx: Context<RegisterVendor>, name: String, metadata_uri: String) -> Result<()> {
    validate::name(&name)?;
    validate::metadata_uri(&metadata_uri)?;
    let vendor = &mut ctx.accounts.vendor;
    vendor.authority = ctx.accounts.authority.key();
    vendor.active = true;
    vendor.service_count = 0;
    vendor.name = name.clone();
    vendor.metadata_uri = metadata_uri;
    vendor.bump = ctx.bumps.vendor;
    emit_event(VendorRegistered { vendor: vendor.authority, name });
    Ok(())
}
