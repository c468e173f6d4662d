use anchor_lang::prelude::*;

#[event]
pub struct VendorRegistered {
    pub vendor: Pubkey,
    pub name: String,
}

#[event]
pub struct VendorUpdated {
    pub vendor: Pubkey,
    pub name: String,
    pub metadata_uri: String,
}

#[event]
pub struct VendorDeactivated {
    pub vendor: Pubkey,
}

/// Emitted by register_service and update_service with the terms now in force.
#[event]
pub struct ServiceUpdated {
    pub vendor: Pubkey,
    pub service: Pubkey,
    pub name: String,
    pub price: u64,
    pub asset: Pubkey,
    pub unit: String,
    pub gateway_url: String,
    pub created: bool,
}

#[event]
pub struct ServiceDeactivated {
    pub vendor: Pubkey,
    pub service: Pubkey,
}

/// See `global_bond::events::emit_event`: natively Anchor drops events.
pub fn emit_event<E: anchor_lang::Event>(event: E) {
    #[cfg(target_os = "solana")]
    emit!(event);
    #[cfg(not(target_os = "solana"))]
    solana_sysvar::program_stubs::sol_log_data(&[&anchor_lang::Event::data(&event)]);
}
