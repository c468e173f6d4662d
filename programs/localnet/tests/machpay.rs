//! Tier 2: the real GlobalBond, MachPay and ServiceRegistry programs, compiled
//! natively, in a real Solana runtime (LiteSVM) with the real Ed25519
//! precompile, System program and address lookup tables. Every CPI is
//! followed by balance assertions (a CPI through the wrong stub crate would
//! silently move nothing).

use machpay_localnet::testkit::*;
use machpay_localnet::MachPayNet;
use machpay_protocol::Intent;
use solana_address::Address;
use solana_instruction::error::InstructionError;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_signer::Signer;
use solana_transaction_error::TransactionError;

const SOL: u64 = 1_000_000_000;

/// MachPay's custom error `6000 + n` (docs/onchain.md §4).
fn machpay_error(n: u32) -> InstructionError {
    InstructionError::Custom(6000 + n)
}

const PRECOMPILE_OFFSET: u32 = 7;
const MISSING_PRECOMPILE: u32 = 2;
const WRONG_DOMAIN: u32 = 13;
const WRONG_CHANNEL: u32 = 14;
const WRONG_BOND: u32 = 15;

struct Settlement {
    net: MachPayNet,
    settler: Keypair,
    vendor: Address,
}

fn settlement() -> Settlement {
    let mut net = MachPayNet::new();
    let settler = net.funded(10 * SOL);
    let vendor = net.funded(SOL).pubkey();
    Settlement { net, settler, vendor }
}

impl Settlement {
    fn settle(
        &mut self,
        ixs: Vec<Instruction>,
    ) -> Result<machpay_localnet::LandedTransaction, (TransactionError, Vec<String>)> {
        let settler = self.settler.insecure_clone();
        self.net.send(&ixs, &settler, &[])
    }
}

#[test]
fn one_settle_pays_four_channels_from_four_bonds_and_fits_a_packet() {
    let mut s = settlement();
    let agents: Vec<Keypair> = (0..4).map(|_| s.net.agent_with_bond(5 * SOL)).collect();
    let owed = [1_000_000u64, 2_000_000, 3_000_000, 4_000_000];
    let vouchers: Vec<Voucher> = agents.iter().zip(owed).map(|(a, c)| voucher(a, &s.vendor, 7, c, c / 2)).collect();

    // v0 + lookup table holding everything but the fee payer and the two
    // invoked programs (docs/onchain.md §5).
    let mut table_keys =
        vec![s.vendor, machpay_config(), bond_authority(), INSTRUCTIONS_SYSVAR, global_bond::ID, SYSTEM_PROGRAM];
    for a in &agents {
        table_keys.push(channel_of(&a.pubkey(), &s.vendor));
        table_keys.push(bond_of(&a.pubkey()));
    }
    let settler = s.settler.insecure_clone();
    let table = s.net.lookup_table(&settler, &table_keys);
    let tx = s.net.v0_transaction(&settle_ixs(&settler.pubkey(), &s.vendor, &vouchers), &settler, &[table]);
    let size = bincode::serialize(&tx).unwrap().len();
    assert!(size <= 1_232, "a 4-channel settle must fit one packet, got {size} bytes");
    eprintln!("4-channel settle transaction: {size} bytes");

    let vendor_before = s.net.chain.balance(&s.vendor);
    let landed = s.net.submit(tx).expect("settles");

    assert_eq!(s.net.chain.balance(&s.vendor), vendor_before + owed.iter().sum::<u64>());
    for (agent, paid) in agents.iter().zip(owed) {
        assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL - paid);
        assert_eq!(s.net.channel_settled(&agent.pubkey(), &s.vendor), paid);
    }
    let logs = landed.logs.join("\n");
    assert_eq!(
        landed.logs.iter().filter(|l| l.starts_with("Program data: ")).count(),
        4 + 4 + 1,
        "4 ChannelOpened, 4 BondDebited, 1 BatchSettled:\n{logs}"
    );
    assert!(logs.contains(&format!("Program {} invoke [2]", global_bond::ID)), "{logs}");
    assert!(!landed.loaded_writable.is_empty(), "accounts came through the lookup table");
}

