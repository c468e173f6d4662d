//! Account layouts, discriminators and ids as docs/onchain.md states them:
//! clients filter with memcmp at these offsets, so they are a contract.
use anchor_lang::prelude::*;
use anchor_lang::{AccountSerialize, Discriminator};
use machpay::state::{Channel, Config, FraudRecord};
use sha2::{Digest, Sha256};

fn serialized<T: AccountSerialize>(account: &T) -> Vec<u8> {
    let mut out = Vec::new();
    account.try_serialize(&mut out).unwrap();
    out
}

fn discriminator(preimage: &str) -> [u8; 8] {
    Sha256::digest(preimage.as_bytes())[..8].try_into().unwrap()
}

fn key(b: u8) -> Pubkey {
    Pubkey::new_from_array([b; 32])
}

#[test]
fn program_ids_are_32_bytes_and_the_bond_authority_is_machpays_pda() {
    for id in [
        "MachPay111111111111111111111111111111111111",
        "GBond11111111111111111111111111111111111111",
        "SvcReg1111111111111111111111111111111111111",
    ] {
        let key: Pubkey = id.parse().unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert_eq!(key.to_string(), id);
    }
    assert_eq!(machpay::ID.to_string(), "MachPay111111111111111111111111111111111111");
    assert_eq!(global_bond::MACHPAY_PROGRAM_ID, machpay::ID);
    let (authority, _) = Pubkey::find_program_address(&[b"bond_authority"], &machpay::ID);
    assert_eq!(global_bond::MACHPAY_BOND_AUTHORITY, authority);
}

#[test]
fn fixed_pdas_match_the_contract() {
    let cases: [(&[u8], Pubkey, &str, u8); 3] = [
        (b"config", machpay::ID, "DcsEX3TbGXNxwcigq1sCLe7s9BSgTyYnmu4UCXrT1uZs", 251),
        (b"bond_authority", machpay::ID, "7ys6dd6BmbVK7c7u78JWYrPxiyu4MS2KuU2Z2CWfhpaq", 251),
        (b"config", global_bond::ID, "3W6bAypcvXnGnCqgRXXFMdxBpLcHQCGW73nCQF8w6gpd", 254),
    ];
    for (seed, program, address, bump) in cases {
        let (pda, b) = Pubkey::find_program_address(&[seed], &program);
        assert_eq!((pda.to_string().as_str(), b), (address, bump));
    }
}

#[test]
fn channel_layout() {
    let c =
        Channel { agent: key(1), vendor: key(2), asset: key(0), settled: 0x1122334455667788, last_nonce: 7, bump: 254 };
    let d = serialized(&c);
    assert_eq!(d.len(), 121);
    assert_eq!(d.len(), 8 + Channel::INIT_SPACE);
    assert_eq!(&d[..8], Channel::DISCRIMINATOR);
    assert_eq!(&d[..8], &discriminator("account:Channel"));
    assert_eq!(hex(&d[..8]), "319f636adc57db58");
    assert_eq!(&d[8..40], &[1; 32]);
    assert_eq!(&d[40..72], &[2; 32]);
    assert_eq!(&d[72..104], &[0; 32]);
    assert_eq!(&d[104..112], &0x1122334455667788u64.to_le_bytes());
    assert_eq!(&d[112..120], &7u64.to_le_bytes());
    assert_eq!(d[120], 254);
}

#[test]
fn config_layout() {
    let c = Config {
        admin: key(1),
        treasury: key(2),
        domain: *b"mp-test1",
        prover_reward_bps: 0x0102,
        bump: 9,
        bond_authority_bump: 8,
    };
    let d = serialized(&c);
    assert_eq!((d.len(), 8 + Config::INIT_SPACE), (84, 84));
    assert_eq!(hex(&d[..8]), "9b0caae01efacc82");
    assert_eq!(&d[8..40], &[1; 32]);
    assert_eq!(&d[40..72], &[2; 32]);
    assert_eq!(&d[72..80], b"mp-test1");
    assert_eq!(&d[80..82], &[2, 1]);
    assert_eq!((d[82], d[83]), (9, 8));
}

#[test]
fn fraud_record_layout() {
    let r = FraudRecord {
        proof_id: [5; 32],
        kind: 2,
        agent: key(1),
        prover: key(3),
        slashed: 10,
        prover_reward: 1,
        slot: 99,
        bump: 7,
    };
    let d = serialized(&r);
    assert_eq!((d.len(), 8 + FraudRecord::INIT_SPACE), (130, 130));
    assert_eq!(hex(&d[..8]), "af59dfcc3e27aad0");
    assert_eq!(&d[8..40], &[5; 32]);
    assert_eq!(d[40], 2);
    assert_eq!(&d[41..73], &[1; 32]);
    assert_eq!(&d[73..105], &[3; 32]);
    assert_eq!(&d[105..113], &10u64.to_le_bytes());
    assert_eq!(&d[113..121], &1u64.to_le_bytes());
    assert_eq!(&d[121..129], &99u64.to_le_bytes());
    assert_eq!(d[129], 7);
}

#[test]
fn instruction_and_event_discriminators_match_the_contract() {
    use anchor_lang::Discriminator as _;
    let ix = [
        (machpay::instruction::Initialize::DISCRIMINATOR, "initialize", "afaf6d1f0d989bed"),
        (machpay::instruction::UpdateConfig::DISCRIMINATOR, "update_config", "1d9efcbf0a53db63"),
        (machpay::instruction::OpenChannel::DISCRIMINATOR, "open_channel", "5b2dfd478ca66b6d"),
        (machpay::instruction::Settle::DISCRIMINATOR, "settle", "af2ab957908366d4"),
        (machpay::instruction::ProveFraud::DISCRIMINATOR, "prove_fraud", "5544baee3bc7e732"),
    ];
    for (d, name, h) in ix {
        assert_eq!(d, &discriminator(&format!("global:{name}")), "{name}");
        assert_eq!(hex(d), h, "{name}");
    }
    let ev = [
        (machpay::events::BatchSettled::DISCRIMINATOR, "BatchSettled", "ee0ebbc07f5f6809"),
        (machpay::events::AgentInsolvent::DISCRIMINATOR, "AgentInsolvent", "ac72617174259bf0"),
        (machpay::events::ChannelOpened::DISCRIMINATOR, "ChannelOpened", "fdd5ff601fbc2faa"),
        (machpay::events::FraudProven::DISCRIMINATOR, "FraudProven", "8cee5de63ba764fe"),
        (machpay::events::ConfigUpdated::DISCRIMINATOR, "ConfigUpdated", "28f1e67a0b13c6c2"),
    ];
    for (d, name, h) in ev {
        assert_eq!(d, &discriminator(&format!("event:{name}")), "{name}");
        assert_eq!(hex(d), h, "{name}");
    }
}

#[test]
fn error_codes_are_stable() {
    use machpay::error::MachPayError as E;
    let code = |e: E| u32::from(e);
    assert_eq!(code(E::Unauthorized), 6000);
    assert_eq!(code(E::MissingPrecompile), 6002);
    assert_eq!(code(E::PrecompileOffset), 6007);
    assert_eq!(code(E::RemainingAccounts), 6008);
    assert_eq!(code(E::WrongDomain), 6013);
    assert_eq!(code(E::WrongChannel), 6014);
    assert_eq!(code(E::WrongBond), 6015);
    assert_eq!(code(E::ProofOrder), 6019);
    assert_eq!(code(E::Overflow), 6023);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
