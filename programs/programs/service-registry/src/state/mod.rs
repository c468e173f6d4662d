pub mod service;
pub mod vendor;

pub use service::*;
pub use vendor::*;
