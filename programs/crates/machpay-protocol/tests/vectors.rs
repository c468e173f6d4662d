//! The cross-language contract: what Python generates in schemas/vectors/,
//! Rust parses and computes identically.
mod common;

use common::*;
use machpay_protocol::channel::channel_seeds;
use machpay_protocol::fraud::{self, FraudKind, SignedIntentRef};
use machpay_protocol::intent::intent_id;
use machpay_protocol::merkle;
use machpay_protocol::{Intent, Reason};

#[test]
fn intents_parse_to_the_fields_python_signed() {
    let v = vectors("intents");
    let domain: [u8; 8] = array(&v["domain"]);
    let intents = v["intents"].as_array().unwrap();
    assert!(!intents.is_empty());
    for case in intents {
        let name = case["name"].as_str().unwrap();
        let message = bytes(&case["message"]);
        let intent = Intent::parse(&message).unwrap_or_else(|e| panic!("{name}: {e}"));
        let f = &case["fields"];
        assert_eq!(intent.domain, array::<8>(&f["domain"]), "{name}");
        assert_eq!(intent.channel, array::<32>(&f["channel"]), "{name}");
        assert_eq!(intent.nonce, u64_of(&f["nonce"]), "{name}");
        assert_eq!(intent.cumulative, u64_of(&f["cumulative"]), "{name}");
        assert_eq!(intent.amount, u64_of(&f["amount"]), "{name}");
        assert_eq!(intent.expires_at, f["expires_at"].as_i64().unwrap(), "{name}");
        assert_eq!(intent.context, array::<16>(&f["context"]), "{name}");
        assert_eq!(intent.to_bytes().as_slice(), message.as_slice(), "{name}: re-encoding differs");
        assert_eq!(intent_id(&message), array::<32>(&case["id"]), "{name}: id");
        intent.check_domain(&domain).unwrap();
    }
}

#[test]
fn channel_pdas_and_bumps_equal_the_vectors() {
    let v = vectors("intents");
    let program_id: [u8; 32] = array(&v["program_id_hex"]);
    let agents = v["agents"].as_array().unwrap();
    let vendors = v["vendors"].as_array().unwrap();
    for case in v["intents"].as_array().unwrap() {
        let agent: [u8; 32] = array(&agents[case["agent_index"].as_u64().unwrap() as usize]["public"]);
        let vendor: [u8; 32] = array(&vendors[case["vendor_index"].as_u64().unwrap() as usize]["public"]);
        let asset: [u8; 32] = array(&case["asset"]);
        let (pda, bump) = find_program_address(&channel_seeds(&agent, &vendor, &asset), &program_id);
        assert_eq!(pda, array::<32>(&case["channel"]), "{}", case["name"]);
        assert_eq!(u64::from(bump), case["channel_bump"].as_u64().unwrap(), "{}", case["name"]);
    }
}

