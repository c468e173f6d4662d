use anchor_lang::prelude::*;

pub const PROOF_SEED: &[u8] = b"proof";

/// Proof that an offence was judged, PDA `[b"proof", proof_id]`: its
/// existence makes a second submission of the same offence fail, so one
/// offence slashes once. Offsets: proof_id 8, kind 40, agent 41, prover 73,
/// slashed 105, prover_reward 113, slot 121, bump 129.
#[account]
#[derive(InitSpace, Debug)]
pub struct FraudRecord {
    pub proof_id: [u8; 32],
    /// 1 = equivocation, 2 = channel inconsistency.
    pub kind: u8,
    pub agent: Pubkey,
    pub prover: Pubkey,
    /// Lamports taken from the bond (0 if it was already empty).
    pub slashed: u64,
    pub prover_reward: u64,
    pub slot: u64,
    pub bump: u8,
}
