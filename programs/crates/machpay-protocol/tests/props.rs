//! Properties of the codecs and state rules, plus the cases a vector file
//! does not hold (batch ids from streams, precompile tampering, timelocks).
use machpay_protocol::batch::batch_id;
use machpay_protocol::ed25519::{self, OffsetField, PrecompileError, BYTES_PER_ENTRY, ED25519_PROGRAM_ID};
use machpay_protocol::fraud::{self, FraudKind, SignedIntentRef};
use machpay_protocol::hash::sha256;
use machpay_protocol::intent::{offsets, MAGIC};
use machpay_protocol::merkle;
use machpay_protocol::settlement::settle;
use machpay_protocol::timelock::{bps_share, is_unlocked, unlock_at, TimelockError};
use machpay_protocol::{Intent, Reason, INTENT_LEN};
use proptest::prelude::*;

fn arb_intent() -> impl Strategy<Value = Intent> {
    (any::<[u8; 8]>(), any::<[u8; 32]>(), any::<u64>(), 1..=u64::MAX, any::<i64>(), any::<[u8; 16]>(), any::<u64>())
        .prop_map(|(domain, channel, nonce, cumulative, expires_at, context, amount_seed)| Intent {
            domain,
            channel,
            nonce,
            cumulative,
            amount: 1 + amount_seed % cumulative,
            expires_at,
            context,
        })
}

/// Values streams produced for these inputs (machpay.streams.state.batch_id
/// over vendor = H("vendor"), root = H("root")).
#[test]
fn batch_id_equals_streams() {
    let (vendor, root) = (sha256(&[b"vendor"]), sha256(&[b"root"]));
    let expect = [
        (0u64, "258bf492a32ce162385e2ec54b1c90b7d0280aa7e70a19e8d7807ea09267df14"),
        (1, "d342de3675a69b09b37ebe9b0e2f4d62b76079fbe8a077faf5effeecba9ffebd"),
        (13, "8d6689c8cc8b6cd86b62f075d70653a3ca5b4315f199e8523a2280b51a5bd31c"),
        (u64::MAX, "8b830ad995b7fa6e0cc85708637efdbbf84e4eca745e08c6b1c49fdb97917bba"),
    ];
    for (n, hex_id) in expect {
        assert_eq!(hex::encode(batch_id(&vendor, &root, n)), hex_id, "leaf_count {n}");
    }
}

#[test]
fn parse_reports_the_first_failure_in_protocol_order() {
    let good = Intent {
        domain: *b"mp-test1",
        channel: [7; 32],
        nonce: 1,
        cumulative: 5,
        amount: 5,
        expires_at: 0,
        context: [0; 16],
    }
    .to_bytes();
    // bad magic AND bad version AND zero amount: magic wins
    let mut m = good;
    m[0] = 0;
    m[offsets::VERSION] = 9;
    m[offsets::AMOUNT..offsets::AMOUNT + 8].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(Intent::parse(&m).unwrap_err().reason, Reason::BadMagic);
    m[0] = MAGIC[0];
    assert_eq!(Intent::parse(&m).unwrap_err().reason, Reason::UnsupportedVersion);
    m[offsets::VERSION] = 1;
    assert_eq!(Intent::parse(&m).unwrap_err().field, "amount");
    assert_eq!(Intent::parse(&good[..96]).unwrap_err().field, "message");
    let mut long = good.to_vec();
    long.push(0);
    assert_eq!(Intent::parse(&long).unwrap_err().reason, Reason::BadLength);
}

