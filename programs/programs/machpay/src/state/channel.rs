use anchor_lang::prelude::*;

pub use machpay_protocol::channel::{CHANNEL_SEED, NATIVE_ASSET};

/// One (agent, vendor, asset) payment channel, PDA
/// `[b"channel", agent, vendor, asset]`, created by its first settlement.
/// Fixed offsets (after the 8-byte discriminator): agent 8, vendor 40,
/// asset 72, settled 104, last_nonce 112, bump 120.
#[account]
#[derive(InitSpace, Debug)]
pub struct Channel {
    pub agent: Pubkey,
    pub vendor: Pubkey,
    /// All zeros for native SOL (the only asset settled in v1).
    pub asset: Pubkey,
    /// Cumulative amount paid so far; only ever grows.
    pub settled: u64,
    /// Nonce of the voucher that last moved `settled`.
    pub last_nonce: u64,
    pub bump: u8,
}
