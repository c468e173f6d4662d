//! The MachPay programs, loaded as native builtins at their program ids.

use crate::chain::Chain;

/// Loads every MachPay program into `chain`.
pub fn load(chain: &mut Chain) {
    let _ = chain;
}