/// The decode-level and binding-level rejections are the program's own; the
/// cryptographic ones belong to the Ed25519 precompile (tier 2 runs those
/// against the real verifier), so here they must at least parse.
#[test]
fn invalid_signature_vectors_fail_where_the_program_decides() {
    let v = vectors("invalid_signatures");
    let mut decided_here = 0;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let message = bytes(&case["message"]);
        let domain: [u8; 8] = array(&case["domain"]);
        let reason = case["expect"]["reason"].as_str();
        let field = case["expect"]["field"].as_str();
        let outcome = Intent::parse(&message).and_then(|i| i.check_domain(&domain).map(|_| i));
        match (reason, field) {
            (Some("bad_length"), Some("message"))
            | (Some("bad_magic"), _)
            | (Some("unsupported_version"), _)
            | (Some("amount_out_of_range"), _)
            | (Some("wrong_domain"), _) => {
                let err = outcome.expect_err(name);
                assert_eq!(Some(err.reason.as_str()), reason, "{name}");
                assert_eq!(Some(err.field), field, "{name}");
                decided_here += 1;
            }
            // Expiry limits serving, never settling: the program accepts it.
            (Some("expired"), _) | (None, _) => {
                outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            // Signature/key problems: the precompile's verdict, message is well-formed.
            _ => {
                if message.len() == 97 {
                    outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
    }
    assert!(decided_here >= 7, "expected the decode/binding cases to be present, got {decided_here}");
}

#[test]
fn merkle_roots_and_every_audit_path_equal_the_vectors() {
    let v = vectors("merkle");
    assert_eq!(merkle::root::<&[u8]>(&[]), array::<32>(&v["empty_root"]));
    let mut checked = 0;
    for set in v["sets"].as_array().unwrap() {
        let leaves: Vec<Vec<u8>> = set["leaves"].as_array().unwrap().iter().map(bytes).collect();
        for tree in set["trees"].as_array().unwrap() {
            let size = tree["size"].as_u64().unwrap() as usize;
            let root: [u8; 32] = array(&tree["root"]);
            assert_eq!(merkle::root(&leaves[..size]), root, "{} size {size}", set["name"]);
            for (index, proof) in tree["proofs"].as_array().unwrap().iter().enumerate() {
                let path: Vec<[u8; 32]> = proof.as_array().unwrap().iter().map(array::<32>).collect();
                assert_eq!(merkle::inclusion_path(&leaves[..size], index).unwrap(), path, "path {index}/{size}");
                assert!(merkle::verify_inclusion(&leaves[index], index as u64, size as u64, &path, &root));
                // The leaf count is committed: the same path under another size must not verify
                // unless the shape is genuinely identical, and a wrong leaf never does.
                assert!(!merkle::verify_inclusion(b"not a leaf", index as u64, size as u64, &path, &root));
                assert!(!merkle::verify_inclusion(&leaves[index], index as u64, size as u64 + 64, &path, &root));
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} paths checked");
}

#[test]
fn fraud_vectors_yield_the_same_kind_order_and_proof_id() {
    let v = vectors("fraud");
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (ma, mb) = (array::<97>(&case["a"]["message"]), array::<97>(&case["b"]["message"]));
        let (ka, kb) = (array::<32>(&case["a"]["agent"]), array::<32>(&case["b"]["agent"]));
        let a = SignedIntentRef { message: &ma, agent: &ka };
        let b = SignedIntentRef { message: &mb, agent: &kb };
        let detected = fraud::detect(a, b).unwrap();
        let expect = &case["expect"];
        if expect.is_null() {
            assert_eq!(detected, None, "{name}: honest pair flagged");
            // and no proof can be forged from it in either order, for either kind
            for kind in [FraudKind::Equivocation, FraudKind::ChannelInconsistency] {
                assert!(fraud::verify_proof(kind, a, b).is_err(), "{name}");
                assert!(fraud::verify_proof(kind, b, a).is_err(), "{name}");
            }
            continue;
        }
        let kind = FraudKind::from_byte(expect["kind_byte"].as_u64().unwrap() as u8).unwrap();
        let a_first = expect["first"].as_str().unwrap() == "a";
        assert_eq!(detected, Some((kind, a_first)), "{name}");
        let (first, second) = if a_first { (a, b) } else { (b, a) };
        let id = fraud::verify_proof(kind, first, second).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id, array::<32>(&expect["proof_id"]), "{name}: proof_id");
        let reversed = fraud::verify_proof(kind, second, first).unwrap_err();
        assert_eq!((reversed.reason, reversed.field), (Reason::InvalidProof, "order"), "{name}");
        // The proof bytes are kind || first(193) || second(193); the 97-byte
        // messages sit at 1 and 194.
        let proof = bytes(&expect["proof"]);
        assert_eq!(proof.len(), 387);
        assert_eq!(proof[0], kind as u8);
        assert_eq!(&proof[1..98], first.message.as_slice());
        assert_eq!(&proof[194..291], second.message.as_slice());
    }
}
