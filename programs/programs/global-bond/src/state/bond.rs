use anchor_lang::prelude::*;

pub const BOND_SEED: &[u8] = b"bond";

/// One agent's bond, PDA `[b"bond", agent]`. The account's lamports are
/// `rent-exempt minimum + balance`: `balance` is what backs payments.
/// Field order is fixed (clients filter with memcmp at `agent` = offset 8).
#[account]
#[derive(InitSpace, Debug)]
pub struct Bond {
    pub agent: Pubkey,
    /// Lamports available for debits, slashes and withdrawals.
    pub balance: u64,
    /// Amount requested for withdrawal (0 = none pending).
    pub pending_withdrawal: u64,
    /// When the pending withdrawal may be executed (unix seconds; 0 = none).
    pub unlock_at: i64,
    /// Lifetime sum paid to vendors through `debit`.
    pub total_debited: u64,
    /// Lifetime sum taken by `slash`.
    pub total_slashed: u64,
    /// Set when a settlement could not be covered in full; never cleared by
    /// the program (gateways decide when to trust a topped-up agent again).
    pub insolvent: bool,
    /// Set by a fraud proof: the agent is banned.
    pub slashed: bool,
    pub bump: u8,
}
