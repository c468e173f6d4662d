// Anchor resolves `instructions::*` for the generated client modules, so every
// instruction module is glob re-exported; their `handler`s shadow each other
// harmlessly (lib.rs always calls them by full path).
#![allow(ambiguous_glob_reexports)]

pub mod initialize;
pub mod open_channel;
pub mod prove_fraud;
pub mod settle;
pub mod update_config;

pub use initialize::*;
pub use open_channel::*;
pub use prove_fraud::*;
pub use settle::*;
pub use update_config::*;
