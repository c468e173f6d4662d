use anchor_lang::prelude::*;

pub const CONFIG_SEED: &[u8] = b"config";

/// The program's one configuration, PDA `[b"config"]`.
#[account]
#[derive(InitSpace, Debug)]
pub struct BondConfig {
    /// May change the configuration.
    pub admin: Pubkey,
    /// Seconds between `request_withdrawal` and the earliest `withdraw`: the
    /// settler's window to settle the agent's channels first.
    pub withdrawal_timelock: i64,
    pub bump: u8,
}
