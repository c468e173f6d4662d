use anchor_lang::prelude::*;

use crate::error::RegistryError;
use crate::events::{emit_event, VendorUpdated};
use crate::state::{Vendor, VENDOR_SEED};
use crate::validate;

#[derive(Accounts)]
pub struct UpdateVendor<'info> {
    pub authority: Signer<'info>,
    #[account(mut, seeds = [VENDOR_SEED, authority.key().as_ref()], bump = vendor.bump, has_one = authority @ RegistryError::Unauthorized)]
    pub vendor: Account<'info, Vendor>,
}

/// Also re-activates a deactivated vendor (its services keep their own flag).
pub fn handler(ctx: Context<UpdateVendor>, name: String, metadata_uri: String) -> Result<()> {
    validate::name(&name)?;
    validate::metadata_uri(&metadata_uri)?;
    let vendor = &mut ctx.accounts.vendor;
    vendor.name = name.clone();
    vendor.metadata_uri = metadata_uri.clone();
    vendor.active = true;
    emit_event(VendorUpdated { vendor: vendor.authority, name, metadata_uri });
    Ok(())
}