proptest! {
    #[test]
    fn intent_round_trips(intent in arb_intent()) {
        prop_assert_eq!(Intent::parse(&intent.to_bytes()), Ok(intent));
    }

    #[test]
    fn parse_never_panics_and_accepts_only_valid_messages(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(intent) = Intent::parse(&bytes) {
            prop_assert_eq!(bytes.len(), INTENT_LEN);
            prop_assert_eq!(&bytes[..8], &MAGIC[..]);
            prop_assert!(intent.amount >= 1 && intent.amount <= intent.cumulative);
            let encoded = intent.to_bytes();
            prop_assert_eq!(encoded.as_slice(), bytes.as_slice());
        }
    }

    #[test]
    fn amount_rule_is_exactly_one_to_cumulative(cumulative: u64, amount: u64) {
        let mut i = Intent { domain: [0; 8], channel: [0; 32], nonce: 0, cumulative, amount, expires_at: 0, context: [0; 16] }.to_bytes();
        i[0] = MAGIC[0];
        let ok = amount >= 1 && amount <= cumulative;
        prop_assert_eq!(Intent::parse(&i).is_ok(), ok);
    }

    #[test]
    fn precompile_round_trips(keys in proptest::collection::vec((any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 32]>()), 1..6), intent in arb_intent()) {
        let msgs: Vec<[u8; 97]> = keys.iter().map(|_| intent.to_bytes()).collect();
        let sigs: Vec<[u8; 64]> = keys.iter().map(|(a, b, _)| { let mut s = [0u8; 64]; s[..32].copy_from_slice(a); s[32..].copy_from_slice(b); s }).collect();
        let entries: Vec<_> = keys.iter().zip(&sigs).zip(&msgs).map(|(((_, _, k), s), m)| (k, s, m)).collect();
        let data = ed25519::build(&entries);
        prop_assert_eq!(data.len(), 2 + BYTES_PER_ENTRY * entries.len());
        let parsed = ed25519::parse(&ED25519_PROGRAM_ID, &data, entries.len()).unwrap();
        for (j, (k, s, m)) in entries.iter().enumerate() {
            let e = parsed.get(j).unwrap();
            prop_assert_eq!(e.agent, *k);
            prop_assert_eq!(e.signature, *s);
            prop_assert_eq!(e.message, *m);
        }
        prop_assert!(parsed.get(entries.len()).is_none());
        // any other count is refused
        let wrong_count = ed25519::parse(&ED25519_PROGRAM_ID, &data, entries.len() + 1);
        prop_assert!(matches!(wrong_count, Err(PrecompileError::SignatureCount { .. })), "{:?}", wrong_count);
    }

    /// The bypass class: any change to any offset or instruction index of
    /// any entry (pointing the precompile at other bytes or another
    /// instruction) is refused, and names the field.
    #[test]
    fn any_tampered_offset_is_refused(count in 1usize..5, entry_seed: usize, field in 0usize..7, value: u16) {
        let (k, s, m) = ([1u8; 32], [2u8; 64], [3u8; 97]);
        let entries: Vec<_> = (0..count).map(|_| (&k, &s, &m)).collect();
        let mut data = ed25519::build(&entries);
        let entry = entry_seed % count;
        let at = 2 + 14 * entry + 2 * field;
        let original = u16::from_le_bytes([data[at], data[at + 1]]);
        prop_assume!(value != original);
        data[at..at + 2].copy_from_slice(&value.to_le_bytes());
        match ed25519::parse(&ED25519_PROGRAM_ID, &data, count) {
            Err(PrecompileError::Offset { entry: e, field: f }) => {
                prop_assert_eq!(e, entry);
                let names = ["signature_offset", "signature_instruction_index", "public_key_offset", "public_key_instruction_index", "message_data_offset", "message_data_size", "message_instruction_index"];
                prop_assert_eq!(f.as_str(), names[field]);
            }
            other => prop_assert!(false, "accepted or wrong error: {:?}", other),
        }
    }

    #[test]
    fn merkle_paths_verify_only_their_leaf(leaves in proptest::collection::vec(any::<[u8; 32]>(), 1..40), pick: usize) {
        let n = leaves.len();
        let index = pick % n;
        let root = merkle::root(&leaves);
        let path = merkle::inclusion_path(&leaves, index).unwrap();
        prop_assert!(merkle::verify_inclusion(&leaves[index], index as u64, n as u64, &path, &root));
        let other = (index + 1) % n;
        if leaves[other] != leaves[index] {
            prop_assert!(!merkle::verify_inclusion(&leaves[other], index as u64, n as u64, &path, &root));
        }
        prop_assert!(!merkle::verify_inclusion(&leaves[index], n as u64, n as u64, &path, &root));
        if !path.is_empty() {
            prop_assert!(!merkle::verify_inclusion(&leaves[index], index as u64, n as u64, &path[..path.len() - 1], &root));
        }
    }

    #[test]
    fn settlement_moves_forward_and_never_overpays(settled: u64, cumulative: u64, available: u64) {
        let s = settle(settled, cumulative, available);
        prop_assert!(s.paid <= available);
        prop_assert!(s.paid <= s.owed);
        prop_assert!(s.new_settled >= settled);
        prop_assert!(s.new_settled <= settled.max(cumulative));
        prop_assert_eq!(s.new_settled - settled, s.paid);
        prop_assert_eq!(s.insolvent(), s.owed > available);
        // retrying the same voucher after it was fully paid is a no-op
        if !s.insolvent() {
            prop_assert_eq!(settle(s.new_settled, cumulative, available - s.paid).paid, 0);
        }
    }

    #[test]
    fn a_stale_voucher_pays_nothing(settled: u64, back: u64, available: u64) {
        let cumulative = settled.saturating_sub(back);
        let s = settle(settled, cumulative, available);
        prop_assert_eq!((s.paid, s.new_settled, s.insolvent()), (0, settled, false));
    }

    #[test]
    fn unlock_is_checked(now: i64, delay: i64) {
        match unlock_at(now, delay) {
            Ok(at) => { prop_assert!(delay >= 0 && at >= now); prop_assert!(is_unlocked(at, at)); prop_assert!(delay == 0 || !is_unlocked(at - 1, at)); }
            Err(TimelockError::NegativeDelay) => prop_assert!(delay < 0),
            Err(TimelockError::Overflow) => prop_assert!(delay >= 0 && now.checked_add(delay).is_none()),
        }
    }

    #[test]
    fn bps_share_is_bounded(amount: u64, bps: u16) {
        let share = bps_share(amount, bps);
        prop_assert!(share <= amount);
        prop_assert_eq!(share as u128, amount as u128 * bps.min(10_000) as u128 / 10_000);
    }

    /// Whichever order streams saw the pair in, there is one canonical
    /// proof and one id; the reverse order is refused.
    #[test]
    fn fraud_has_one_canonical_order(base in arb_intent(), agent: [u8; 32], delta in 1u64..1000, under in 1u64..1000) {
        prop_assume!(base.nonce < u64::MAX && base.cumulative < u64::MAX / 4);
        let a = base;
        // channel inconsistency: later nonce, under-counting cumulative
        let b = Intent { nonce: a.nonce + 1, amount: delta, cumulative: (a.cumulative + delta).saturating_sub(under).max(delta), ..a };
        let (ma, mb) = (a.to_bytes(), b.to_bytes());
        let (ra, rb) = (SignedIntentRef { message: &ma, agent: &agent }, SignedIntentRef { message: &mb, agent: &agent });
        let d1 = fraud::detect(ra, rb).unwrap();
        let d2 = fraud::detect(rb, ra).unwrap();
        prop_assert_eq!(d1, Some((FraudKind::ChannelInconsistency, true)));
        prop_assert_eq!(d2, Some((FraudKind::ChannelInconsistency, false)));
        prop_assert!(fraud::verify_proof(FraudKind::ChannelInconsistency, ra, rb).is_ok());
        prop_assert_eq!(fraud::verify_proof(FraudKind::ChannelInconsistency, rb, ra).unwrap_err().field, "order");
        prop_assert_eq!(fraud::verify_proof(FraudKind::Equivocation, ra, rb).unwrap_err().field, "kind");
        // equivocation: same nonce, different message
        let c = Intent { context: [!a.context[0]; 16], ..a };
        let mc = c.to_bytes();
        let rc = SignedIntentRef { message: &mc, agent: &agent };
        let (first, second) = if sha256(&[&ma]) < sha256(&[&mc]) { (ra, rc) } else { (rc, ra) };
        prop_assert!(fraud::verify_proof(FraudKind::Equivocation, first, second).is_ok());
        prop_assert!(fraud::verify_proof(FraudKind::Equivocation, second, first).is_err());
        // another key never proves anything against this agent
        let other = [agent[0] ^ 1; 32];
        let ro = SignedIntentRef { message: &mc, agent: &other };
        prop_assert_eq!(fraud::detect(ra, ro).unwrap(), None);
    }
}

