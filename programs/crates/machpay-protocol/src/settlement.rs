//! What one voucher pays when it is settled (docs/onchain.md §6).
//!
//! A channel only moves forward: the voucher's `cumulative` is the signed
//! ceiling, `settled` what earlier settlements paid. A stale voucher
//! (`cumulative <= settled`) pays nothing, which makes a retried settlement
//! a no-op. When the bond cannot cover the difference, what is there is
//! paid and `settled` advances only by that, so a later top-up lets the
//! same voucher collect the rest.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// `cumulative - settled` (0 for a stale voucher).
    pub owed: u64,
    /// `min(owed, available)`.
    pub paid: u64,
    /// `settled + paid`, never above the voucher's cumulative.
    pub new_settled: u64,
}

impl Settlement {
    /// The bond could not cover what the voucher authorised.
    pub fn insolvent(&self) -> bool {
        self.paid < self.owed
    }
}

/// Settle a voucher of `cumulative` on a channel at `settled`, from a bond
/// with `available` lamports.
pub fn settle(settled: u64, cumulative: u64, available: u64) -> Settlement {
    let owed = cumulative.saturating_sub(settled);
    let paid = owed.min(available);
    // paid <= cumulative - settled, so this cannot overflow.
    Settlement { owed, paid, new_settled: settled + paid }
}
