// Anchor resolves `instructions::*` for the generated client modules, so every
// instruction module is glob re-exported; their `handler`s shadow each other
// harmlessly (lib.rs always calls them by full path).
#![allow(ambiguous_glob_reexports)]

pub mod debit;
pub mod deposit;
pub mod initialize;
pub mod request_withdrawal;
pub mod slash;
pub mod update_config;
pub mod withdraw;

pub use debit::*;
pub use deposit::*;
pub use initialize::*;
pub use request_withdrawal::*;
pub use slash::*;
pub use update_config::*;
pub use withdraw::*;
