//! SHA-256, the only hash of the protocol.
use sha2::{Digest, Sha256};

/// SHA-256 over the concatenation of `parts` (no separators: callers add
/// length prefixes or fixed-width fields where a split could be ambiguous).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}