#[test]
fn a_replayed_settle_pays_nothing() {
    let mut s = settlement();
    let agent = s.net.agent_with_bond(5 * SOL);
    let v = voucher(&agent, &s.vendor, 1, 2_000_000, 2_000_000);
    let ixs = settle_ixs(&s.settler.pubkey(), &s.vendor, std::slice::from_ref(&v));
    s.settle(ixs.clone()).expect("first settle pays");
    let vendor_after_first = s.net.chain.balance(&s.vendor);
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL - 2_000_000);

    // The same voucher again (a new transaction: fresh blockhash) is a no-op.
    s.net.chain.warp(0, 1);
    s.settle(ixs).expect("a replay is a successful no-op");
    assert_eq!(s.net.chain.balance(&s.vendor), vendor_after_first);
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL - 2_000_000);
    assert_eq!(s.net.channel_settled(&agent.pubkey(), &s.vendor), 2_000_000);

    // A stale (older, lower) voucher also pays nothing; a newer one pays the difference.
    let stale = voucher(&agent, &s.vendor, 0, 1_500_000, 1_500_000);
    s.settle(settle_ixs(&s.settler.pubkey(), &s.vendor, &[stale])).expect("stale voucher is a no-op");
    assert_eq!(s.net.chain.balance(&s.vendor), vendor_after_first);
    let newer = voucher(&agent, &s.vendor, 2, 3_000_000, 1_000_000);
    s.settle(settle_ixs(&s.settler.pubkey(), &s.vendor, &[newer])).expect("newer voucher pays");
    assert_eq!(s.net.chain.balance(&s.vendor), vendor_after_first + 1_000_000);
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL - 3_000_000);
}

#[test]
fn a_short_bond_pays_what_it_has_and_the_rest_after_a_top_up() {
    let mut s = settlement();
    let agent = s.net.agent_with_bond(2_000_000);
    let v = voucher(&agent, &s.vendor, 1, 5_000_000, 5_000_000);
    let vendor_before = s.net.chain.balance(&s.vendor);
    s.settle(settle_ixs(&s.settler.pubkey(), &s.vendor, std::slice::from_ref(&v))).expect("partial settle succeeds");
    assert_eq!(s.net.chain.balance(&s.vendor), vendor_before + 2_000_000);
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 0);
    let bond = s.net.chain.account(&bond_of(&agent.pubkey())).unwrap();
    assert_eq!(bond.data[80], 1, "insolvent flag set");

    let agent_key = agent.insecure_clone();
    s.net.send(&[deposit_ix(&agent.pubkey(), 10_000_000)], &agent_key, &[]).unwrap();
    s.settle(settle_ixs(&s.settler.pubkey(), &s.vendor, &[v])).expect("same voucher collects the rest");
    assert_eq!(s.net.chain.balance(&s.vendor), vendor_before + 5_000_000);
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 7_000_000);
}

#[test]
fn a_tampered_signature_fails_in_the_real_precompile_and_pays_nothing() {
    let mut s = settlement();
    let agent = s.net.agent_with_bond(5 * SOL);
    let mut v = voucher(&agent, &s.vendor, 1, 2_000_000, 2_000_000);
    v.signature[0] ^= 1;
    let vendor_before = s.net.chain.balance(&s.vendor);
    let (err, _) = s.settle(settle_ixs(&s.settler.pubkey(), &s.vendor, &[v])).unwrap_err();
    // Instruction 0 is the precompile: the runtime's Ed25519 verifier refused
    // it (PrecompileError::InvalidSignature = custom 2).
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::Custom(2)));
    assert_eq!(s.net.chain.balance(&s.vendor), vendor_before);
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL);
}

