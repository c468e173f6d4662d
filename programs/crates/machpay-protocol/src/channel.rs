//! Channel PDA seeds (docs/protocol.md §2). Derivation itself is Solana's
//! `find_program_address`; the programs call it, this module fixes the seeds.

/// First seed of every channel PDA of the MachPay program.
pub const CHANNEL_SEED: &[u8] = b"channel";
/// Native SOL is the all-zero asset; an SPL asset is its mint.
pub const NATIVE_ASSET: [u8; 32] = [0u8; 32];

/// The seeds `[b"channel", agent, vendor, asset]`, in derivation order.
pub fn channel_seeds<'a>(agent: &'a [u8; 32], vendor: &'a [u8; 32], asset: &'a [u8; 32]) -> [&'a [u8]; 4] {
    [CHANNEL_SEED, agent, vendor, asset]
}
