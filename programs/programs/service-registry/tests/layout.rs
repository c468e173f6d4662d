//! Vendor and Service layouts: the memcmp filters clients use (vendor at 8,
//! active at 40) and the maximum sizes allocated up front.
use anchor_lang::prelude::*;
use anchor_lang::{AccountSerialize, Discriminator};
use service_registry::state::{Service, Vendor};

fn serialized<T: AccountSerialize>(account: &T) -> Vec<u8> {
    let mut out = Vec::new();
    account.try_serialize(&mut out).unwrap();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn vendor_layout() {
    let v = Vendor {
        authority: Pubkey::new_from_array([1; 32]),
        active: true,
        service_count: 3,
        name: "acme".into(),
        metadata_uri: "m".into(),
        bump: 200,
    };
    let d = serialized(&v);
    assert_eq!(hex(Vendor::DISCRIMINATOR), "57f879ef1870c5c8");
    assert_eq!(8 + Vendor::INIT_SPACE, 286);
    assert_eq!(&d[8..40], &[1; 32]);
    assert_eq!(d[40], 1);
    assert_eq!(&d[41..45], &3u32.to_le_bytes());
    assert_eq!(&d[45..49], &4u32.to_le_bytes());
    assert_eq!(&d[49..53], b"acme");
}

#[test]
fn service_layout_at_maximum_size() {
    let s = Service {
        vendor: Pubkey::new_from_array([2; 32]),
        active: true,
        price: 1_000,
        asset: Pubkey::new_from_array([0; 32]),
        unit: "u".repeat(16),
        name: "n".repeat(32),
        gateway_url: format!("https://{}", "g".repeat(192)),
        metadata_uri: "m".repeat(200),
        bump: 1,
    };
    let d = serialized(&s);
    assert_eq!(hex(Service::DISCRIMINATOR), "903e4c81a72497fa");
    assert_eq!(d.len(), 546, "largest service fills the allocation exactly");
    assert_eq!(8 + Service::INIT_SPACE, 546);
    assert_eq!(&d[8..40], &[2; 32]);
    assert_eq!(d[40], 1);
    assert_eq!(&d[41..49], &1_000u64.to_le_bytes());
    assert_eq!(&d[49..81], &[0; 32]);
    assert_eq!(&d[81..85], &16u32.to_le_bytes());
}
