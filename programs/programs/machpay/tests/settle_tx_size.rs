//! The largest settle transaction, built with the real wire types, fits the
//! 1,232-byte packet (docs/onchain.md §5): a v0 message with one lookup
//! table, one Ed25519 precompile instruction carrying all K vouchers.
use anchor_lang::{InstructionData, ToAccountMetas};
use machpay_protocol::channel::{channel_seeds, NATIVE_ASSET};
use machpay_protocol::ed25519;
use machpay_protocol::Intent;
use solana_hash::Hash;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_message::{v0, Address, AddressLookupTableAccount, VersionedMessage};
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;

/// Solana's packet data size (IPv6 MTU minus headers).
const PACKET_DATA_SIZE: usize = 1232;

fn addr(p: &anchor_lang::prelude::Pubkey) -> Address {
    Address::new_from_array(p.to_bytes())
}

fn pda(seeds: &[&[u8]], program: &anchor_lang::prelude::Pubkey) -> anchor_lang::prelude::Pubkey {
    anchor_lang::prelude::Pubkey::find_program_address(seeds, program).0
}

struct Settle {
    ed25519: Instruction,
    settle: Instruction,
    table: AddressLookupTableAccount,
}

/// K vouchers of K different agents to one vendor, signed for real.
fn build_settle(k: usize) -> (Keypair, Settle) {
    use anchor_lang::prelude::Pubkey;
    let settler = Keypair::new();
    let vendor = Pubkey::new_unique();
    let agents: Vec<Keypair> = (0..k).map(|_| Keypair::new()).collect();
    let mut signed = Vec::new();
    let mut pairs = Vec::new();
    for (j, agent) in agents.iter().enumerate() {
        let agent_key = Pubkey::new_from_array(agent.pubkey().to_bytes());
        let channel = pda(&channel_seeds(&agent_key.to_bytes(), &vendor.to_bytes(), &NATIVE_ASSET), &machpay::ID);
        let bond = pda(&[b"bond", agent_key.as_ref()], &global_bond::ID);
        let message = Intent {
            domain: *b"mp-test1",
            channel: channel.to_bytes(),
            nonce: 1_000 + j as u64,
            cumulative: 1_000_000,
            amount: 1_000,
            expires_at: 1_900_000_000,
            context: [j as u8; 16],
        }
        .to_bytes();
        let signature: [u8; 64] = agent.sign_message(&message).into();
        signed.push((agent_key.to_bytes(), signature, message));
        pairs.push((channel, bond));
    }
    let entries: Vec<_> = signed.iter().map(|(a, s, m)| (a, s, m)).collect();
    let ed25519 = Instruction {
        program_id: Address::new_from_array(ed25519::ED25519_PROGRAM_ID),
        accounts: vec![],
        data: ed25519::build(&entries),
    };

    let config = pda(&[b"config"], &machpay::ID);
    let bond_authority = pda(&[b"bond_authority"], &machpay::ID);
    let fixed = machpay::accounts::Settle {
        settler: Pubkey::new_from_array(settler.pubkey().to_bytes()),
        vendor,
        config,
        bond_authority,
        instructions: anchor_lang::compat::solana_instructions_sysvar::ID,
        global_bond_program: global_bond::ID,
        system_program: anchor_lang::system_program::ID,
    };
    let mut metas: Vec<AccountMeta> = fixed
        .to_account_metas(None)
        .into_iter()
        .map(|m| AccountMeta { pubkey: addr(&m.pubkey), is_signer: m.is_signer, is_writable: m.is_writable })
        .collect();
    for (channel, bond) in &pairs {
        metas.push(AccountMeta::new(addr(channel), false));
        metas.push(AccountMeta::new(addr(bond), false));
    }
    let data = machpay::instruction::Settle { root: [7; 32], leaf_count: 10_000, total: 4_000_000 }.data();
    assert_eq!(data.len(), 8 + 32 + 8 + 8, "settle args are root, leaf_count, total only");
    let settle = Instruction { program_id: addr(&machpay::ID), accounts: metas, data };

    let mut addresses = vec![
        addr(&vendor),
        addr(&config),
        addr(&bond_authority),
        addr(&anchor_lang::compat::solana_instructions_sysvar::ID),
        addr(&global_bond::ID),
        addr(&anchor_lang::system_program::ID),
    ];
    for (channel, bond) in &pairs {
        addresses.push(addr(channel));
        addresses.push(addr(bond));
    }
    let table = AddressLookupTableAccount { key: Address::new_from_array([42; 32]), addresses };
    (settler, Settle { ed25519, settle, table })
}

/// Sign as a wallet does (over the serialized message) and measure the wire form.
fn signed_size(settler: &Keypair, message: VersionedMessage) -> usize {
    let signature = settler.sign_message(&bincode::serialize(&message).unwrap());
    let tx = VersionedTransaction { signatures: vec![signature], message };
    bincode::serialize(&tx).unwrap().len()
}

fn v0_size(k: usize, compute_budget: bool) -> usize {
    let (settler, s) = build_settle(k);
    let mut ixs = Vec::new();
    if compute_budget {
        // SetComputeUnitLimit(400_000): discriminator 2 || u32le.
        let mut data = vec![2u8];
        data.extend_from_slice(&400_000u32.to_le_bytes());
        let program = Address::from_str_const("ComputeBudget111111111111111111111111111111");
        ixs.push(Instruction { program_id: program, accounts: vec![], data });
    }
    ixs.push(s.ed25519);
    ixs.push(s.settle);
    let message = v0::Message::try_compile(&settler.pubkey(), &ixs, &[s.table], Hash::new_from_array([9; 32])).unwrap();
    // Only the fee payer and the two invoked programs stay static.
    assert_eq!(message.account_keys.len(), 3 + usize::from(compute_budget), "static keys");
    signed_size(&settler, VersionedMessage::V0(message))
}

fn legacy_size(k: usize) -> usize {
    let (settler, s) = build_settle(k);
    let message = solana_message::Message::new_with_blockhash(
        &[s.ed25519, s.settle],
        Some(&settler.pubkey()),
        &Hash::new_from_array([9; 32]),
    );
    signed_size(&settler, VersionedMessage::Legacy(message))
}

#[test]
fn four_channels_fit_one_v0_transaction() {
    let size = v0_size(4, false);
    assert!(size <= PACKET_DATA_SIZE, "K=4 settle tx is {size} bytes");
    // docs/onchain.md's byte count: 312 + 211 K
    for k in 1..=5 {
        assert_eq!(v0_size(k, false), 312 + 211 * k, "K={k}");
    }
    assert!(v0_size(5, false) > PACKET_DATA_SIZE, "five would not fit: the doc says K=4 is the maximum");
}

#[test]
fn four_channels_still_fit_with_a_compute_budget_instruction() {
    let size = v0_size(4, true);
    assert_eq!(size, 312 + 211 * 4 + 40);
    assert!(size <= PACKET_DATA_SIZE, "{size}");
}

#[test]
fn legacy_transactions_fit_two_channels_only() {
    assert!(legacy_size(2) <= PACKET_DATA_SIZE, "{}", legacy_size(2));
    assert!(legacy_size(3) > PACKET_DATA_SIZE, "{}", legacy_size(3));
}