#[test]
fn spoofed_precompile_offsets_are_rejected() {
    let mut s = settlement();
    let agent = s.net.agent_with_bond(5 * SOL);
    let attacker = Keypair::new();
    // The precompile verifies a harmless message the attacker signed, placed
    // after the canonical entry; the canonical slots hold the victim's key
    // and a forged high-cumulative message with a garbage signature.
    let honest = voucher(&attacker, &s.vendor, 1, 1_000_000, 1_000_000);
    let forged = voucher(&agent, &s.vendor, 1, 4 * SOL, 4 * SOL);
    let mut data = precompile_ix(std::slice::from_ref(&forged)).data;
    let extra_at = data.len() as u16;
    data.extend_from_slice(&honest.agent.to_bytes());
    data.extend_from_slice(&honest.signature);
    data.extend_from_slice(&honest.message);
    // offsets: sig, sig ix, key, key ix, msg, msg size, msg ix
    let spoofed = [extra_at + 32, u16::MAX, extra_at, u16::MAX, extra_at + 96, 97, u16::MAX];
    for (i, v) in spoofed.iter().enumerate() {
        data[2 + 2 * i..4 + 2 * i].copy_from_slice(&v.to_le_bytes());
    }
    let mut ixs = settle_ixs(&s.settler.pubkey(), &s.vendor, &[forged]);
    ixs[0].data = data;
    let vendor_before = s.net.chain.balance(&s.vendor);
    let (err, logs) = s.settle(ixs).unwrap_err();
    assert!(
        matches!(err, TransactionError::InstructionError(1, InstructionError::Custom(c)) if (6003..=6007).contains(&c)),
        "{err:?}\n{}",
        logs.join("\n")
    );
    assert_eq!(s.net.chain.balance(&s.vendor), vendor_before);
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL);
}

#[test]
fn a_precompile_pointing_at_another_instruction_is_rejected() {
    let mut s = settlement();
    let agent = s.net.agent_with_bond(5 * SOL);
    let v = voucher(&agent, &s.vendor, 1, 2_000_000, 2_000_000);
    let mut ixs = settle_ixs(&s.settler.pubkey(), &s.vendor, &[v]);
    // The signature's instruction index now names instruction 0 (the
    // precompile itself, by index rather than 0xFFFF): same bytes verified,
    // but not the canonical layout the program demands.
    ixs[0].data[4..6].copy_from_slice(&0u16.to_le_bytes());
    let (err, _) = s.settle(ixs).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(1, machpay_error(PRECOMPILE_OFFSET)));
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL);
}

#[test]
fn a_settle_without_the_precompile_right_before_it_is_rejected() {
    let mut s = settlement();
    let agent = s.net.agent_with_bond(5 * SOL);
    let v = voucher(&agent, &s.vendor, 1, 2_000_000, 2_000_000);
    let ixs = settle_ixs(&s.settler.pubkey(), &s.vendor, &[v]);
    let (err, _) = s.settle(vec![ixs[1].clone()]).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, machpay_error(MISSING_PRECOMPILE)));
    // Precompile first, but another instruction between it and settle.
    let memo = Instruction::new_with_bytes(
        SYSTEM_PROGRAM,
        &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![AccountMeta::new(s.settler.pubkey(), true), AccountMeta::new(s.settler.pubkey(), true)],
    );
    let (err, _) = s.settle(vec![ixs[0].clone(), memo, ixs[1].clone()]).unwrap_err();
    assert!(matches!(err, TransactionError::InstructionError(2, InstructionError::Custom(c)) if c >= 6002), "{err:?}");
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL);
}

#[test]
fn a_voucher_signed_by_someone_else_is_rejected() {
    let mut s = settlement();
    let victim = s.net.agent_with_bond(5 * SOL);
    let attacker = Keypair::new();
    // The attacker signs a voucher for the victim's channel; the precompile
    // accepts the attacker's valid signature, the program must not.
    let forged = voucher_with(
        &attacker,
        Intent {
            domain: LOCAL_DOMAIN,
            channel: channel_of(&victim.pubkey(), &s.vendor).to_bytes(),
            nonce: 1,
            cumulative: SOL,
            amount: SOL,
            expires_at: i64::MAX,
            context: [0; 16],
        },
    );
    let mut ixs = settle_ixs(&s.settler.pubkey(), &s.vendor, std::slice::from_ref(&forged));
    // Point the pair at the victim's channel and bond.
    ixs[1].accounts[8].pubkey = bond_of(&victim.pubkey());
    let vendor_before = s.net.chain.balance(&s.vendor);
    let (err, _) = s.settle(ixs).unwrap_err();
    assert!(
        err == TransactionError::InstructionError(1, machpay_error(WRONG_CHANNEL))
            || err == TransactionError::InstructionError(1, machpay_error(WRONG_BOND)),
        "{err:?}"
    );
    assert_eq!(s.net.chain.balance(&s.vendor), vendor_before);
    assert_eq!(s.net.bond_balance(&victim.pubkey()), 5 * SOL);
}

