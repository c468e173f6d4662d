use anchor_lang::prelude::*;

pub const CONFIG_SEED: &[u8] = b"config";
/// Seed of the PDA that signs debits and slashes in GlobalBond.
pub const BOND_AUTHORITY_SEED: &[u8] = global_bond::BOND_AUTHORITY_SEED;

/// The deployment's configuration, PDA `[b"config"]`.
#[account]
#[derive(InitSpace, Debug)]
pub struct Config {
    pub admin: Pubkey,
    /// Receives slashed bonds minus the prover's reward.
    pub treasury: Pubkey,
    /// `deployment.domain_tag`: every voucher settled here must carry it.
    /// Fixed at initialize: changing it would void every signed voucher.
    pub domain: [u8; 8],
    /// Share of a slashed bond paid to the prover, in basis points (<= 10,000).
    pub prover_reward_bps: u16,
    pub bump: u8,
    pub bond_authority_bump: u8,
}
