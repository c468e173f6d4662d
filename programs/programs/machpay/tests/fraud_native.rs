//! `prove_fraud` through MachPay's real entrypoint (tier 1, see tests/native):
//! a valid proof slashes the whole bond once; malformed ones slash nothing.
mod native;

use anchor_lang::prelude::*;
use anchor_lang::solana_program::instruction::Instruction;
use anchor_lang::{InstructionData, ToAccountMetas};
use machpay::error::MachPayError as E;
use machpay::events::FraudProven;
use machpay::state::{Config, FraudRecord};
use machpay_protocol::ed25519::ED25519_PROGRAM_ID;
use machpay_protocol::fraud::{self, FraudKind, SignedIntentRef};
use native::*;

struct Case {
    first: [u8; 97],
    second: [u8; 97],
    proof_id: [u8; 32],
}

/// Two intents with the same nonce and different content, canonically ordered.
fn equivocation(w: &World, agent: Pubkey) -> Case {
    let a = message(&agent, &w.vendor, 7, 100, 10);
    let b = message(&agent, &w.vendor, 7, 110, 20);
    let (first, second) =
        if machpay_protocol::intent::intent_id(&a) < machpay_protocol::intent::intent_id(&b) { (a, b) } else { (b, a) };
    let key = agent.to_bytes();
    let proof_id = fraud::verify_proof(
        FraudKind::Equivocation,
        SignedIntentRef { message: &first, agent: &key },
        SignedIntentRef { message: &second, agent: &key },
    )
    .unwrap();
    Case { first, second, proof_id }
}

fn treasury(w: &World) -> Pubkey {
    let cfg = &w.accounts[&config_address()];
    Config::try_deserialize(&mut &cfg.data[..]).unwrap().treasury
}

fn prove(
    w: &mut World,
    prover: Pubkey,
    keys: (Pubkey, Pubkey),
    messages: (&[u8; 97], &[u8; 97]),
    kind: u8,
    proof_id: [u8; 32],
) -> std::result::Result<Vec<Vec<u8>>, ProgramError> {
    let vouchers = [Voucher { agent: keys.0, message: *messages.0 }, Voucher { agent: keys.1, message: *messages.1 }];
    let record = Pubkey::find_program_address(&[b"proof", &proof_id], &machpay::ID).0;
    w.prealloc.insert(record, 8 + FraudRecord::INIT_SPACE);
    let accounts = machpay::accounts::ProveFraud {
        prover,
        config: config_address(),
        fraud_record: record,
        bond: bond_address(&keys.0),
        treasury: treasury(w),
        bond_authority: Pubkey::find_program_address(&[b"bond_authority"], &machpay::ID).0,
        instructions: anchor_lang::compat::solana_instructions_sysvar::ID,
        global_bond_program: global_bond::ID,
        system_program: anchor_lang::system_program::ID,
    }
    .to_account_metas(None);
    let precompile = Instruction {
        program_id: Pubkey::new_from_array(ED25519_PROGRAM_ID),
        accounts: vec![],
        data: precompile_data(&vouchers),
    };
    let ix = Instruction {
        program_id: machpay::ID,
        accounts,
        data: machpay::instruction::ProveFraud { kind, proof_id }.data(),
    };
    w.execute(&[precompile, ix], 1)
}

