use anchor_lang::prelude::*;

pub const VENDOR_SEED: &[u8] = b"vendor";
pub const MAX_NAME_LEN: usize = 32;
pub const MAX_URI_LEN: usize = 200;

/// A vendor, PDA `[b"vendor", authority]`. `authority` is the vendor key of
/// the protocol: the `payTo` of its 402s and the vendor seed of its channels.
/// Fixed offsets: authority 8, active 40, service_count 41, then strings.
#[account]
#[derive(InitSpace, Debug)]
pub struct Vendor {
    pub authority: Pubkey,
    pub active: bool,
    pub service_count: u32,
    #[max_len(32)]
    pub name: String,
    #[max_len(200)]
    pub metadata_uri: String,
    pub bump: u8,
}
