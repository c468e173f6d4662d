pub mod bond;
pub mod config;

pub use bond::*;
pub use config::*;
