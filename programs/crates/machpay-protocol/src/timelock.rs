//! Withdrawal timelock arithmetic, checked: an overflow is an error, never a wrap
//! (a wrapped unlock time would be in the past and release the bond at once).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelockError {
    /// The delay is negative (configuration must refuse it).
    NegativeDelay,
    /// `now + delay` does not fit an i64.
    Overflow,
}

/// When a withdrawal requested at `now` may be executed.
pub fn unlock_at(now: i64, delay_seconds: i64) -> Result<i64, TimelockError> {
    if delay_seconds < 0 {
        return Err(TimelockError::NegativeDelay);
    }
    now.checked_add(delay_seconds).ok_or(TimelockError::Overflow)
}

/// A withdrawal unlocks at `unlock_at` inclusive.
pub fn is_unlocked(now: i64, unlock_at: i64) -> bool {
    now >= unlock_at
}

/// Basis-point share of `amount`, rounded down, in u128 so it cannot overflow.
/// `bps` above 10,000 is clamped (configuration refuses it anyway).
pub fn bps_share(amount: u64, bps: u16) -> u64 {
    let bps = u128::from(bps.min(10_000));
    // amount * bps / 10_000 <= amount, so the cast back cannot truncate.
    (u128::from(amount) * bps / 10_000) as u64
}
