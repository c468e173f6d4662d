//! Attacks that need a hostile program on the same chain: a fake "precompile"
//! that verifies nothing, and a program that tries to debit a bond through a
//! CPI signed with a look-alike authority. Plus the remaining settle/proof
//! edge cases of docs/onchain.md §5–§6.

use anchor_lang::prelude::{AccountInfo, ProgramError, Pubkey};
use anchor_lang::solana_program::program::invoke_signed;
use anchor_lang::{InstructionData, ToAccountMetas};
use machpay_localnet::testkit::*;
use machpay_localnet::MachPayNet;
use solana_address::Address;
use solana_instruction::error::InstructionError;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_signer::Signer;
use solana_transaction_error::TransactionError;

const SOL: u64 = 1_000_000_000;
const HOSTILE: Address = Address::new_from_array([0xAB; 32]);
const STEAL_VIA_CPI: u8 = 0xEE;

/// A program that accepts any instruction without accounts (a look-alike
/// precompile), or CPIs GlobalBond `debit` pretending to be MachPay's bond
/// authority.
fn hostile_entry<'a>(
    program_id: &'a Pubkey,
    accounts: &'a [AccountInfo<'a>],
    data: &'a [u8],
) -> Result<(), ProgramError> {
    if accounts.is_empty() {
        return Ok(());
    }
    match data.first() {
        Some(&STEAL_VIA_CPI) => {
            let [authority, bond, recipient, _global_bond] = accounts else {
                return Err(ProgramError::NotEnoughAccountKeys);
            };
            let (_, bump) = Pubkey::find_program_address(&[b"bond_authority"], program_id);
            let debit = Instruction {
                program_id: global_bond::ID,
                accounts: global_bond::accounts::Debit {
                    authority: *authority.key,
                    bond: *bond.key,
                    recipient: *recipient.key,
                }
                .to_account_metas(Some(true)),
                data: global_bond::instruction::Debit { amount: SOL, mark_insolvent: false }.data(),
            };
            invoke_signed(&debit, accounts, &[&[b"bond_authority", &[bump]]])
        }
        _ => Err(ProgramError::InvalidInstructionData),
    }
}

fn net_with_hostile_program() -> MachPayNet {
    let mut net = MachPayNet::new();
    net.chain.add_native_program(HOSTILE, hostile_entry);
    net
}

#[test]
fn a_look_alike_precompile_that_verifies_nothing_is_rejected() {
    let mut net = net_with_hostile_program();
    let settler = net.funded(10 * SOL);
    let vendor = net.funded(SOL).pubkey();
    let victim = net.agent_with_bond(5 * SOL);
    // Canonical bytes, garbage signature, but sent to a program that checks nothing.
    let mut forged = voucher(&victim, &vendor, 1, 4 * SOL, 4 * SOL);
    forged.signature = [7; 64];
    let mut ixs = settle_ixs(&settler.pubkey(), &vendor, &[forged]);
    ixs[0].program_id = HOSTILE;
    let vendor_before = net.chain.balance(&vendor);
    let (err, _) = net.send(&ixs, &settler, &[]).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(1, InstructionError::Custom(6003)), "PrecompileWrongProgram");
    assert_eq!(net.chain.balance(&vendor), vendor_before);
    assert_eq!(net.bond_balance(&victim.pubkey()), 5 * SOL);
}

#[test]
fn a_cpi_signed_with_a_look_alike_bond_authority_is_refused_by_the_runtime() {
    let mut net = net_with_hostile_program();
    let thief = net.funded(SOL);
    let victim = net.agent_with_bond(5 * SOL);
    let steal = |authority: Address, thief: &Keypair| Instruction {
        program_id: HOSTILE,
        accounts: vec![
            AccountMeta::new_readonly(authority, false),
            AccountMeta::new(bond_of(&victim.pubkey()), false),
            AccountMeta::new(thief.pubkey(), false),
            AccountMeta::new_readonly(global_bond::ID, false),
        ],
        data: vec![STEAL_VIA_CPI],
    };
    let thief_before = net.chain.balance(&thief.pubkey());

    // MachPay's real authority: the hostile program cannot sign for it.
    let (err, _) = net.send(&[steal(bond_authority(), &thief)], &thief, &[]).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::PrivilegeEscalation));
    // Its own PDA with the same seeds: signs, but GlobalBond knows the real one.
    let look_alike = Address::find_program_address(&[b"bond_authority"], &HOSTILE).0;
    let (err, _) = net.send(&[steal(look_alike, &thief)], &thief, &[]).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::Custom(6006)), "NotMachPayAuthority");

    assert_eq!(net.bond_balance(&victim.pubkey()), 5 * SOL);
    assert!(net.chain.balance(&thief.pubkey()) < thief_before, "only fees left the thief");
}

