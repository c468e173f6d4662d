//! Protocol rejections: a reason code (the wire strings of docs/protocol.md §9)
//! and the field it concerns, so on-chain and off-chain failures read alike.
use core::fmt;

/// The reason codes this crate can produce; `as_str` is the Python spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    BadLength,
    BadMagic,
    UnsupportedVersion,
    AmountOutOfRange,
    WrongDomain,
    WrongChannel,
    InvalidProof,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::BadLength => "bad_length",
            Reason::BadMagic => "bad_magic",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::AmountOutOfRange => "amount_out_of_range",
            Reason::WrongDomain => "wrong_domain",
            Reason::WrongChannel => "wrong_channel",
            Reason::InvalidProof => "invalid_proof",
        }
    }
}

/// A refused input: `reason` says why, `field` names the offending field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub reason: Reason,
    pub field: &'static str,
}

impl ProtocolError {
    pub const fn new(reason: Reason, field: &'static str) -> Self {
        Self { reason, field }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (field {})", self.reason.as_str(), self.field)
    }
}
