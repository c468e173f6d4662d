//! Events, logged as `Program data: base64(discriminator || borsh)`.
use anchor_lang::prelude::*;

#[event]
pub struct BondConfigUpdated {
    pub admin: Pubkey,
    pub withdrawal_timelock: i64,
}

#[event]
pub struct BondDeposited {
    pub agent: Pubkey,
    pub amount: u64,
    pub balance: u64,
}

#[event]
pub struct WithdrawalRequested {
    pub agent: Pubkey,
    pub amount: u64,
    pub unlock_at: i64,
}

#[event]
pub struct Withdrawn {
    pub agent: Pubkey,
    /// What was paid out: the request, capped by the balance left after settlements.
    pub amount: u64,
    pub balance: u64,
}

#[event]
pub struct BondDebited {
    pub agent: Pubkey,
    pub recipient: Pubkey,
    pub amount: u64,
    pub balance: u64,
    pub insolvent: bool,
}

#[event]
pub struct BondSlashed {
    pub agent: Pubkey,
    pub amount: u64,
    pub prover: Pubkey,
    pub prover_reward: u64,
    pub treasury: Pubkey,
}

/// Emit an event. On SBF this is Anchor's `emit!` (a `sol_log_data`
/// syscall). Natively Anchor drops the data, so it goes through the syscall
/// stubs instead, which a native runtime installs to capture program logs.
pub fn emit_event<E: anchor_lang::Event>(event: E) {
    #[cfg(target_os = "solana")]
    emit!(event);
    #[cfg(not(target_os = "solana"))]
    solana_sysvar::program_stubs::sol_log_data(&[&anchor_lang::Event::data(&event)]);
}
