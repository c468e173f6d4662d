//! Ed25519 precompile instruction data: the one canonical layout MachPay
//! accepts, checked strictly, as a pure function over the instruction bytes.
//!
//! The precompile verifies whatever its offsets point at, possibly in
//! *another* instruction of the transaction. Published bypasses of weaker
//! checks came from programs that read "the signature" at a fixed position
//! while the offsets made the precompile verify different bytes. So every
//! offset and every instruction index is compared with the single layout
//! below, the count must equal what the caller expects, and the data length
//! must be exact: the bytes we read are then exactly the bytes verified.
//!
//! Layout for K entries (all integers u16 little-endian; docs/onchain.md §5):
//!
//! ```text
//! 0        u8   K (number of signatures)
//! 1        u8   0 (padding)
//! 2+14i    14B  offsets of entry i: signature_offset, signature_instruction_index,
//!               public_key_offset, public_key_instruction_index,
//!               message_data_offset, message_data_size, message_instruction_index
//! B_i = 2 + 14K + 193i
//! B_i      32B  public key of entry i      (public_key_offset = B_i)
//! B_i+32   64B  signature of entry i       (signature_offset  = B_i + 32)
//! B_i+96   97B  intent message of entry i  (message_data_offset = B_i + 96, size 97)
//! ```
//!
//! Every instruction index is `0xFFFF`: "this instruction" to the precompile.
use crate::fraud::SignedIntentRef;
use crate::intent::INTENT_LEN;

/// The Ed25519 precompile program id, `Ed25519SigVerify111111111111111111111111111`.
pub const ED25519_PROGRAM_ID: [u8; 32] = [
    3, 125, 70, 214, 124, 147, 251, 190, 18, 249, 66, 143, 131, 141, 64, 255, 5, 112, 116, 73, 39, 244, 138, 100, 252,
    202, 112, 68, 128, 0, 0, 0,
];
pub const HEADER_LEN: usize = 2;
pub const OFFSETS_LEN: usize = 14;
pub const PUBKEY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;
/// Bytes of one entry's payload: key + signature + message.
pub const ENTRY_LEN: usize = PUBKEY_LEN + SIGNATURE_LEN + INTENT_LEN;
/// Precompile bytes per voucher: offsets + payload (207).
pub const BYTES_PER_ENTRY: usize = OFFSETS_LEN + ENTRY_LEN;
/// The index meaning "the precompile instruction itself".
pub const THIS_INSTRUCTION: u16 = u16::MAX;

/// Which of the seven offset fields was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetField {
    SignatureOffset,
    SignatureInstructionIndex,
    PublicKeyOffset,
    PublicKeyInstructionIndex,
    MessageDataOffset,
    MessageDataSize,
    MessageInstructionIndex,
}

impl OffsetField {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SignatureOffset => "signature_offset",
            Self::SignatureInstructionIndex => "signature_instruction_index",
            Self::PublicKeyOffset => "public_key_offset",
            Self::PublicKeyInstructionIndex => "public_key_instruction_index",
            Self::MessageDataOffset => "message_data_offset",
            Self::MessageDataSize => "message_data_size",
            Self::MessageInstructionIndex => "message_instruction_index",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecompileError {
    /// The instruction is not addressed to the Ed25519 precompile.
    WrongProgram,
    /// `K` in the header differs from the number of entries the caller needs.
    SignatureCount { expected: usize, found: usize },
    /// The padding byte is not zero.
    Padding,
    /// The data length is not exactly `2 + 207 K`.
    DataLength { expected: usize, found: usize },
    /// An offset or instruction index of an entry is not the canonical one.
    Offset { entry: usize, field: OffsetField },
}

/// The canonical offsets of entry `i` of `count`, in wire order.
pub fn canonical_offsets(count: usize, i: usize) -> [u16; 7] {
    let base = HEADER_LEN + OFFSETS_LEN * count + ENTRY_LEN * i;
    let (key, sig, msg) = (base, base + PUBKEY_LEN, base + PUBKEY_LEN + SIGNATURE_LEN);
    [sig as u16, THIS_INSTRUCTION, key as u16, THIS_INSTRUCTION, msg as u16, INTENT_LEN as u16, THIS_INSTRUCTION]
}

/// Largest K whose canonical offsets fit u16 (far above any transaction size).
pub const MAX_ENTRIES: usize = (u16::MAX as usize - HEADER_LEN) / BYTES_PER_ENTRY;

pub const fn data_len(count: usize) -> usize {
    HEADER_LEN + BYTES_PER_ENTRY * count
}

/// Instruction data that passed [`parse`]: entry accessors cannot go out of bounds.
#[derive(Clone, Copy, Debug)]
pub struct Entries<'a> {
    data: &'a [u8],
    count: usize,
}

