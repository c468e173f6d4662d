//! MachPay protocol math with no Solana runtime behind it.
//!
//! Everything the on-chain programs decide that does not need an account or a
//! syscall lives here, so it can be unit- and property-tested on the host and
//! checked against the vectors the Python core generates
//! (`schemas/vectors/`). The byte layouts are fixed in `docs/protocol.md`;
//! how the programs use them is in `docs/onchain.md`.
//!
//! `no_std` (with `alloc` only for the precompile builder): the programs link
//! it for SBF, and nothing here may allocate on the hot settle path.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod batch;
pub mod channel;
pub mod ed25519;
pub mod error;
pub mod fraud;
pub mod hash;
pub mod intent;
pub mod merkle;
pub mod settlement;
pub mod timelock;

pub use error::{ProtocolError, Reason};
pub use intent::{Intent, INTENT_LEN};
