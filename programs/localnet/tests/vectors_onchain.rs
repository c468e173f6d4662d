//! Tier 2 (added by the programs branch): every presented intent of
//! schemas/vectors/invalid_signatures.json, settled for real through the
//! Ed25519 precompile and MachPay. What off-chain verification refuses for a
//! cryptographic reason, the chain must refuse too (the precompile, at
//! instruction 0), so a vendor never serves an intent that cannot be paid;
//! what the program itself decides (domain, decode rules) fails at
//! instruction 1 with MachPay's code; accepted intents (and expired ones:
//! expiry limits serving, not settling) are paid.
use machpay_localnet::testkit::*;
use machpay_localnet::{Chain, MachPayNet};
use serde_json::Value;
use solana_address::Address;
use solana_instruction::error::InstructionError;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_signer::Signer;
use solana_transaction_error::TransactionError;

const SOL: u64 = 1_000_000_000;

fn vectors(name: &str) -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/vectors").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// A runtime whose MachPay config carries the vectors' domain.
fn net_with_domain(domain: [u8; 8]) -> MachPayNet {
    let mut chain = Chain::new();
    machpay_localnet::programs::load(&mut chain);
    let admin = Keypair::new();
    let treasury = Address::new_unique();
    chain.airdrop(&admin.pubkey(), 100 * SOL).unwrap();
    let mut net = MachPayNet { chain, admin, treasury };
    let init = Instruction {
        program_id: machpay::ID,
        accounts: vec![
            AccountMeta::new(net.admin.pubkey(), true),
            AccountMeta::new(machpay_config(), false),
            AccountMeta::new_readonly(SYSTEM_PROGRAM, false),
        ],
        data: anchor_lang::InstructionData::data(&machpay::instruction::Initialize {
            domain,
            treasury,
            prover_reward_bps: 1_000,
        }),
    };
    let admin = net.admin.insecure_clone();
    net.send(&[init], &admin, &[]).expect("machpay config");
    net
}

/// A deployment configured for `domain`, with the vectors' agents bonded and
/// their vendors funded (a vendor account must be rent-exempt after it is
/// paid, docs/onchain.md §5).
struct Deployment {
    net: MachPayNet,
    settler: Keypair,
}

fn deployment(domain: [u8; 8], agents: &[Keypair], vendors: &[Address]) -> Deployment {
    let mut net = net_with_domain(domain);
    let settler = net.funded(10 * SOL);
    for agent in agents {
        net.chain.airdrop(&agent.pubkey(), 100 * SOL).unwrap();
        let agent = agent.insecure_clone();
        net.send(&[deposit_ix(&agent.pubkey(), 50 * SOL)], &agent, &[]).expect("deposit");
    }
    for vendor in vendors {
        net.chain.airdrop(vendor, SOL).unwrap();
    }
    Deployment { net, settler }
}

#[test]
fn every_presented_intent_gets_the_same_verdict_on_chain() {
    let intents = vectors("intents");
    let cases = vectors("invalid_signatures");
    let agents: Vec<Keypair> = intents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| Keypair::new_from_array(unhex(&a["seed"]).try_into().unwrap()))
        .collect();
    let vendors: Vec<Address> = intents["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Address::new_from_array(unhex(&v["public"]).try_into().unwrap()))
        .collect();
    // one deployment per domain the cases present (wrong_domain uses another)
    let mut deployments: std::collections::BTreeMap<[u8; 8], Deployment> = Default::default();

    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (message, signature, agent) = (unhex(&case["message"]), unhex(&case["signature"]), unhex(&case["agent"]));
        if message.len() != 97 || signature.len() != 64 || agent.len() != 32 {
            // Not expressible in the canonical precompile layout at all.
            continue;
        }
        let domain: [u8; 8] = unhex(&case["domain"]).try_into().unwrap();
        let d = deployments.entry(domain).or_insert_with(|| deployment(domain, &agents, &vendors));
        let agent = Address::new_from_array(agent.try_into().unwrap());
        let channel = Address::new_from_array(message[17..49].try_into().unwrap());
        // the vendor whose channel this is (for any real agent), else the first
        let vendor = agents
            .iter()
            .flat_map(|a| vendors.iter().map(move |v| (a.pubkey(), *v)))
            .find(|(a, v)| channel_of(a, v) == channel)
            .map_or(vendors[0], |(_, v)| v);
        let voucher = Voucher { agent, signature: signature.try_into().unwrap(), message: message.try_into().unwrap() };
        let mut settle = settle_ix(&d.settler.pubkey(), &vendor, std::slice::from_ref(&voucher), [0; 32], 1, 1);
        // pay from the bond of the key that signed, at the channel the message names
        settle.accounts[7] = AccountMeta::new(channel, false);
        settle.accounts[8] = AccountMeta::new(bond_of(&agent), false);
        let vendor_before = d.net.chain.account(&vendor).map_or(0, |a| a.lamports);
        let s = d.settler.insecure_clone();
        let outcome = d.net.send(&[precompile_ix(std::slice::from_ref(&voucher)), settle], &s, &[]);
        let reason = case["expect"]["reason"].as_str();
        let paid = d.net.chain.account(&vendor).map_or(0, |a| a.lamports) - vendor_before;
        match reason {
            None | Some("expired") => {
                outcome.unwrap_or_else(|(e, logs)| {
                    panic!("{name}: accepted off-chain but refused on-chain: {e:?}\n{logs:#?}")
                });
            }
            Some(r) => {
                let (err, _) =
                    outcome.err().unwrap_or_else(|| panic!("{name}: refused off-chain ({r}) but settled on-chain"));
                assert_eq!(paid, 0, "{name}");
                let expected_program_code = match r {
                    "bad_magic" => Some(10),
                    "unsupported_version" => Some(11),
                    "amount_out_of_range" => Some(12),
                    "wrong_domain" => Some(13),
                    _ => None,
                };
                match (expected_program_code, err) {
                    (Some(n), TransactionError::InstructionError(1, InstructionError::Custom(c))) => {
                        assert_eq!(c, 6000 + n, "{name}")
                    }
                    // a bad message whose signature is also bad may stop at the precompile
                    (Some(_), TransactionError::InstructionError(0, _)) => {}
                    // cryptographic reasons: the precompile itself refuses (all of
                    // them here, including the non-canonical key that protocol.md §4
                    // expected only off-chain verification to refuse)
                    (None, TransactionError::InstructionError(0, _)) => {}
                    (_, other) => panic!("{name}: {r} refused at the wrong place: {other:?}"),
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} cases ran");
    assert!(deployments.len() >= 2, "the wrong-domain case needs a second deployment");
}
