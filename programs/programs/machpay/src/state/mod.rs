pub mod channel;
pub mod config;
pub mod fraud_record;

pub use channel::*;
pub use config::*;
pub use fraud_record::*;
