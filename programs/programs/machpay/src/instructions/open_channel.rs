use anchor_lang::prelude::*;

use crate::events::{emit_event, ChannelOpened};
use crate::state::{Channel, CHANNEL_SEED, NATIVE_ASSET};

#[derive(Accounts)]
pub struct OpenChannel<'info> {
    /// Pays the channel's rent (anyone: a channel holds no funds).
    #[account(mut)]
    pub payer: Signer<'info>,
    /// CHECK: only its address is used, as a PDA seed.
    pub agent: UncheckedAccount<'info>,
    /// CHECK: only its address is used, as a PDA seed.
    pub vendor: UncheckedAccount<'info>,
    #[account(
        init,
        payer = payer,
        space = 8 + Channel::INIT_SPACE,
        seeds = [CHANNEL_SEED, agent.key().as_ref(), vendor.key().as_ref(), NATIVE_ASSET.as_ref()],
        bump,
    )]
    pub channel: Account<'info, Channel>,
    pub system_program: Program<'info, System>,
}

/// Open a native-SOL channel ahead of its first settlement (optional:
/// `settle` opens missing channels itself, at a higher compute cost).
pub fn handler(ctx: Context<OpenChannel>) -> Result<()> {
    let channel = &mut ctx.accounts.channel;
    channel.agent = ctx.accounts.agent.key();
    channel.vendor = ctx.accounts.vendor.key();
    channel.asset = Pubkey::new_from_array(NATIVE_ASSET);
    channel.settled = 0;
    channel.last_nonce = 0;
    channel.bump = ctx.bumps.channel;
    emit_event(ChannelOpened {
        channel: channel.key(),
        agent: channel.agent,
        vendor: channel.vendor,
        asset: channel.asset,
    });
    Ok(())
}