/// One verified voucher as the precompile saw it.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub agent: &'a [u8; PUBKEY_LEN],
    pub signature: &'a [u8; SIGNATURE_LEN],
    pub message: &'a [u8; INTENT_LEN],
}

impl<'a> Entry<'a> {
    pub fn signed_intent(&self) -> SignedIntentRef<'a> {
        SignedIntentRef { message: self.message, agent: self.agent }
    }
}

impl<'a> Entries<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn get(&self, i: usize) -> Option<Entry<'a>> {
        if i >= self.count {
            return None;
        }
        let base = HEADER_LEN + OFFSETS_LEN * self.count + ENTRY_LEN * i;
        let d = self.data;
        Some(Entry {
            agent: d[base..base + PUBKEY_LEN].try_into().ok()?,
            signature: d[base + PUBKEY_LEN..base + PUBKEY_LEN + SIGNATURE_LEN].try_into().ok()?,
            message: d[base + PUBKEY_LEN + SIGNATURE_LEN..base + ENTRY_LEN].try_into().ok()?,
        })
    }
}

fn read_u16(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([d[at], d[at + 1]])
}

const FIELDS: [OffsetField; 7] = [
    OffsetField::SignatureOffset,
    OffsetField::SignatureInstructionIndex,
    OffsetField::PublicKeyOffset,
    OffsetField::PublicKeyInstructionIndex,
    OffsetField::MessageDataOffset,
    OffsetField::MessageDataSize,
    OffsetField::MessageInstructionIndex,
];

/// Check `program_id` and `data` of the precompile instruction against the
/// canonical layout for exactly `expected` entries.
pub fn parse<'a>(program_id: &[u8; 32], data: &'a [u8], expected: usize) -> Result<Entries<'a>, PrecompileError> {
    if program_id != &ED25519_PROGRAM_ID {
        return Err(PrecompileError::WrongProgram);
    }
    let found = data.first().copied().map_or(0, usize::from);
    if found != expected || expected == 0 || expected > MAX_ENTRIES {
        return Err(PrecompileError::SignatureCount { expected, found });
    }
    if data.get(1) != Some(&0) {
        return Err(PrecompileError::Padding);
    }
    if data.len() != data_len(expected) {
        return Err(PrecompileError::DataLength { expected: data_len(expected), found: data.len() });
    }
    for entry in 0..expected {
        let at = HEADER_LEN + OFFSETS_LEN * entry;
        for (k, (want, field)) in canonical_offsets(expected, entry).iter().zip(FIELDS).enumerate() {
            if read_u16(data, at + 2 * k) != *want {
                return Err(PrecompileError::Offset { entry, field });
            }
        }
    }
    Ok(Entries { data, count: expected })
}

/// Build canonical precompile data for `(agent, signature, message)` entries
/// (what the settler sends; used by tests and the transaction-size check).
pub fn build(entries: &[(&[u8; 32], &[u8; 64], &[u8; INTENT_LEN])]) -> alloc::vec::Vec<u8> {
    let count = entries.len();
    assert!(count <= MAX_ENTRIES && count <= u8::MAX as usize, "too many Ed25519 entries");
    let mut out = alloc::vec::Vec::with_capacity(data_len(count));
    out.push(count as u8);
    out.push(0);
    for i in 0..count {
        for v in canonical_offsets(count, i) {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for (agent, sig, msg) in entries {
        out.extend_from_slice(&agent[..]);
        out.extend_from_slice(&sig[..]);
        out.extend_from_slice(&msg[..]);
    }
    out
}
