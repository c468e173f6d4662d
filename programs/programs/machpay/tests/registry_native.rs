//! ServiceRegistry through its real entrypoint (tier 1, see tests/native):
//! registration, updates, deactivation, and that only the vendor key may
//! change its entries.
mod native;

use anchor_lang::prelude::*;
use anchor_lang::solana_program::instruction::Instruction;
use anchor_lang::{AccountDeserialize, InstructionData, ToAccountMetas};
use native::*;
use service_registry::error::RegistryError;
use service_registry::events::{ServiceDeactivated, ServiceUpdated, VendorRegistered};
use service_registry::state::{Service, ServiceTerms, Vendor};

type Outcome = std::result::Result<Vec<Vec<u8>>, ProgramError>;

fn vendor_pda(authority: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(&[b"vendor", authority.as_ref()], &service_registry::ID).0
}

fn service_pda(authority: &Pubkey, name: &str) -> Pubkey {
    Pubkey::find_program_address(&[b"service", authority.as_ref(), name.as_bytes()], &service_registry::ID).0
}

fn run(w: &mut World, accounts: Vec<AccountMeta>, data: Vec<u8>) -> Outcome {
    w.execute(&[Instruction { program_id: service_registry::ID, accounts, data }], 0)
}

fn register_vendor(w: &mut World, authority: Pubkey, name: &str) -> Outcome {
    w.prealloc.insert(vendor_pda(&authority), 8 + Vendor::INIT_SPACE);
    let accounts = service_registry::accounts::RegisterVendor {
        authority,
        vendor: vendor_pda(&authority),
        system_program: anchor_lang::system_program::ID,
    }
    .to_account_metas(None);
    let data =
        service_registry::instruction::RegisterVendor { name: name.into(), metadata_uri: "ipfs://v".into() }.data();
    run(w, accounts, data)
}

fn terms(price: u64) -> ServiceTerms {
    ServiceTerms {
        price,
        asset: Pubkey::default(),
        unit: "call".into(),
        gateway_url: "https://gw.example/v1".into(),
        metadata_uri: String::new(),
    }
}

fn register_service(w: &mut World, authority: Pubkey, name: &str, t: ServiceTerms) -> Outcome {
    w.prealloc.insert(service_pda(&authority, name), 8 + Service::INIT_SPACE);
    let accounts = service_registry::accounts::RegisterService {
        authority,
        vendor: vendor_pda(&authority),
        service: service_pda(&authority, name),
        system_program: anchor_lang::system_program::ID,
    }
    .to_account_metas(None);
    run(w, accounts, service_registry::instruction::RegisterService { name: name.into(), terms: t }.data())
}

/// Anchor's `ConstraintSeeds`: the account is not the PDA of the signer's key.
fn seeds_error() -> u32 {
    u32::from(anchor_lang::error::ErrorCode::ConstraintSeeds)
}

fn service(w: &World, authority: &Pubkey, name: &str) -> Service {
    Service::try_deserialize(&mut &w.accounts[&service_pda(authority, name)].data[..]).unwrap()
}

#[test]
fn a_vendor_registers_prices_and_retires_a_service() {
    let mut w = World::new();
    let vendor = w.add_wallet(1_000_000_000);
    let logs = register_vendor(&mut w, vendor, "acme").unwrap();
    assert_eq!(events::<VendorRegistered>(&logs)[0].name, "acme");

    let logs = register_service(&mut w, vendor, "search", terms(1_000)).unwrap();
    let ev = &events::<ServiceUpdated>(&logs)[0];
    assert_eq!((ev.created, ev.price, ev.service), (true, 1_000, service_pda(&vendor, "search")));
    let s = service(&w, &vendor, "search");
    assert_eq!(
        (s.vendor, s.active, s.price, s.name.as_str(), s.unit.as_str()),
        (vendor, true, 1_000, "search", "call")
    );
    let data = &w.accounts[&service_pda(&vendor, "search")].data;
    assert_eq!(data.len(), 546, "allocated at the maximum size");
    assert_eq!(&data[8..40], vendor.as_ref(), "memcmp offset 8 = vendor");
    assert_eq!(data[40], 1, "memcmp offset 40 = active");
    let v = Vendor::try_deserialize(&mut &w.accounts[&vendor_pda(&vendor)].data[..]).unwrap();
    assert_eq!(v.service_count, 1);

    let accounts =
        service_registry::accounts::UpdateService { authority: vendor, service: service_pda(&vendor, "search") }
            .to_account_metas(None);
    let logs =
        run(&mut w, accounts.clone(), service_registry::instruction::UpdateService { terms: terms(2_500) }.data())
            .unwrap();
    assert!(!events::<ServiceUpdated>(&logs)[0].created);
    assert_eq!(service(&w, &vendor, "search").price, 2_500);

    let accounts =
        service_registry::accounts::DeactivateService { authority: vendor, service: service_pda(&vendor, "search") }
            .to_account_metas(None);
    let logs = run(&mut w, accounts, service_registry::instruction::DeactivateService {}.data()).unwrap();
    assert_eq!(events::<ServiceDeactivated>(&logs).len(), 1);
    assert!(!service(&w, &vendor, "search").active);
    assert_eq!(w.accounts[&service_pda(&vendor, "search")].data[40], 0);
}

