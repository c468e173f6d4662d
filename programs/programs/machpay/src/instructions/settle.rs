//! `settle`: pay the latest voucher of up to K channels of one vendor.
//!
//! Transaction layout (docs/onchain.md §5): instruction i-1 is the Ed25519
//! precompile carrying K canonical entries, instruction i is this one with
//! K (channel, bond) pairs in `remaining_accounts`, pair j for entry j.
use anchor_lang::prelude::*;
use anchor_lang::system_program::{
    allocate, assign, create_account, transfer, Allocate, Assign, CreateAccount, Transfer,
};
use global_bond::program::GlobalBond;
use global_bond::state::Bond;
use machpay_protocol::batch::batch_id;
use machpay_protocol::ed25519::{self, Entry};
use machpay_protocol::settlement;
use machpay_protocol::Intent;

use crate::error::MachPayError;
use crate::events::{emit_event, AgentInsolvent, BatchSettled, ChannelOpened, ChannelSettlement};
use crate::precompile::preceding_instruction;
use crate::state::{Channel, Config, BOND_AUTHORITY_SEED, CHANNEL_SEED, CONFIG_SEED, NATIVE_ASSET};

#[derive(Accounts)]
pub struct Settle<'info> {
    /// Pays the rent of channels opened by this settlement (and the fee).
    #[account(mut)]
    pub settler: Signer<'info>,
    /// The vendor of every channel settled here (a channel seed); receives
    /// the payments.
    /// CHECK: bound to each voucher through the channel PDA seeds.
    #[account(mut)]
    pub vendor: UncheckedAccount<'info>,
    #[account(seeds = [CONFIG_SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// MachPay's PDA `[b"bond_authority"]`, signer of the GlobalBond debits.
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

pub fn handler<'info>(ctx: Context<'info, Settle<'info>>, root: [u8; 32], leaf_count: u64, total: u64) -> Result<()> {
    let pairs = ctx.remaining_accounts;
    require!(!pairs.is_empty() && pairs.chunks_exact(2).remainder().is_empty(), MachPayError::RemainingAccounts);
    let count = pairs.len() / 2;

    let precompile = preceding_instruction(&ctx.accounts.instructions)?;
    let entries =
        ed25519::parse(&precompile.program_id.to_bytes(), &precompile.data, count).map_err(MachPayError::from)?;

    let vendor = ctx.accounts.vendor.key();
    let mut channels = Vec::with_capacity(count);
    let mut paid_total: u64 = 0;
    for (j, pair) in pairs.chunks_exact(2).enumerate() {
        let entry = entries.get(j).ok_or(MachPayError::PrecompileSignatureCount)?;
        let outcome = settle_one(&ctx, entry, &pair[0], &pair[1], &vendor)?;
        paid_total = paid_total.checked_add(outcome.paid).ok_or(MachPayError::Overflow)?;
        channels.push(outcome);
    }

    emit_event(BatchSettled {
        vendor,
        batch_id: batch_id(&vendor.to_bytes(), &root, leaf_count),
        root,
        leaf_count,
        total,
        paid: paid_total,
        channels,
    });
    Ok(())
}

/// Verify one voucher against its accounts, then pay what it still owes.
fn settle_one<'info>(
    ctx: &Context<'info, Settle<'info>>,
    entry: Entry<'_>,
    channel_info: &'info AccountInfo<'info>,
    bond_info: &'info AccountInfo<'info>,
    vendor: &Pubkey,
) -> Result<ChannelSettlement> {
    let intent = Intent::parse(entry.message).map_err(MachPayError::from)?;
    intent.check_domain(&ctx.accounts.config.domain).map_err(MachPayError::from)?;
    require!(channel_info.key.to_bytes() == intent.channel, MachPayError::WrongChannel);
    require!(channel_info.is_writable && bond_info.is_writable, MachPayError::NotWritable);
    let agent = Pubkey::new_from_array(*entry.agent);

    let mut channel = load_or_open_channel(ctx, channel_info, &agent, vendor)?;

    require_keys_eq!(*bond_info.owner, global_bond::ID, MachPayError::WrongBond);
    let bond = Bond::try_deserialize(&mut &bond_info.try_borrow_data()?[..]).map_err(|_| MachPayError::WrongBond)?;
    require_keys_eq!(bond.agent, agent, MachPayError::WrongBond);

    let outcome = settlement::settle(channel.settled, intent.cumulative, bond.balance);
    if outcome.paid > 0 {
        let bump = [ctx.accounts.config.bond_authority_bump];
        let seeds: &[&[u8]] = &[BOND_AUTHORITY_SEED, &bump];
        global_bond::cpi::debit(
            CpiContext::new_with_signer(
                global_bond::ID,
                global_bond::cpi::accounts::Debit {
                    authority: ctx.accounts.bond_authority.to_account_info(),
                    bond: bond_info.clone(),
                    recipient: ctx.accounts.vendor.to_account_info(),
                },
                &[seeds],
            ),
            outcome.paid,
            outcome.insolvent(),
        )?;
        channel.settled = outcome.new_settled;
        channel.last_nonce = intent.nonce;
        channel.try_serialize(&mut &mut channel_info.try_borrow_mut_data()?[..])?;
    }
    if outcome.insolvent() {
        emit_event(AgentInsolvent { agent, channel: channel_info.key(), owed: outcome.owed, paid: outcome.paid });
    }
    Ok(ChannelSettlement {
        channel: channel_info.key(),
        agent,
        nonce: intent.nonce,
        cumulative: intent.cumulative,
        settled: channel.settled,
        paid: outcome.paid,
    })
}

