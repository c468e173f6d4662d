//! `settle` through MachPay's real entrypoint (tier 1, see tests/native):
//! what it pays, what is a no-op, and every spoofing attempt it must refuse.
mod native;

use anchor_lang::prelude::*;
use anchor_lang::solana_program::instruction::Instruction;
use machpay::error::MachPayError as E;
use machpay::events::{AgentInsolvent, BatchSettled, ChannelOpened};
use machpay_protocol::batch::batch_id;
use machpay_protocol::ed25519::ED25519_PROGRAM_ID;
use native::*;

fn err(e: E) -> u32 {
    u32::from(e)
}

struct Agent {
    key: Pubkey,
    channel: Pubkey,
    bond: Pubkey,
}

fn agent(world: &mut World, bond_balance: u64) -> Agent {
    let key = Pubkey::new_unique();
    let bond = world.add_bond(&key, bond_balance);
    Agent { key, channel: channel_address(&key, &world.vendor), bond }
}

fn voucher(world: &World, a: &Agent, nonce: u64, cumulative: u64) -> Voucher {
    Voucher { agent: a.key, message: message(&a.key, &world.vendor, nonce, cumulative, 1) }
}

#[test]
fn pays_what_each_voucher_still_owes_and_opens_missing_channels() {
    let mut w = World::new();
    let fresh = agent(&mut w, 10_000);
    let known = agent(&mut w, 10_000);
    w.add_channel(&known.key, 300);
    let settler_before = w.lamports(&w.settler);

    let logs = w
        .settle(
            &[voucher(&w, &fresh, 5, 1_000), voucher(&w, &known, 9, 800)],
            &[(fresh.channel, fresh.bond), (known.channel, known.bond)],
        )
        .unwrap();

    assert_eq!(w.lamports(&w.vendor), 1_000 + 500);
    assert_eq!(w.bond(&fresh.key).balance, 9_000);
    assert_eq!(w.bond(&known.key).balance, 9_500);
    assert_eq!(w.bond(&fresh.key).total_debited, 1_000);
    let (c1, c2) = (w.channel(&fresh.channel).unwrap(), w.channel(&known.channel).unwrap());
    assert_eq!((c1.settled, c1.last_nonce, c1.agent, c1.vendor), (1_000, 5, fresh.key, w.vendor));
    assert_eq!((c2.settled, c2.last_nonce), (800, 9));
    // the settler paid the new channel's rent, nothing else
    let rent = Rent::default().minimum_balance(8 + machpay::state::Channel::INIT_SPACE);
    assert_eq!(settler_before - w.lamports(&w.settler), rent);
    assert_eq!(w.lamports(&fresh.channel), rent);

    let opened: Vec<ChannelOpened> = events(&logs);
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].channel, fresh.channel);
    let batch: Vec<BatchSettled> = events(&logs);
    assert_eq!(batch.len(), 1);
    let b = &batch[0];
    assert_eq!(b.batch_id, batch_id(&w.vendor.to_bytes(), &[3; 32], 7));
    assert_eq!((b.root, b.leaf_count, b.total, b.paid), ([3; 32], 7, 1_500, 1_500));
    assert_eq!(b.channels.len(), 2);
    assert_eq!((b.channels[0].channel, b.channels[0].paid, b.channels[0].settled), (fresh.channel, 1_000, 1_000));
    assert_eq!((b.channels[1].agent, b.channels[1].cumulative, b.channels[1].paid), (known.key, 800, 500));
    assert!(events::<AgentInsolvent>(&logs).is_empty());
}

#[test]
fn a_replayed_or_older_voucher_is_a_no_op() {
    let mut w = World::new();
    let a = agent(&mut w, 10_000);
    w.settle(&[voucher(&w, &a, 5, 1_000)], &[(a.channel, a.bond)]).unwrap();
    // the same transaction again (a settler retry after a timeout)
    let logs = w.settle(&[voucher(&w, &a, 5, 1_000)], &[(a.channel, a.bond)]).unwrap();
    assert_eq!(w.lamports(&w.vendor), 1_000);
    assert_eq!(events::<BatchSettled>(&logs)[0].paid, 0);
    // an older voucher
    w.settle(&[voucher(&w, &a, 4, 900)], &[(a.channel, a.bond)]).unwrap();
    assert_eq!(w.channel(&a.channel).unwrap().settled, 1_000);
    assert_eq!(w.bond(&a.key).balance, 9_000);
    // the same channel twice in one transaction pays once
    w.settle(&[voucher(&w, &a, 6, 1_200), voucher(&w, &a, 6, 1_200)], &[(a.channel, a.bond), (a.channel, a.bond)])
        .unwrap();
    assert_eq!(w.lamports(&w.vendor), 1_200);
    assert_eq!(w.channel(&a.channel).unwrap().settled, 1_200);
}

