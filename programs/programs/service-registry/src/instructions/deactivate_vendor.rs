use anchor_lang::prelude::*;

use crate::error::RegistryError;
use crate::events::{emit_event, VendorDeactivated};
use crate::state::{Vendor, VENDOR_SEED};

#[derive(Accounts)]
pub struct DeactivateVendor<'info> {
    pub authority: Signer<'info>,
    #[account(mut, seeds = [VENDOR_SEED, authority.key().as_ref()], bump = vendor.bump, has_one = authority @ RegistryError::Unauthorized)]
    pub vendor: Account<'info, Vendor>,
}

/// Clients must skip services of an inactive vendor; no new service can be
/// registered until `update_vendor` re-activates it.
pub fn handler(ctx: Context<DeactivateVendor>) -> Result<()> {
    ctx.accounts.vendor.active = false;
    emit_event(VendorDeactivated { vendor: ctx.accounts.vendor.authority });
    Ok(())
}