#[test]
fn the_same_channel_twice_in_one_settle_pays_once() {
    let mut net = MachPayNet::new();
    let settler = net.funded(10 * SOL);
    let vendor = net.funded(SOL).pubkey();
    let agent = net.agent_with_bond(5 * SOL);
    let v = voucher(&agent, &vendor, 3, 2_000_000, 2_000_000);
    let vendor_before = net.chain.balance(&vendor);
    net.send(&settle_ixs(&settler.pubkey(), &vendor, &[v.clone(), v]), &settler, &[]).expect("duplicate is a no-op");
    assert_eq!(net.chain.balance(&vendor), vendor_before + 2_000_000);
    assert_eq!(net.bond_balance(&agent.pubkey()), 5 * SOL - 2_000_000);
}

#[test]
fn a_precompile_with_fewer_entries_than_channels_is_rejected() {
    let mut net = MachPayNet::new();
    let settler = net.funded(10 * SOL);
    let vendor = net.funded(SOL).pubkey();
    let a = net.agent_with_bond(5 * SOL);
    let b = net.agent_with_bond(5 * SOL);
    let va = voucher(&a, &vendor, 1, 1_000_000, 1_000_000);
    let vb = voucher(&b, &vendor, 1, 1_000_000, 1_000_000);
    let ixs = vec![
        precompile_ix(std::slice::from_ref(&va)),
        settle_ix(&settler.pubkey(), &vendor, &[va, vb], [0; 32], 2, 2_000_000),
    ];
    let (err, _) = net.send(&ixs, &settler, &[]).unwrap_err();
    assert!(
        matches!(err, TransactionError::InstructionError(1, InstructionError::Custom(c)) if (6004..=6006).contains(&c)),
        "{err:?}"
    );
    assert_eq!(net.bond_balance(&a.pubkey()), 5 * SOL);
}

#[test]
fn a_channel_inconsistency_proof_slashes_the_bond() {
    let mut net = MachPayNet::new();
    let agent = net.agent_with_bond(4 * SOL);
    let vendor = Address::new_unique();
    let prover = net.funded(SOL);
    // nonce 1 authorised 3,000,000; nonce 2 claims 3,500,000 for an amount of
    // 1,000,000: it should have been at least 4,000,000.
    let first = voucher(&agent, &vendor, 1, 3_000_000, 1_000_000);
    let second = voucher(&agent, &vendor, 2, 3_500_000, 1_000_000);
    let treasury = net.treasury;
    let treasury_before = net.chain.balance(&treasury);
    net.send(&prove_fraud_ixs(&prover.pubkey(), 2, &first, &second, &treasury), &prover, &[]).expect("proof accepted");
    assert_eq!(net.bond_balance(&agent.pubkey()), 0);
    let reward = 4 * SOL * u64::from(PROVER_REWARD_BPS) / 10_000;
    assert_eq!(net.chain.balance(&treasury), treasury_before + 4 * SOL - reward);
}

#[test]
fn consistent_vouchers_are_not_fraud() {
    let mut net = MachPayNet::new();
    let agent = net.agent_with_bond(4 * SOL);
    let vendor = Address::new_unique();
    let prover = net.funded(SOL);
    let first = voucher(&agent, &vendor, 1, 3_000_000, 1_000_000);
    let second = voucher(&agent, &vendor, 2, 4_000_000, 1_000_000);
    let treasury = net.treasury;
    let (err, _) =
        net.send(&prove_fraud_ixs(&prover.pubkey(), 2, &first, &second, &treasury), &prover, &[]).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(1, InstructionError::Custom(6018)), "InvalidProof");
    assert_eq!(net.bond_balance(&agent.pubkey()), 4 * SOL);
}