#[test]
fn a_voucher_for_another_deployment_is_rejected() {
    let mut s = settlement();
    let agent = s.net.agent_with_bond(5 * SOL);
    let mut intent = voucher(&agent, &s.vendor, 1, 2_000_000, 2_000_000).intent();
    intent.domain = *b"devnet!!";
    let v = voucher_with(&agent, intent);
    let (err, _) = s.settle(settle_ixs(&s.settler.pubkey(), &s.vendor, &[v])).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(1, machpay_error(WRONG_DOMAIN)));
    assert_eq!(s.net.bond_balance(&agent.pubkey()), 5 * SOL);
}

#[test]
fn one_bad_voucher_fails_the_whole_batch() {
    let mut s = settlement();
    let good = s.net.agent_with_bond(5 * SOL);
    let bad = s.net.agent_with_bond(5 * SOL);
    let mut bad_intent = voucher(&bad, &s.vendor, 1, 1_000_000, 1_000_000).intent();
    bad_intent.domain = *b"elsewher";
    let vouchers = vec![voucher(&good, &s.vendor, 1, 1_000_000, 1_000_000), voucher_with(&bad, bad_intent)];
    let (err, _) = s.settle(settle_ixs(&s.settler.pubkey(), &s.vendor, &vouchers)).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(1, machpay_error(WRONG_DOMAIN)));
    assert_eq!(s.net.bond_balance(&good.pubkey()), 5 * SOL, "nothing is paid on any channel of a failed tx");
    assert_eq!(s.net.channel_settled(&good.pubkey(), &s.vendor), 0);
}

#[test]
fn an_equivocation_proof_slashes_the_bond_once() {
    let mut net = MachPayNet::new();
    let agent = net.agent_with_bond(10 * SOL);
    let vendor = Address::new_unique();
    let prover = net.funded(SOL);
    let a = voucher(&agent, &vendor, 5, 1_000_000, 1_000_000);
    let b = voucher(&agent, &vendor, 5, 2_000_000, 2_000_000);
    let (first, second) = if a.id() < b.id() { (a, b) } else { (b, a) };

    let prover_before = net.chain.balance(&prover.pubkey());
    let treasury_before = net.chain.balance(&net.treasury);
    let treasury = net.treasury;
    let prover_key = prover.insecure_clone();
    let landed = net
        .send(&prove_fraud_ixs(&prover.pubkey(), 1, &first, &second, &treasury), &prover_key, &[])
        .expect("proof accepted");

    let reward = 10 * SOL * u64::from(PROVER_REWARD_BPS) / 10_000;
    assert_eq!(net.bond_balance(&agent.pubkey()), 0);
    let record_rent = net.chain.svm().minimum_balance_for_rent_exemption(130);
    assert_eq!(net.chain.balance(&prover.pubkey()), prover_before + reward - record_rent - landed.fee);
    assert_eq!(net.chain.balance(&treasury), treasury_before + 10 * SOL - reward);
    let bond = net.chain.account(&bond_of(&agent.pubkey())).unwrap();
    assert_eq!(bond.data[81], 1, "slashed flag set");

    // The same proof again: refused at the record's creation, nothing moves.
    net.chain.warp(0, 1);
    let treasury_after = net.chain.balance(&treasury);
    let (err, _) =
        net.send(&prove_fraud_ixs(&prover.pubkey(), 1, &first, &second, &treasury), &prover_key, &[]).unwrap_err();
    assert!(matches!(err, TransactionError::InstructionError(1, _)), "{err:?}");
    assert_eq!(net.chain.balance(&treasury), treasury_after);
    assert_eq!(net.bond_balance(&agent.pubkey()), 0);
}

