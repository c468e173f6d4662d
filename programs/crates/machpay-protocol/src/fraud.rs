//! The two fraud rules, their canonical order and the proof id (docs/protocol.md §6).
//!
//! The on-chain program receives the two intents in the order the prover
//! chose and calls [`verify_proof`]: a proof is accepted only in canonical
//! order, so one offence has exactly one `proof_id` and slashes once.
use crate::error::{ProtocolError, Reason};
use crate::hash::sha256;
use crate::intent::{intent_id, Intent, INTENT_LEN};

pub const PROOF_TAG: &[u8] = b"machpay:proof:v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FraudKind {
    /// Same nonce, different messages.
    Equivocation = 1,
    /// Same channel, `nonce_a < nonce_b`, `cumulative_b < cumulative_a + amount_b`.
    ChannelInconsistency = 2,
}

impl FraudKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Equivocation),
            2 => Some(Self::ChannelInconsistency),
            _ => None,
        }
    }
}

/// One signed intent as the precompile carries it (signature already checked by it).
#[derive(Clone, Copy, Debug)]
pub struct SignedIntentRef<'a> {
    pub message: &'a [u8; INTENT_LEN],
    pub agent: &'a [u8; 32],
}

/// `SHA-256("machpay:proof:v1" || kind || id_first || id_second)`.
pub fn proof_id(kind: FraudKind, id_first: &[u8; 32], id_second: &[u8; 32]) -> [u8; 32] {
    sha256(&[PROOF_TAG, &[kind as u8], id_first, id_second])
}

/// Both intents must be judged by this deployment: same key and same domain.
fn comparable(a: &SignedIntentRef<'_>, ia: &Intent, b: &SignedIntentRef<'_>, ib: &Intent) -> bool {
    a.agent == b.agent && ia.domain == ib.domain
}

/// Whether `(a, b)` is an equivocation; `Some(a_first)` gives the canonical order.
fn equivocation_order(a: &SignedIntentRef<'_>, ia: &Intent, b: &SignedIntentRef<'_>, ib: &Intent) -> Option<bool> {
    if !comparable(a, ia, b, ib) || ia.nonce != ib.nonce {
        return None;
    }
    let (id_a, id_b) = (intent_id(a.message), intent_id(b.message));
    if id_a == id_b {
        return None; // a replay, not fraud
    }
    Some(id_a < id_b)
}

/// Whether `(a, b)` is a channel inconsistency; `Some(a_first)` gives the order.
fn inconsistency_order(a: &SignedIntentRef<'_>, ia: &Intent, b: &SignedIntentRef<'_>, ib: &Intent) -> Option<bool> {
    if !comparable(a, ia, b, ib) || ia.channel != ib.channel || ia.nonce == ib.nonce {
        return None;
    }
    let (lo, hi, a_first) = if ia.nonce < ib.nonce { (ia, ib, true) } else { (ib, ia, false) };
    // u128: cumulative + amount may exceed u64, and then the offence holds.
    let authorised_before = u128::from(lo.cumulative) + u128::from(hi.amount);
    (u128::from(hi.cumulative) < authorised_before).then_some(a_first)
}

/// Off-chain detection (what streams does): the offence and whether `a` goes first.
pub fn detect(a: SignedIntentRef<'_>, b: SignedIntentRef<'_>) -> Result<Option<(FraudKind, bool)>, ProtocolError> {
    let (ia, ib) = (Intent::parse(a.message)?, Intent::parse(b.message)?);
    if let Some(a_first) = equivocation_order(&a, &ia, &b, &ib) {
        return Ok(Some((FraudKind::Equivocation, a_first)));
    }
    Ok(inconsistency_order(&a, &ia, &b, &ib).map(|a_first| (FraudKind::ChannelInconsistency, a_first)))
}

/// What the program checks before slashing: both messages parse, the rule of
/// `kind` holds (`invalid_proof`/`kind`), the pair is in canonical order
/// (`invalid_proof`/`order`). Returns the proof id. Signatures are the
/// caller's job (the Ed25519 precompile on-chain).
pub fn verify_proof(
    kind: FraudKind,
    first: SignedIntentRef<'_>,
    second: SignedIntentRef<'_>,
) -> Result<[u8; 32], ProtocolError> {
    let (i1, i2) = (Intent::parse(first.message)?, Intent::parse(second.message)?);
    let order = match kind {
        FraudKind::Equivocation => equivocation_order(&first, &i1, &second, &i2),
        FraudKind::ChannelInconsistency => inconsistency_order(&first, &i1, &second, &i2),
    };
    match order {
        None => Err(ProtocolError::new(Reason::InvalidProof, "kind")),
        Some(false) => Err(ProtocolError::new(Reason::InvalidProof, "order")),
        Some(true) => Ok(proof_id(kind, &intent_id(first.message), &intent_id(second.message))),
    }
}
