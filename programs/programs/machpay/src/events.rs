//! Events, logged as `Program data: base64(discriminator || borsh)`.
use anchor_lang::prelude::*;

#[event]
pub struct ConfigUpdated {
    pub admin: Pubkey,
    pub treasury: Pubkey,
    pub domain: [u8; 8],
    pub prover_reward_bps: u16,
}

/// One channel's outcome inside a `BatchSettled`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChannelSettlement {
    pub channel: Pubkey,
    pub agent: Pubkey,
    /// Nonce and cumulative of the voucher presented.
    pub nonce: u64,
    pub cumulative: u64,
    /// The channel's settled cumulative after this settlement.
    pub settled: u64,
    /// Lamports moved from the bond to the vendor (0 for a stale voucher).
    pub paid: u64,
}

/// One per settle instruction. A batch settled over several transactions
/// yields several events with the same `batch_id`, each with its channels.
#[event]
pub struct BatchSettled {
    pub vendor: Pubkey,
    /// `SHA-256("machpay:batch:v1" || vendor || root || u64le(leaf_count))`, derived on-chain.
    pub batch_id: [u8; 32],
    pub root: [u8; 32],
    pub leaf_count: u64,
    /// The batch total as the settler claims it (sum of the batch's intent amounts).
    pub total: u64,
    /// Sum of `paid` over `channels`.
    pub paid: u64,
    pub channels: Vec<ChannelSettlement>,
}

#[event]
pub struct ChannelOpened {
    pub channel: Pubkey,
    pub agent: Pubkey,
    pub vendor: Pubkey,
    pub asset: Pubkey,
}

/// The bond could not cover a voucher: `paid < owed`. The channel's
/// `settled` advanced by `paid` only, so the rest is still collectable.
#[event]
pub struct AgentInsolvent {
    pub agent: Pubkey,
    pub channel: Pubkey,
    pub owed: u64,
    pub paid: u64,
}

#[event]
pub struct FraudProven {
    pub proof_id: [u8; 32],
    pub kind: u8,
    pub agent: Pubkey,
    pub prover: Pubkey,
    pub slashed: u64,
    pub prover_reward: u64,
}

/// See `global_bond::events::emit_event`: natively Anchor drops events.
pub fn emit_event<E: anchor_lang::Event>(event: E) {
    #[cfg(target_os = "solana")]
    emit!(event);
    #[cfg(not(target_os = "solana"))]
    solana_sysvar::program_stubs::sol_log_data(&[&anchor_lang::Event::data(&event)]);
}
