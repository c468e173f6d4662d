use anchor_lang::prelude::*;

pub const SERVICE_SEED: &[u8] = b"service";
pub const MAX_UNIT_LEN: usize = 16;

/// A priced service, PDA `[b"service", vendor_authority, name]` (the name is
/// the `service` the gateway binds into every intent's context).
/// Fixed offsets: vendor 8, active 40, price 41, asset 49, then strings
/// (unit, name, gateway_url, metadata_uri; 4-byte length prefix each).
/// The account is allocated at its maximum size, so updates never resize it.
#[account]
#[derive(InitSpace, Debug)]
pub struct Service {
    /// The vendor authority (not the Vendor PDA): what clients pay.
    pub vendor: Pubkey,
    pub active: bool,
    /// Price of one call in the asset's smallest unit (lamports for SOL).
    pub price: u64,
    /// All zeros for native SOL; otherwise an SPL mint.
    pub asset: Pubkey,
    /// What one call buys ("call", "1k-tokens", ...).
    #[max_len(16)]
    pub unit: String,
    #[max_len(32)]
    pub name: String,
    #[max_len(200)]
    pub gateway_url: String,
    #[max_len(200)]
    pub metadata_uri: String,
    pub bump: u8,
}

/// Everything about a service a vendor may change.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceTerms {
    pub price: u64,
    pub asset: Pubkey,
    pub unit: String,
    pub gateway_url: String,
    pub metadata_uri: String,
}
