//! ServiceRegistry: vendors and their priced services. Clients list them
//! with getProgramAccounts filtered by discriminator and fixed-offset fields
//! (vendor at 8, active at 40). Contract: docs/onchain.md §2.
#![allow(unexpected_cfgs)]

use anchor_lang::prelude::*;

pub mod error;
pub mod events;
pub mod instructions;
pub mod state;
pub mod validate;

use instructions::*;
pub use state::ServiceTerms;

declare_id!("SvcReg1111111111111111111111111111111111111");

#[program]
pub mod service_registry {
    use super::*;

    pub fn register_vendor(ctx: Context<RegisterVendor>, name: String, metadata_uri: String) -> Result<()> {
        instructions::register_vendor::handler(ctx, name, metadata_uri)
    }

    pub fn update_vendor(ctx: Context<UpdateVendor>, name: String, metadata_uri: String) -> Result<()> {
        instructions::update_vendor::handler(ctx, name, metadata_uri)
    }

    pub fn deactivate_vendor(ctx: Context<DeactivateVendor>) -> Result<()> {
        instructions::deactivate_vendor::handler(ctx)
    }

    pub fn register_service(ctx: Context<RegisterService>, name: String, terms: ServiceTerms) -> Result<()> {
        instructions::register_service::handler(ctx, name, terms)
    }

    pub fn update_service(ctx: Context<UpdateService>, terms: ServiceTerms) -> Result<()> {
        instructions::update_service::handler(ctx, terms)
    }

    pub fn deactivate_service(ctx: Context<DeactivateService>) -> Result<()> {
        instructions::deactivate_service::handler(ctx)
    }
}
