//! The MachPay programs, loaded as native builtins at their program ids
//! (docs/onchain.md §1).

use solana_address::Address;

use crate::bridge::NativeEntry;
use crate::chain::Chain;

/// (name, program id, entrypoint) of every MachPay program.
pub fn all() -> [(&'static str, Address, NativeEntry); 3] {
    [
        ("GlobalBond", global_bond::ID, global_bond::entry),
        ("MachPay", machpay::ID, machpay::entry),
        ("ServiceRegistry", service_registry::ID, service_registry::entry),
    ]
}

/// Loads every MachPay program into `chain`.
pub fn load(chain: &mut Chain) {
    for (_, id, entry) in all() {
        chain.add_native_program(id, entry);
    }
}
