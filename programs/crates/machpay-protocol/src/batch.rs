//! Batch identity: the same (vendor, root, leaf count) always has the same id,
//! byte-for-byte what streams computes (streams/src/machpay/streams/state.py).
use crate::hash::sha256;

pub const BATCH_TAG: &[u8] = b"machpay:batch:v1";

/// `SHA-256("machpay:batch:v1" || vendor || root || u64le(leaf_count))`.
pub fn batch_id(vendor: &[u8; 32], root: &[u8; 32], leaf_count: u64) -> [u8; 32] {
    sha256(&[BATCH_TAG, vendor, root, &leaf_count.to_le_bytes()])
}
