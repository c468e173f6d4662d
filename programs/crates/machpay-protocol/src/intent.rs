//! The 97-byte payment intent message (docs/protocol.md §1).
use crate::error::{ProtocolError, Reason};
use crate::hash::sha256;

/// Length of a v1 intent message.
pub const INTENT_LEN: usize = 97;
/// `b"\xffMachPay"`: the leading 0xff can never start a Solana transaction message.
pub const MAGIC: [u8; 8] = *b"\xffMachPay";
pub const VERSION: u8 = 1;

/// Byte offsets inside the message, shared with docs/onchain.md.
pub mod offsets {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const DOMAIN: usize = 9;
    pub const CHANNEL: usize = 17;
    pub const NONCE: usize = 49;
    pub const CUMULATIVE: usize = 57;
    pub const AMOUNT: usize = 65;
    pub const EXPIRES_AT: usize = 73;
    pub const CONTEXT: usize = 81;
}

/// A parsed intent. Borrowing nothing: every field is copied out (97 bytes),
/// so callers can drop the instruction-data borrow right after parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intent {
    pub domain: [u8; 8],
    pub channel: [u8; 32],
    pub nonce: u64,
    pub cumulative: u64,
    pub amount: u64,
    pub expires_at: i64,
    pub context: [u8; 16],
}

fn array<const N: usize>(m: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&m[at..at + N]);
    out
}

impl Intent {
    /// Parse `message` with the error order of docs/protocol.md §1: length,
    /// magic, version, amount range; the first failure wins.
    pub fn parse(message: &[u8]) -> Result<Self, ProtocolError> {
        use offsets as o;
        if message.len() != INTENT_LEN {
            return Err(ProtocolError::new(Reason::BadLength, "message"));
        }
        if message[o::MAGIC..o::MAGIC + 8] != MAGIC {
            return Err(ProtocolError::new(Reason::BadMagic, "magic"));
        }
        if message[o::VERSION] != VERSION {
            return Err(ProtocolError::new(Reason::UnsupportedVersion, "version"));
        }
        let intent = Intent {
            domain: array(message, o::DOMAIN),
            channel: array(message, o::CHANNEL),
            nonce: u64::from_le_bytes(array(message, o::NONCE)),
            cumulative: u64::from_le_bytes(array(message, o::CUMULATIVE)),
            amount: u64::from_le_bytes(array(message, o::AMOUNT)),
            expires_at: i64::from_le_bytes(array(message, o::EXPIRES_AT)),
            context: array(message, o::CONTEXT),
        };
        if intent.amount == 0 || intent.amount > intent.cumulative {
            return Err(ProtocolError::new(Reason::AmountOutOfRange, "amount"));
        }
        Ok(intent)
    }

    /// The canonical 97 bytes of this intent (inverse of `parse`).
    pub fn to_bytes(&self) -> [u8; INTENT_LEN] {
        use offsets as o;
        let mut m = [0u8; INTENT_LEN];
        m[o::MAGIC..o::MAGIC + 8].copy_from_slice(&MAGIC);
        m[o::VERSION] = VERSION;
        m[o::DOMAIN..o::DOMAIN + 8].copy_from_slice(&self.domain);
        m[o::CHANNEL..o::CHANNEL + 32].copy_from_slice(&self.channel);
        m[o::NONCE..o::NONCE + 8].copy_from_slice(&self.nonce.to_le_bytes());
        m[o::CUMULATIVE..o::CUMULATIVE + 8].copy_from_slice(&self.cumulative.to_le_bytes());
        m[o::AMOUNT..o::AMOUNT + 8].copy_from_slice(&self.amount.to_le_bytes());
        m[o::EXPIRES_AT..o::EXPIRES_AT + 8].copy_from_slice(&self.expires_at.to_le_bytes());
        m[o::CONTEXT..o::CONTEXT + 16].copy_from_slice(&self.context);
        m
    }

    /// Binding to the deployment: the on-chain half of docs/protocol.md §5.
    /// Expiry is deliberately NOT checked here: it limits serving, not
    /// settling (a vendor that served before expiry must still be paid).
    pub fn check_domain(&self, domain: &[u8; 8]) -> Result<(), ProtocolError> {
        if &self.domain != domain {
            return Err(ProtocolError::new(Reason::WrongDomain, "domain"));
        }
        Ok(())
    }
}

/// Intent id = SHA-256 of the 97 message bytes (never of the signature).
pub fn intent_id(message: &[u8]) -> [u8; 32] {
    sha256(&[message])
}