#[test]
fn inconsistency_sum_may_exceed_u64() {
    let agent = [9u8; 32];
    let a = Intent {
        domain: *b"mp-test1",
        channel: [1; 32],
        nonce: 1,
        cumulative: u64::MAX,
        amount: 1,
        expires_at: 0,
        context: [0; 16],
    };
    let b = Intent { nonce: 2, cumulative: u64::MAX, amount: u64::MAX, ..a };
    let (ma, mb) = (a.to_bytes(), b.to_bytes());
    let r = |m| SignedIntentRef { message: m, agent: &agent };
    assert!(fraud::verify_proof(FraudKind::ChannelInconsistency, r(&ma), r(&mb)).is_ok());
}

#[test]
fn precompile_header_errors_name_the_part() {
    let (k, s, m) = ([1u8; 32], [2u8; 64], [3u8; 97]);
    let data = ed25519::build(&[(&k, &s, &m), (&k, &s, &m)]);
    assert_eq!(ed25519::parse(&[0u8; 32], &data, 2).unwrap_err(), PrecompileError::WrongProgram);
    assert!(matches!(
        ed25519::parse(&ED25519_PROGRAM_ID, &data, 1),
        Err(PrecompileError::SignatureCount { expected: 1, found: 2 })
    ));
    assert!(matches!(
        ed25519::parse(&ED25519_PROGRAM_ID, &[], 1),
        Err(PrecompileError::SignatureCount { found: 0, .. })
    ));
    let mut padded = data.clone();
    padded[1] = 1;
    assert_eq!(ed25519::parse(&ED25519_PROGRAM_ID, &padded, 2).unwrap_err(), PrecompileError::Padding);
    let mut long = data.clone();
    long.push(0);
    assert!(matches!(ed25519::parse(&ED25519_PROGRAM_ID, &long, 2), Err(PrecompileError::DataLength { .. })));
    assert!(matches!(
        ed25519::parse(&ED25519_PROGRAM_ID, &data[..data.len() - 1], 2),
        Err(PrecompileError::DataLength { .. })
    ));
    // zero signatures is never a voucher set
    assert!(matches!(ed25519::parse(&ED25519_PROGRAM_ID, &[0, 0], 0), Err(PrecompileError::SignatureCount { .. })));
    let _ = OffsetField::MessageDataSize.as_str();
}