#[test]
fn a_proof_with_a_wrong_treasury_or_out_of_order_is_rejected() {
    let mut net = MachPayNet::new();
    let agent = net.agent_with_bond(10 * SOL);
    let vendor = Address::new_unique();
    let prover = net.funded(SOL);
    let a = voucher(&agent, &vendor, 5, 1_000_000, 1_000_000);
    let b = voucher(&agent, &vendor, 5, 2_000_000, 2_000_000);
    let (first, second) = if a.id() < b.id() { (a, b) } else { (b, a) };
    let prover_key = prover.insecure_clone();
    let thief = Address::new_unique();
    let (err, _) =
        net.send(&prove_fraud_ixs(&prover.pubkey(), 1, &first, &second, &thief), &prover_key, &[]).unwrap_err();
    assert!(matches!(err, TransactionError::InstructionError(1, InstructionError::Custom(_))), "{err:?}");
    let treasury = net.treasury;
    let (err, _) =
        net.send(&prove_fraud_ixs(&prover.pubkey(), 1, &second, &first, &treasury), &prover_key, &[]).unwrap_err();
    assert!(matches!(err, TransactionError::InstructionError(1, InstructionError::Custom(_))), "{err:?}");
    assert_eq!(net.bond_balance(&agent.pubkey()), 10 * SOL);
}

#[test]
fn a_withdrawal_waits_for_the_timelock_on_the_runtime_clock() {
    let mut net = MachPayNet::new();
    let agent = net.agent_with_bond(3 * SOL);
    let key = agent.insecure_clone();
    net.send(&[request_withdrawal_ix(&agent.pubkey(), SOL)], &key, &[]).expect("request");
    let (err, _) = net.send(&[withdraw_ix(&agent.pubkey())], &key, &[]).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::Custom(6005)), "WithdrawalLocked");

    net.chain.warp(WITHDRAWAL_TIMELOCK + 1, 10);
    let before = net.chain.balance(&agent.pubkey());
    let landed = net.send(&[withdraw_ix(&agent.pubkey())], &key, &[]).expect("unlocked");
    assert_eq!(net.chain.balance(&agent.pubkey()), before + SOL - landed.fee);
    assert_eq!(net.bond_balance(&agent.pubkey()), 2 * SOL);
}

#[test]
fn program_derived_addresses_match_the_contract() {
    let mut s = settlement();
    let agent = s.net.agent_with_bond(SOL);
    let v = voucher(&agent, &s.vendor, 1, 1_000_000, 1_000_000);
    s.settle(settle_ixs(&s.settler.pubkey(), &s.vendor, &[v])).unwrap();
    let channel = s.net.chain.account(&channel_of(&agent.pubkey(), &s.vendor)).expect("channel created lazily");
    assert_eq!(channel.owner, machpay::ID);
    assert_eq!(channel.data.len(), 121);
    assert_eq!(&channel.data[8..40], agent.pubkey().as_ref());
    assert_eq!(&channel.data[40..72], s.vendor.as_ref());
    let bond = s.net.chain.account(&bond_of(&agent.pubkey())).unwrap();
    assert_eq!((bond.owner, bond.data.len()), (global_bond::ID, 83));
    assert_eq!(global_bond::MACHPAY_BOND_AUTHORITY, bond_authority());
    let config = s.net.chain.account(&machpay_config()).unwrap();
    assert_eq!(&config.data[72..80], &LOCAL_DOMAIN);
}

/// Native code is x86-64, where u128 is 16-byte aligned; on SBF it is 8. A
/// zero-copy (`#[account(zero_copy)]` / bytemuck) layout with a u128 would
/// differ between this harness and the chain, so none may exist.
#[test]
fn no_zero_copy_layout_holds_a_u128() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../programs");
    let mut sources = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    assert!(sources.len() >= 10, "found the program sources");
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        let zero_copy = text.contains("zero_copy") || text.contains("bytemuck") || text.contains("repr(C)");
        if zero_copy {
            assert!(
                !text.contains("u128") && !text.contains("i128"),
                "{} has a zero-copy layout with a 128-bit integer",
                path.display()
            );
        }
    }
}