#[test]
fn a_short_bond_pays_what_is_there_and_the_rest_stays_collectable() {
    let mut w = World::new();
    let a = agent(&mut w, 400);
    let logs = w.settle(&[voucher(&w, &a, 5, 1_000)], &[(a.channel, a.bond)]).unwrap();
    assert_eq!(w.lamports(&w.vendor), 400);
    assert_eq!(w.channel(&a.channel).unwrap().settled, 400);
    let bond = w.bond(&a.key);
    assert_eq!((bond.balance, bond.insolvent), (0, true));
    let insolvent: Vec<AgentInsolvent> = events(&logs);
    assert_eq!((insolvent.len(), insolvent[0].owed, insolvent[0].paid), (1, 1_000, 400));

    // empty bond: pays nothing, still reported
    let logs = w.settle(&[voucher(&w, &a, 5, 1_000)], &[(a.channel, a.bond)]).unwrap();
    assert_eq!(events::<AgentInsolvent>(&logs)[0].paid, 0);

    // after a top-up the same voucher collects the rest, never more
    w.add_bond(&a.key, 5_000);
    w.settle(&[voucher(&w, &a, 5, 1_000)], &[(a.channel, a.bond)]).unwrap();
    assert_eq!(w.lamports(&w.vendor), 1_000);
    assert_eq!(w.bond(&a.key).balance, 4_400);
}

#[test]
fn expired_vouchers_still_settle() {
    let mut w = World::new();
    let a = agent(&mut w, 10_000);
    let mut m = message(&a.key, &w.vendor, 1, 50, 50);
    m[73..81].copy_from_slice(&0i64.to_le_bytes()); // expired in 1970
    w.settle(&[Voucher { agent: a.key, message: m }], &[(a.channel, a.bond)]).unwrap();
    assert_eq!(w.lamports(&w.vendor), 50);
}

fn settle_with_precompile(w: &mut World, program: Pubkey, data: Vec<u8>, pairs: &[(Pubkey, Pubkey)]) -> u32 {
    let precompile = Instruction { program_id: program, accounts: vec![], data };
    let settle = Instruction {
        program_id: machpay::ID,
        accounts: w.settle_metas(pairs),
        data: World::settle_data([0; 32], 1, 1),
    };
    code(w.execute(&[precompile, settle], 1).unwrap_err())
}

#[test]
fn the_precompile_must_immediately_precede_settle() {
    let mut w = World::new();
    let a = agent(&mut w, 10_000);
    let pairs = [(a.channel, a.bond)];
    let settle = Instruction {
        program_id: machpay::ID,
        accounts: w.settle_metas(&pairs),
        data: World::settle_data([0; 32], 1, 1),
    };
    // settle alone
    assert_eq!(code(w.execute(std::slice::from_ref(&settle), 0).unwrap_err()), err(E::MissingPrecompile));
    // precompile first, but another instruction in between
    let precompile = Instruction {
        program_id: Pubkey::new_from_array(ED25519_PROGRAM_ID),
        accounts: vec![],
        data: precompile_data(&[voucher(&w, &a, 1, 10)]),
    };
    let memo = Instruction { program_id: Pubkey::new_unique(), accounts: vec![], data: vec![1] };
    assert_eq!(code(w.execute(&[precompile, memo, settle], 2).unwrap_err()), err(E::PrecompileWrongProgram));
    assert_eq!(w.lamports(&w.vendor), 0);
}

#[test]
fn a_lookalike_precompile_is_refused() {
    let mut w = World::new();
    let a = agent(&mut w, 10_000);
    let pairs = [(a.channel, a.bond)];
    let data = precompile_data(&[voucher(&w, &a, 1, 10)]);
    // right bytes, another program
    assert_eq!(
        settle_with_precompile(&mut w, Pubkey::new_unique(), data.clone(), &pairs),
        err(E::PrecompileWrongProgram)
    );
    // two signatures for one channel, and one for two
    let two = precompile_data(&[voucher(&w, &a, 1, 10), voucher(&w, &a, 2, 20)]);
    assert_eq!(
        settle_with_precompile(&mut w, Pubkey::new_from_array(ED25519_PROGRAM_ID), two, &pairs),
        err(E::PrecompileSignatureCount)
    );
    let b = agent(&mut w, 10);
    let pairs2 = [(a.channel, a.bond), (b.channel, b.bond)];
    assert_eq!(
        settle_with_precompile(&mut w, Pubkey::new_from_array(ED25519_PROGRAM_ID), data, &pairs2),
        err(E::PrecompileSignatureCount)
    );
}