#[test]
fn an_equivocation_slashes_the_whole_bond_once() {
    let mut w = World::new();
    let agent = Pubkey::new_unique();
    w.add_bond(&agent, 10_000);
    let c = equivocation(&w, agent);
    let prover = w.add_wallet(1_000_000_000);
    let treasury = treasury(&w);
    let before = w.lamports(&prover);

    let logs = prove(&mut w, prover, (agent, agent), (&c.first, &c.second), 1, c.proof_id).unwrap();
    let proven = &events::<FraudProven>(&logs)[0];
    assert_eq!(
        (proven.slashed, proven.prover_reward, proven.agent),
        (10_000, 1_000, agent),
        "10% (1,000 bps) to the prover"
    );
    assert_eq!(w.lamports(&treasury), 9_000);
    let record_rent = Rent::default().minimum_balance(8 + FraudRecord::INIT_SPACE);
    assert_eq!(w.lamports(&prover) + record_rent - before, 1_000);
    let bond = w.bond(&agent);
    assert_eq!((bond.balance, bond.slashed, bond.total_slashed), (0, true, 10_000));
    let record_key = Pubkey::find_program_address(&[b"proof", &c.proof_id], &machpay::ID).0;
    let record = FraudRecord::try_deserialize(&mut &w.accounts[&record_key].data[..]).unwrap();
    assert_eq!(
        (record.proof_id, record.kind, record.agent, record.prover, record.slashed),
        (c.proof_id, 1, agent, prover, 10_000)
    );

    // the same offence again: the record exists, nothing moves
    w.add_bond(&agent, 5_000);
    assert!(prove(&mut w, prover, (agent, agent), (&c.first, &c.second), 1, c.proof_id).is_err());
    assert_eq!(w.bond(&agent).balance, 5_000);
    assert_eq!(w.lamports(&treasury), 9_000);
}

#[test]
fn malformed_proofs_slash_nothing() {
    let mut w = World::new();
    let agent = Pubkey::new_unique();
    w.add_bond(&agent, 10_000);
    let c = equivocation(&w, agent);
    let prover = w.add_wallet(1_000_000_000);

    let reversed = prove(&mut w, prover, (agent, agent), (&c.second, &c.first), 1, c.proof_id).unwrap_err();
    assert_eq!(code(reversed), u32::from(E::ProofOrder));
    let wrong_kind = prove(&mut w, prover, (agent, agent), (&c.first, &c.second), 2, c.proof_id).unwrap_err();
    assert_eq!(code(wrong_kind), u32::from(E::InvalidProof));
    let unknown = prove(&mut w, prover, (agent, agent), (&c.first, &c.second), 3, c.proof_id).unwrap_err();
    assert_eq!(code(unknown), u32::from(E::UnknownProofKind));
    let other_id = prove(&mut w, prover, (agent, agent), (&c.first, &c.second), 1, [9; 32]).unwrap_err();
    assert_eq!(code(other_id), u32::from(E::ProofIdMismatch));
    let stranger = Pubkey::new_unique();
    let mixed = prove(&mut w, prover, (agent, stranger), (&c.first, &c.second), 1, c.proof_id).unwrap_err();
    assert_eq!(code(mixed), u32::from(E::ProofAgentMismatch));
    // identical messages are a replay, not fraud
    let replay = prove(&mut w, prover, (agent, agent), (&c.first, &c.first), 1, c.proof_id).unwrap_err();
    assert_eq!(code(replay), u32::from(E::InvalidProof));
    // intents for another deployment are not judged here
    let (mut f, mut s) = (c.first, c.second);
    f[9..17].copy_from_slice(b"mp-main1");
    s[9..17].copy_from_slice(b"mp-main1");
    let foreign = prove(&mut w, prover, (agent, agent), (&f, &s), 1, c.proof_id).unwrap_err();
    assert_eq!(code(foreign), u32::from(E::WrongDomain));

    assert_eq!(w.bond(&agent).balance, 10_000);
}

#[test]
fn a_channel_inconsistency_slashes() {
    let mut w = World::new();
    let agent = Pubkey::new_unique();
    w.add_bond(&agent, 777);
    let low = message(&agent, &w.vendor, 1, 100, 10);
    let high = message(&agent, &w.vendor, 2, 105, 10); // 105 < 100 + 10
    let key = agent.to_bytes();
    let proof_id = fraud::verify_proof(
        FraudKind::ChannelInconsistency,
        SignedIntentRef { message: &low, agent: &key },
        SignedIntentRef { message: &high, agent: &key },
    )
    .unwrap();
    let prover = w.add_wallet(1_000_000_000);
    let logs = prove(&mut w, prover, (agent, agent), (&low, &high), 2, proof_id).unwrap();
    let proven = &events::<FraudProven>(&logs)[0];
    assert_eq!((proven.kind, proven.slashed, proven.prover_reward), (2, 777, 77));
    assert_eq!(w.bond(&agent).balance, 0);
}
