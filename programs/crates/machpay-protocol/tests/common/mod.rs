//! Shared by the vector tests: loading `schemas/vectors/*.json` and Solana's
//! PDA derivation (done here with curve25519-dalek, independently of the
//! Solana crates the programs use).
#![allow(dead_code)]

use std::path::PathBuf;

use curve25519_dalek::edwards::CompressedEdwardsY;
use machpay_protocol::hash::sha256;
use serde_json::Value;

pub fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../schemas/vectors").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

pub fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

pub fn array<const N: usize>(v: &Value) -> [u8; N] {
    bytes(v).try_into().unwrap_or_else(|b: Vec<u8>| panic!("expected {N} bytes, got {}", b.len()))
}

pub fn u64_of(v: &Value) -> u64 {
    v.as_u64().expect("u64")
}

/// Solana's `find_program_address`: the highest bump whose hash is off the curve.
pub fn find_program_address(seeds: &[&[u8]], program_id: &[u8; 32]) -> ([u8; 32], u8) {
    for bump in (0..=255u8).rev() {
        let mut parts: Vec<&[u8]> = seeds.to_vec();
        let b = [bump];
        parts.push(&b);
        parts.push(program_id);
        parts.push(b"ProgramDerivedAddress");
        let candidate = sha256(&parts);
        if CompressedEdwardsY(candidate).decompress().is_none() {
            return (candidate, bump);
        }
    }
    panic!("no viable bump");
}