/// The channel state, creating the PDA on first use. An existing channel is
/// trusted only if MachPay owns it, its fields name this agent and vendor,
/// and its stored bump re-derives its address.
fn load_or_open_channel<'info>(
    ctx: &Context<'info, Settle<'info>>,
    info: &'info AccountInfo<'info>,
    agent: &Pubkey,
    vendor: &Pubkey,
) -> Result<Channel> {
    if info.owner == ctx.program_id {
        let channel = Channel::try_deserialize(&mut &info.try_borrow_data()?[..])?;
        require!(
            channel.agent == *agent && channel.vendor == *vendor && channel.asset.to_bytes() == NATIVE_ASSET,
            MachPayError::WrongChannel
        );
        let derived = Pubkey::create_program_address(
            &[CHANNEL_SEED, agent.as_ref(), vendor.as_ref(), &NATIVE_ASSET, &[channel.bump]],
            ctx.program_id,
        )
        .map_err(|_| MachPayError::WrongChannel)?;
        require_keys_eq!(derived, info.key(), MachPayError::WrongChannel);
        return Ok(channel);
    }

    let (derived, bump) =
        Pubkey::find_program_address(&[CHANNEL_SEED, agent.as_ref(), vendor.as_ref(), &NATIVE_ASSET], ctx.program_id);
    require_keys_eq!(derived, info.key(), MachPayError::WrongChannel);
    let channel = Channel {
        agent: *agent,
        vendor: *vendor,
        asset: Pubkey::new_from_array(NATIVE_ASSET),
        settled: 0,
        last_nonce: 0,
        bump,
    };
    create_pda(
        ctx,
        info,
        &[CHANNEL_SEED, agent.as_ref(), vendor.as_ref(), &NATIVE_ASSET, &[bump]],
        8 + Channel::INIT_SPACE,
    )?;
    channel.try_serialize(&mut &mut info.try_borrow_mut_data()?[..])?;
    emit_event(ChannelOpened { channel: info.key(), agent: *agent, vendor: *vendor, asset: channel.asset });
    Ok(channel)
}

/// Create a MachPay-owned PDA paid by the settler. Someone may have sent
/// lamports to the address beforehand (which would make `create_account`
/// fail forever): then top up, allocate and assign instead.
fn create_pda<'info>(
    ctx: &Context<'info, Settle<'info>>,
    info: &'info AccountInfo<'info>,
    seeds: &[&[u8]],
    space: usize,
) -> Result<()> {
    let system = ctx.accounts.system_program.key();
    let settler = ctx.accounts.settler.to_account_info();
    let rent = Rent::get()?.minimum_balance(space);
    let signer: &[&[&[u8]]] = &[seeds];
    let current = info.lamports();
    if current == 0 {
        return create_account(
            CpiContext::new_with_signer(system, CreateAccount { from: settler, to: info.clone() }, signer),
            rent,
            space as u64,
            ctx.program_id,
        );
    }
    if current < rent {
        transfer(CpiContext::new(system, Transfer { from: settler, to: info.clone() }), rent - current)?;
    }
    allocate(
        CpiContext::new_with_signer(system, Allocate { account_to_allocate: info.clone() }, signer),
        space as u64,
    )?;
    assign(CpiContext::new_with_signer(system, Assign { account_to_assign: info.clone() }, signer), ctx.program_id)
}
