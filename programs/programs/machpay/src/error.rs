use anchor_lang::prelude::*;
use machpay_protocol::ed25519::PrecompileError;
use machpay_protocol::{ProtocolError, Reason};

/// Codes start at 6000 (Anchor's offset); the order is part of the contract.
#[error_code]
pub enum MachPayError {
    #[msg("only the configured admin may do this")]
    Unauthorized,
    #[msg("prover_reward_bps must be <= 10000")]
    InvalidRewardBps,
    #[msg("the instruction before this one must be the Ed25519 precompile")]
    MissingPrecompile,
    #[msg("Ed25519 instruction: wrong program id")]
    PrecompileWrongProgram,
    #[msg("Ed25519 instruction: signature count differs from the vouchers expected")]
    PrecompileSignatureCount,
    #[msg("Ed25519 instruction: padding byte must be 0")]
    PrecompilePadding,
    #[msg("Ed25519 instruction: data length is not 2 + 207 * count")]
    PrecompileDataLength,
    #[msg("Ed25519 instruction: an offset or instruction index is not the canonical one")]
    PrecompileOffset,
    #[msg("remaining accounts must be (channel, bond) pairs, at least one")]
    RemainingAccounts,
    #[msg("intent message: bad length")]
    IntentBadLength,
    #[msg("intent message: bad magic")]
    IntentBadMagic,
    #[msg("intent message: unsupported version")]
    IntentUnsupportedVersion,
    #[msg("intent message: amount is 0 or above cumulative")]
    IntentAmountOutOfRange,
    #[msg("intent is for another deployment (domain)")]
    WrongDomain,
    #[msg("channel account is not the intent's channel PDA for this agent and vendor")]
    WrongChannel,
    #[msg("bond account is not the GlobalBond PDA of the intent's agent")]
    WrongBond,
    #[msg("a settled account must be writable")]
    NotWritable,
    #[msg("fraud proof: unknown kind")]
    UnknownProofKind,
    #[msg("fraud proof: the two intents do not prove this offence")]
    InvalidProof,
    #[msg("fraud proof: intents are not in canonical order")]
    ProofOrder,
    #[msg("fraud proof: proof_id does not match the intents")]
    ProofIdMismatch,
    #[msg("fraud proof: the two intents are signed by different keys")]
    ProofAgentMismatch,
    #[msg("treasury account is not the configured treasury")]
    WrongTreasury,
    #[msg("arithmetic overflow")]
    Overflow,
}

impl From<PrecompileError> for MachPayError {
    fn from(e: PrecompileError) -> Self {
        match e {
            PrecompileError::WrongProgram => MachPayError::PrecompileWrongProgram,
            PrecompileError::SignatureCount { .. } => MachPayError::PrecompileSignatureCount,
            PrecompileError::Padding => MachPayError::PrecompilePadding,
            PrecompileError::DataLength { .. } => MachPayError::PrecompileDataLength,
            PrecompileError::Offset { .. } => MachPayError::PrecompileOffset,
        }
    }
}

impl From<ProtocolError> for MachPayError {
    fn from(e: ProtocolError) -> Self {
        match (e.reason, e.field) {
            (Reason::BadLength, _) => MachPayError::IntentBadLength,
            (Reason::BadMagic, _) => MachPayError::IntentBadMagic,
            (Reason::UnsupportedVersion, _) => MachPayError::IntentUnsupportedVersion,
            (Reason::AmountOutOfRange, _) => MachPayError::IntentAmountOutOfRange,
            (Reason::WrongDomain, _) => MachPayError::WrongDomain,
            (Reason::WrongChannel, _) => MachPayError::WrongChannel,
            (Reason::InvalidProof, "order") => MachPayError::ProofOrder,
            (Reason::InvalidProof, _) => MachPayError::InvalidProof,
        }
    }
}
