//! MachPay: settles agents' signed cumulative vouchers from their GlobalBond
//! bonds into per-(agent, vendor, asset) channels, and slashes a bond once
//! per fraud proof. Contract: docs/onchain.md §4.
#![allow(unexpected_cfgs)]

use anchor_lang::prelude::*;

pub mod error;
pub mod events;
pub mod instructions;
pub mod precompile;
pub mod state;

use instructions::*;

declare_id!("MachPay111111111111111111111111111111111111");

#[program]
pub mod machpay {
    use super::*;

    pub fn initialize(
        ctx: Context<Initialize>,
        domain: [u8; 8],
        treasury: Pubkey,
        prover_reward_bps: u16,
    ) -> Result<()> {
        instructions::initialize::handler(ctx, domain, treasury, prover_reward_bps)
    }

    pub fn update_config(
        ctx: Context<UpdateConfig>,
        new_admin: Pubkey,
        treasury: Pubkey,
        prover_reward_bps: u16,
    ) -> Result<()> {
        instructions::update_config::handler(ctx, new_admin, treasury, prover_reward_bps)
    }

    pub fn open_channel(ctx: Context<OpenChannel>) -> Result<()> {
        instructions::open_channel::handler(ctx)
    }

    pub fn settle<'info>(
        ctx: Context<'info, Settle<'info>>,
        root: [u8; 32],
        leaf_count: u64,
        total: u64,
    ) -> Result<()> {
        instructions::settle::handler(ctx, root, leaf_count, total)
    }

    pub fn prove_fraud(ctx: Context<ProveFraud>, kind: u8, proof_id: [u8; 32]) -> Result<()> {
        instructions::prove_fraud::handler(ctx, kind, proof_id)
    }
}
