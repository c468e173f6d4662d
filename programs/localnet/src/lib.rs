//! MachPay localnet: the MachPay Anchor programs running natively inside a
//! real Solana runtime (LiteSVM), and a JSON-RPC endpoint in front of it.
//!
//! - [`bridge`] runs a native program entrypoint as a runtime builtin;
//! - [`stubs`] answers the program's syscalls (CPI, logs, sysvars) from the
//!   runtime's invoke context;
//! - [`chain`] gives LiteSVM slots, blockhashes, a clock and a transaction
//!   store, as a single validator node would.

pub mod bridge;
pub mod chain;
pub mod programs;
pub mod rpc;
pub mod stdout_logs;
mod stubs;
pub mod testkit;

pub use chain::{Chain, LandedTransaction, Rejection, Simulation};
pub use testkit::MachPayNet;
