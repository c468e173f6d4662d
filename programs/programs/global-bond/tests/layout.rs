//! Bond and BondConfig layouts as docs/onchain.md §3 states them.
use anchor_lang::prelude::*;
use anchor_lang::{AccountSerialize, Discriminator};
use global_bond::state::{Bond, BondConfig};

fn serialized<T: AccountSerialize>(account: &T) -> Vec<u8> {
    let mut out = Vec::new();
    account.try_serialize(&mut out).unwrap();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn bond_layout() {
    let b = Bond {
        agent: Pubkey::new_from_array([1; 32]),
        balance: 11,
        pending_withdrawal: 22,
        unlock_at: -33,
        total_debited: 44,
        total_slashed: 55,
        insolvent: true,
        slashed: false,
        bump: 253,
    };
    let d = serialized(&b);
    assert_eq!((d.len(), 8 + Bond::INIT_SPACE), (83, 83));
    assert_eq!(hex(Bond::DISCRIMINATOR), "e08030fbb6f66fc4");
    assert_eq!(&d[8..40], &[1; 32]);
    assert_eq!(&d[40..48], &11u64.to_le_bytes());
    assert_eq!(&d[48..56], &22u64.to_le_bytes());
    assert_eq!(&d[56..64], &(-33i64).to_le_bytes());
    assert_eq!(&d[64..72], &44u64.to_le_bytes());
    assert_eq!(&d[72..80], &55u64.to_le_bytes());
    assert_eq!((d[80], d[81], d[82]), (1, 0, 253));
}

#[test]
fn config_layout() {
    let c = BondConfig { admin: Pubkey::new_from_array([4; 32]), withdrawal_timelock: 86_400, bump: 250 };
    let d = serialized(&c);
    assert_eq!((d.len(), 8 + BondConfig::INIT_SPACE), (49, 49));
    assert_eq!(hex(BondConfig::DISCRIMINATOR), "8e14d801078ef77d");
    assert_eq!(&d[8..40], &[4; 32]);
    assert_eq!(&d[40..48], &86_400i64.to_le_bytes());
    assert_eq!(d[48], 250);
}

#[test]
fn bond_authority_constant_is_the_pda() {
    let (pda, _) = Pubkey::find_program_address(&[global_bond::BOND_AUTHORITY_SEED], &global_bond::MACHPAY_PROGRAM_ID);
    assert_eq!(pda, global_bond::MACHPAY_BOND_AUTHORITY);
    assert_eq!(global_bond::ID.to_string(), "GBond11111111111111111111111111111111111111");
}
