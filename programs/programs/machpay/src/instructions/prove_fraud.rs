//! `prove_fraud`: slash an agent's bond with two conflicting signed intents.
//!
//! Instruction i-1 is the Ed25519 precompile with exactly 2 canonical
//! entries, `first` then `second` in the canonical order of
//! docs/protocol.md §6. The `fraud_record` PDA seeded by the proof id is
//! created here, so the same offence can never be judged twice.
use anchor_lang::prelude::*;
use global_bond::program::GlobalBond;
use global_bond::state::Bond;
use machpay_protocol::ed25519;
use machpay_protocol::fraud::{self, FraudKind};
use machpay_protocol::timelock::bps_share;
use machpay_protocol::Intent;

use crate::error::MachPayError;
use crate::events::{emit_event, FraudProven};
use crate::precompile::preceding_instruction;
use crate::state::{Config, FraudRecord, BOND_AUTHORITY_SEED, CONFIG_SEED, PROOF_SEED};

#[derive(Accounts)]
#[instruction(kind: u8, proof_id: [u8; 32])]
pub struct ProveFraud<'info> {
    /// Pays the record's rent and receives the reward.
    #[account(mut)]
    pub prover: Signer<'info>,
    #[account(seeds = [CONFIG_SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    #[account(init, payer = prover, space = 8 + FraudRecord::INIT_SPACE, seeds = [PROOF_SEED, proof_id.as_ref()], bump)]
    pub fraud_record: Account<'info, FraudRecord>,
    /// The offender's bond (GlobalBond-owned; its agent is checked against
    /// the signing key below, its PDA by GlobalBond's `slash`).
    #[account(mut)]
    pub bond: Account<'info, Bond>,
    /// Receives the slashed bond minus the prover's reward.
    /// CHECK: must be the configured treasury (address constraint).
    #[account(mut, address = config.treasury @ MachPayError::WrongTreasury)]
    pub treasury: UncheckedAccount<'info>,
    /// MachPay's PDA `[b"bond_authority"]`, signer of the GlobalBond slash.
    /// CHECK: only its address matters (seeds constraint).
    #[account(seeds = [BOND_AUTHORITY_SEED], bump = config.bond_authority_bump)]
    pub bond_authority: UncheckedAccount<'info>,
    /// The instructions sysvar, to read the Ed25519 precompile instruction.
    /// CHECK: address constraint (and checked again by the loader).
    #[account(address = anchor_lang::compat::solana_instructions_sysvar::ID)]
    pub instructions: UncheckedAccount<'info>,
    pub global_bond_program: Program<'info, GlobalBond>,
    pub system_program: Program<'info, System>,
}

pub fn handler(ctx: Context<ProveFraud>, kind: u8, proof_id: [u8; 32]) -> Result<()> {
    let kind = FraudKind::from_byte(kind).ok_or(MachPayError::UnknownProofKind)?;
    let precompile = preceding_instruction(&ctx.accounts.instructions)?;
    let entries = ed25519::parse(&precompile.program_id.to_bytes(), &precompile.data, 2).map_err(MachPayError::from)?;
    let (first, second) = match (entries.get(0), entries.get(1)) {
        (Some(a), Some(b)) => (a, b),
        _ => return err!(MachPayError::PrecompileSignatureCount),
    };
    require!(first.agent == second.agent, MachPayError::ProofAgentMismatch);
    let agent = Pubkey::new_from_array(*first.agent);
    require_keys_eq!(ctx.accounts.bond.agent, agent, MachPayError::WrongBond);
    // Only intents addressed to this deployment are judged here (the rule
    // itself requires both to carry the same domain).
    Intent::parse(first.message)
        .map_err(MachPayError::from)?
        .check_domain(&ctx.accounts.config.domain)
        .map_err(MachPayError::from)?;
    let computed =
        fraud::verify_proof(kind, first.signed_intent(), second.signed_intent()).map_err(MachPayError::from)?;
    require!(computed == proof_id, MachPayError::ProofIdMismatch);

    let slashed = ctx.accounts.bond.balance;
    let prover_reward = bps_share(slashed, ctx.accounts.config.prover_reward_bps);
    let bump = [ctx.accounts.config.bond_authority_bump];
    let seeds: &[&[u8]] = &[BOND_AUTHORITY_SEED, &bump];
    global_bond::cpi::slash(
        CpiContext::new_with_signer(
            global_bond::ID,
            global_bond::cpi::accounts::Slash {
                authority: ctx.accounts.bond_authority.to_account_info(),
                bond: ctx.accounts.bond.to_account_info(),
                prover: ctx.accounts.prover.to_account_info(),
                treasury: ctx.accounts.treasury.to_account_info(),
            },
            &[seeds],
        ),
        prover_reward,
    )?;

    let record = &mut ctx.accounts.fraud_record;
    record.proof_id = proof_id;
    record.kind = kind as u8;
    record.agent = agent;
    record.prover = ctx.accounts.prover.key();
    record.slashed = slashed;
    record.prover_reward = prover_reward;
    record.slot = Clock::get()?.slot;
    record.bump = ctx.bumps.fraud_record;
    emit_event(FraudProven { proof_id, kind: kind as u8, agent, prover: record.prover, slashed, prover_reward });
    Ok(())
}