#[test]
fn bad_terms_are_refused_with_the_field_named() {
    let mut w = World::new();
    let vendor = w.add_wallet(1_000_000_000);
    assert_eq!(code(register_vendor(&mut w, vendor, "").unwrap_err()), u32::from(RegistryError::NameLength));
    register_vendor(&mut w, vendor, "acme").unwrap();
    let bad_url = ServiceTerms { gateway_url: "gw.example".into(), ..terms(1) };
    assert_eq!(code(register_service(&mut w, vendor, "a", bad_url).unwrap_err()), u32::from(RegistryError::GatewayUrl));
    assert_eq!(code(register_service(&mut w, vendor, "a", terms(0)).unwrap_err()), u32::from(RegistryError::ZeroPrice));
    let long_unit = ServiceTerms { unit: "u".repeat(17), ..terms(1) };
    assert_eq!(
        code(register_service(&mut w, vendor, "a", long_unit).unwrap_err()),
        u32::from(RegistryError::UnitLength)
    );
}

#[test]
fn only_the_vendor_key_changes_its_entries() {
    let mut w = World::new();
    let vendor = w.add_wallet(1_000_000_000);
    let intruder = w.add_wallet(1_000_000_000);
    register_vendor(&mut w, vendor, "acme").unwrap();
    register_service(&mut w, vendor, "search", terms(1_000)).unwrap();

    // the intruder's key derives other PDAs: the vendor's service does not match them
    let accounts =
        service_registry::accounts::UpdateService { authority: intruder, service: service_pda(&vendor, "search") }
            .to_account_metas(None);
    let e = run(&mut w, accounts, service_registry::instruction::UpdateService { terms: terms(1) }.data()).unwrap_err();
    assert_eq!(code(e), seeds_error());
    let accounts =
        service_registry::accounts::DeactivateService { authority: intruder, service: service_pda(&vendor, "search") }
            .to_account_metas(None);
    let e = run(&mut w, accounts, service_registry::instruction::DeactivateService {}.data()).unwrap_err();
    assert_eq!(code(e), seeds_error());
    // registering a service under someone else's vendor entry
    w.prealloc.insert(service_pda(&intruder, "x"), 8 + Service::INIT_SPACE);
    let accounts = service_registry::accounts::RegisterService {
        authority: intruder,
        vendor: vendor_pda(&vendor),
        service: service_pda(&intruder, "x"),
        system_program: anchor_lang::system_program::ID,
    }
    .to_account_metas(None);
    let data = service_registry::instruction::RegisterService { name: "x".into(), terms: terms(1) }.data();
    assert_eq!(code(run(&mut w, accounts, data).unwrap_err()), seeds_error());
    let s = service(&w, &vendor, "search");
    assert_eq!((s.price, s.active), (1_000, true));

    // a deactivated vendor registers nothing new
    let accounts = service_registry::accounts::DeactivateVendor { authority: vendor, vendor: vendor_pda(&vendor) }
        .to_account_metas(None);
    run(&mut w, accounts, service_registry::instruction::DeactivateVendor {}.data()).unwrap();
    assert_eq!(
        code(register_service(&mut w, vendor, "other", terms(5)).unwrap_err()),
        u32::from(RegistryError::VendorInactive)
    );
}
