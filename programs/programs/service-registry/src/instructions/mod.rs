// Anchor resolves `instructions::*` for the generated client modules, so every
// instruction module is glob re-exported; their `handler`s shadow each other
// harmlessly (lib.rs always calls them by full path).
#![allow(ambiguous_glob_reexports)]

pub mod deactivate_service;
pub mod deactivate_vendor;
pub mod register_service;
pub mod register_vendor;
pub mod update_service;
pub mod update_vendor;

pub use deactivate_service::*;
pub use deactivate_vendor::*;
pub use register_service::*;
pub use register_vendor::*;
pub use update_service::*;
pub use update_vendor::*;
