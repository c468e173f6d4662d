//! State-machine property test: random sequences of settlements (fresh,
//! replayed, stale, duplicated in one transaction), top-ups and failing
//! transactions, run through the real entrypoints (tests/native), must
//! match a plain model of the rules in docs/onchain.md §5 after every step.
mod native;

use std::collections::BTreeMap;

use anchor_lang::prelude::*;
use native::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Settle vouchers of these (agent, cumulative) pairs in one transaction.
    Settle(Vec<(usize, u64)>),
    /// Add lamports to an agent's bond.
    TopUp(usize, u64),
    /// A settlement whose second voucher is for another deployment: the
    /// whole transaction fails, nothing may change.
    SettleWithForeign(usize, u64),
}

const AGENTS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0..AGENTS, 1u64..5_000), 1..5).prop_map(Op::Settle),
        1 => (0..AGENTS, 0u64..3_000).prop_map(|(a, l)| Op::TopUp(a, l)),
        1 => (0..AGENTS, 1u64..5_000).prop_map(|(a, c)| Op::SettleWithForeign(a, c)),
    ]
}

#[derive(Default, Clone, Copy, Debug)]
struct Model {
    settled: u64,
    balance: u64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn settlement_matches_the_model(initial in proptest::collection::vec(0u64..4_000, AGENTS), ops in proptest::collection::vec(op(), 1..12)) {
        let mut w = World::new();
        let agents: Vec<Pubkey> = (0..AGENTS).map(|_| Pubkey::new_unique()).collect();
        let mut model: BTreeMap<usize, Model> = BTreeMap::new();
        for (i, a) in agents.iter().enumerate() {
            w.add_bond(a, initial[i]);
            model.insert(i, Model { settled: 0, balance: initial[i] });
        }
        let mut vendor_total = 0u64;
        let mut nonce = 0u64;
        for op in ops {
            match op {
                Op::Settle(vouchers) => {
                    let mut vs = Vec::new();
                    let mut pairs = Vec::new();
                    for &(a, c) in &vouchers {
                        nonce += 1;
                        vs.push(Voucher { agent: agents[a], message: message(&agents[a], &w.vendor, nonce, c, 1) });
                        pairs.push((channel_address(&agents[a], &w.vendor), bond_address(&agents[a])));
                    }
                    w.settle(&vs, &pairs).unwrap();
                    for &(a, c) in &vouchers {
                        let m = model.get_mut(&a).unwrap();
                        let paid = c.saturating_sub(m.settled).min(m.balance);
                        m.settled += paid;
                        m.balance -= paid;
                        vendor_total += paid;
                    }
                }
                Op::TopUp(a, lamports) => {
                    // a deposit, modelled: the bond account re-written with the new balance
                    let m = model.get_mut(&a).unwrap();
                    m.balance += lamports;
                    w.add_bond(&agents[a], m.balance);
                }
                Op::SettleWithForeign(a, c) => {
                    nonce += 1;
                    let good = Voucher { agent: agents[a], message: message(&agents[a], &w.vendor, nonce, c, 1) };
                    let mut foreign = message(&agents[a], &w.vendor, nonce + 1, c + 1, 1);
                    foreign[9..17].copy_from_slice(b"mp-main1");
                    nonce += 1;
                    let pair = (channel_address(&agents[a], &w.vendor), bond_address(&agents[a]));
                    let outcome = w.settle(&[good, Voucher { agent: agents[a], message: foreign }], &[pair, pair]);
                    prop_assert!(outcome.is_err());
                }
            }
            prop_assert_eq!(w.lamports(&w.vendor), vendor_total);
            for (i, a) in agents.iter().enumerate() {
                let m = model[&i];
                prop_assert_eq!(w.bond(a).balance, m.balance, "bond of agent {}", i);
                let rent = Rent::default().minimum_balance(83);
                prop_assert_eq!(w.lamports(&bond_address(a)), rent + m.balance, "bond lamports of agent {}", i);
                let settled = w.channel(&channel_address(a, &w.vendor)).map_or(0, |c| c.settled);
                prop_assert_eq!(settled, m.settled, "channel of agent {}", i);
            }
        }
    }
}