/// The published bypass: the precompile verifies bytes elsewhere (another
/// instruction, or another spot) while the program reads the canonical
/// spot. Every such redirection is refused.
#[test]
fn offsets_pointing_anywhere_but_the_canonical_spot_are_refused() {
    let mut w = World::new();
    let a = agent(&mut w, 10_000);
    let pairs = [(a.channel, a.bond)];
    let good = precompile_data(&[voucher(&w, &a, 1, 10)]);
    let ed = Pubkey::new_from_array(ED25519_PROGRAM_ID);
    for (field, value) in [(0usize, 0u16), (1, 1), (1, 0), (2, 17), (3, 1), (4, 2), (5, 96), (6, 0)] {
        let mut data = good.clone();
        data[2 + 2 * field..4 + 2 * field].copy_from_slice(&value.to_le_bytes());
        assert_eq!(
            settle_with_precompile(&mut w, ed, data, &pairs),
            err(E::PrecompileOffset),
            "field {field} = {value}"
        );
    }
    let mut padded = good.clone();
    padded[1] = 1;
    assert_eq!(settle_with_precompile(&mut w, ed, padded, &pairs), err(E::PrecompilePadding));
    let mut long = good;
    long.extend_from_slice(&[0; 97]);
    assert_eq!(settle_with_precompile(&mut w, ed, long, &pairs), err(E::PrecompileDataLength));
    assert_eq!(w.lamports(&w.vendor), 0);
}

#[test]
fn vouchers_must_match_the_accounts_they_settle() {
    let mut w = World::new();
    let a = agent(&mut w, 10_000);
    let b = agent(&mut w, 10_000);

    // another deployment's voucher
    let mut other = message(&a.key, &w.vendor, 1, 10, 10);
    other[9..17].copy_from_slice(b"mp-main1");
    let e = w.settle(&[Voucher { agent: a.key, message: other }], &[(a.channel, a.bond)]).unwrap_err();
    assert_eq!(code(e), err(E::WrongDomain));

    // the channel account is not the one the voucher names
    let e = w.settle(&[voucher(&w, &a, 1, 10)], &[(b.channel, a.bond)]).unwrap_err();
    assert_eq!(code(e), err(E::WrongChannel));

    // B signs a voucher naming A's channel (fresh and existing channel)
    let forged = Voucher { agent: b.key, message: message(&a.key, &w.vendor, 1, 10, 10) };
    assert_eq!(code(w.settle(&[forged], &[(a.channel, b.bond)]).unwrap_err()), err(E::WrongChannel));
    w.add_channel(&a.key, 0);
    let forged = Voucher { agent: b.key, message: message(&a.key, &w.vendor, 1, 10, 10) };
    assert_eq!(code(w.settle(&[forged], &[(a.channel, b.bond)]).unwrap_err()), err(E::WrongChannel));

    // A's voucher paid from B's bond
    assert_eq!(code(w.settle(&[voucher(&w, &a, 1, 10)], &[(a.channel, b.bond)]).unwrap_err()), err(E::WrongBond));

    // a voucher for another vendor's channel, settled to this vendor
    let elsewhere = Pubkey::new_unique();
    let m = message(&a.key, &elsewhere, 1, 10, 10);
    let their_channel = channel_address(&a.key, &elsewhere);
    assert_eq!(
        code(w.settle(&[Voucher { agent: a.key, message: m }], &[(their_channel, a.bond)]).unwrap_err()),
        err(E::WrongChannel)
    );

    // a "bond" that GlobalBond does not own
    let fake = Pubkey::new_unique();
    let real = w.accounts[&a.bond].clone();
    w.accounts.insert(fake, native::Acct { owner: Pubkey::new_unique(), ..real });
    assert_eq!(code(w.settle(&[voucher(&w, &a, 1, 10)], &[(a.channel, fake)]).unwrap_err()), err(E::WrongBond));

    assert_eq!(w.lamports(&w.vendor), 0);
    assert_eq!(w.bond(&a.key).balance, 10_000);
}

#[test]
fn malformed_account_lists_are_refused() {
    let mut w = World::new();
    let a = agent(&mut w, 10_000);
    let v = voucher(&w, &a, 1, 10);
    let precompile = Instruction {
        program_id: Pubkey::new_from_array(ED25519_PROGRAM_ID),
        accounts: vec![],
        data: precompile_data(&[v]),
    };

    let mut odd = w.settle_metas(&[(a.channel, a.bond)]);
    odd.pop();
    let ix = Instruction { program_id: machpay::ID, accounts: odd, data: World::settle_data([0; 32], 1, 1) };
    assert_eq!(code(w.execute(&[precompile.clone(), ix], 1).unwrap_err()), err(E::RemainingAccounts));

    let mut readonly = w.settle_metas(&[(a.channel, a.bond)]);
    readonly[7].is_writable = false;
    let ix = Instruction { program_id: machpay::ID, accounts: readonly, data: World::settle_data([0; 32], 1, 1) };
    assert_eq!(code(w.execute(&[precompile.clone(), ix], 1).unwrap_err()), err(E::NotWritable));

    // a spoofed instructions sysvar (any account holding crafted bytes)
    let mut spoofed = w.settle_metas(&[(a.channel, a.bond)]);
    let fake_sysvar = Pubkey::new_unique();
    spoofed[4].pubkey = fake_sysvar;
    let ix = Instruction { program_id: machpay::ID, accounts: spoofed, data: World::settle_data([0; 32], 1, 1) };
    let e = code(w.execute(&[precompile, ix], 1).unwrap_err());
    assert_eq!(e, u32::from(anchor_lang::error::ErrorCode::ConstraintAddress));
}