#[test]
fn a_proof_about_another_agents_bond_is_rejected() {
    let mut net = MachPayNet::new();
    let cheater = Keypair::new();
    let innocent = net.agent_with_bond(4 * SOL);
    let vendor = Address::new_unique();
    let prover = net.funded(SOL);
    let a = voucher(&cheater, &vendor, 5, 1_000_000, 1_000_000);
    let b = voucher(&cheater, &vendor, 5, 2_000_000, 2_000_000);
    let (first, second) = if a.id() < b.id() { (a, b) } else { (b, a) };
    let mut ixs = prove_fraud_ixs(&prover.pubkey(), 1, &first, &second, &net.treasury.clone());
    ixs[1].accounts[3].pubkey = bond_of(&innocent.pubkey());
    let (err, _) = net.send(&ixs, &prover, &[]).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(1, InstructionError::Custom(6015)), "WrongBond");
    assert_eq!(net.bond_balance(&innocent.pubkey()), 4 * SOL);
}

/// Anyone can send lamports to an address before its PDA account exists. A
/// program that creates accounts with a bare System `create_account` would
/// then fail forever: a griefer could block a channel's first settlement or
/// a fraud proof's record (and so the slash).
#[test]
fn pre_funded_channel_and_proof_addresses_do_not_block_settlement_or_slashing() {
    let mut net = MachPayNet::new();
    let griefer = net.funded(10 * SOL);
    let settler = net.funded(10 * SOL);
    let vendor = net.funded(SOL).pubkey();
    let agent = net.agent_with_bond(5 * SOL);
    let grief = |to: Address| solana_system_interface::instruction::transfer(&griefer.pubkey(), &to, 1_000_000);

    net.send(&[grief(channel_of(&agent.pubkey(), &vendor))], &griefer, &[]).unwrap();
    let vendor_before = net.chain.balance(&vendor);
    let v = voucher(&agent, &vendor, 1, 2_000_000, 2_000_000);
    net.send(&settle_ixs(&settler.pubkey(), &vendor, &[v]), &settler, &[])
        .expect("a pre-funded channel address still settles");
    assert_eq!(net.chain.balance(&vendor), vendor_before + 2_000_000);
    assert_eq!(net.channel_settled(&agent.pubkey(), &vendor), 2_000_000);

    let a = voucher(&agent, &vendor, 9, 3_000_000, 1_000_000);
    let b = voucher(&agent, &vendor, 9, 4_000_000, 2_000_000);
    let (first, second) = if a.id() < b.id() { (a, b) } else { (b, a) };
    let proof_id = machpay_protocol::fraud::proof_id(
        machpay_protocol::fraud::FraudKind::from_byte(1).unwrap(),
        &first.id(),
        &second.id(),
    );
    net.send(&[grief(fraud_record_of(&proof_id))], &griefer, &[]).unwrap();
    let prover = net.funded(SOL);
    let treasury = net.treasury;
    net.send(&prove_fraud_ixs(&prover.pubkey(), 1, &first, &second, &treasury), &prover, &[])
        .expect("a pre-funded record address still slashes");
    assert_eq!(net.bond_balance(&agent.pubkey()), 0);
}

/// Depositing into a bond whose address was pre-funded works too.
#[test]
fn a_pre_funded_bond_address_still_takes_a_deposit() {
    let mut net = MachPayNet::new();
    let griefer = net.funded(SOL);
    let agent = net.funded(5 * SOL);
    net.send(
        &[solana_system_interface::instruction::transfer(&griefer.pubkey(), &bond_of(&agent.pubkey()), 1_000_000)],
        &griefer,
        &[],
    )
    .unwrap();
    net.send(&[deposit_ix(&agent.pubkey(), SOL)], &agent, &[]).expect("deposit");
    assert_eq!(net.bond_balance(&agent.pubkey()), SOL);
}
