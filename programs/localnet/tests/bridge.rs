//! The builtin bridge and syscall stubs, exercised by a tiny native program
//! that uses Anchor's own CPI and sysvar paths: a PDA-signed System transfer
//! (balances asserted after it, since a CPI that hits the wrong stub crate
//! silently does nothing), logs and events through the stubs, the clock, a
//! CPI failure the program ignores, and account data write-back.

use anchor_lang::prelude::{AccountInfo, Clock, ProgramError, Pubkey, Rent};
use anchor_lang::solana_program::program::invoke_signed;
use anchor_lang::solana_program::system_instruction;
use machpay_localnet::Chain;
use solana_account::Account;
use solana_address::Address;
use solana_instruction::error::InstructionError;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_message::Message;
use solana_signer::Signer;
use solana_sysvar_v3::Sysvar as _;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction::Transaction;
use solana_transaction_error::TransactionError;

const PROGRAM_ID: Address = Address::new_from_array([7; 32]);
const VAULT_SEED: &[u8] = b"vault";

const PAY_FROM_VAULT: u8 = 0;
const PAY_IGNORING_FAILURE: u8 = 1;
const WRITE_DATA: u8 = 2;
const TAKE_LAMPORTS: u8 = 3;
const READ_CLOCK_SLICE: u8 = 4;

fn probe_entry<'a>(
    program_id: &'a Pubkey,
    accounts: &'a [AccountInfo<'a>],
    data: &'a [u8],
) -> Result<(), ProgramError> {
    let (&tag, rest) = data.split_first().ok_or(ProgramError::InvalidInstructionData)?;
    match tag {
        PAY_FROM_VAULT | PAY_IGNORING_FAILURE => {
            let [vault, recipient, system] = accounts else {
                return Err(ProgramError::NotEnoughAccountKeys);
            };
            let amount = u64::from_le_bytes(rest[..8].try_into().map_err(|_| ProgramError::InvalidInstructionData)?);
            let (expected, bump) = Pubkey::find_program_address(&[VAULT_SEED], program_id);
            if *vault.key != expected {
                return Err(ProgramError::InvalidSeeds);
            }
            let clock = Clock::get()?;
            let rent = Rent::get()?;
            solana_sysvar_v3::program_stubs::sol_log(&format!("slot {} rent {}", clock.slot, rent.minimum_balance(0)));
            let result = invoke_signed(
                &system_instruction::transfer(vault.key, recipient.key, amount),
                &[vault.clone(), recipient.clone(), system.clone()],
                &[&[VAULT_SEED, &[bump]]],
            );
            if tag == PAY_IGNORING_FAILURE {
                // On-chain a failed CPI aborts the caller; the bridge must
                // enforce that even when the program swallows the error.
                solana_sysvar_v3::program_stubs::sol_log(&format!("cpi result ignored: {result:?}"));
                return Ok(());
            }
            result?;
            solana_sysvar_v3::program_stubs::sol_log_data(&[b"paid", &amount.to_le_bytes()]);
            Ok(())
        }
        WRITE_DATA => {
            let [target] = accounts else {
                return Err(ProgramError::NotEnoughAccountKeys);
            };
            target.try_borrow_mut_data()?[..rest.len()].copy_from_slice(rest);
            Ok(())
        }
        READ_CLOCK_SLICE => {
            // `sol_get_sysvar`: bytes of a sysvar by id, offset and length.
            let offset = u64::from(rest[0]);
            let mut slot = [0u8; 8];
            solana_sysvar_v3::get_sysvar(&mut slot, &solana_sdk_ids::sysvar::clock::ID, offset, 8)?;
            solana_sysvar_v3::program_stubs::sol_log(&format!("clock slot {}", u64::from_le_bytes(slot)));
            Ok(())
        }
        TAKE_LAMPORTS => {
            let [from, to] = accounts else {
                return Err(ProgramError::NotEnoughAccountKeys);
            };
            **from.try_borrow_mut_lamports()? -= 1_000;
            **to.try_borrow_mut_lamports()? += 1_000;
            Ok(())
        }
        _ => Err(ProgramError::InvalidInstructionData),
    }
}

struct Fixture {
    chain: Chain,
    payer: Keypair,
    vault: Address,
}

fn fixture() -> Fixture {
    let mut chain = Chain::new();
    chain.add_native_program(PROGRAM_ID, probe_entry);
    let payer = Keypair::new();
    chain.airdrop(&payer.pubkey(), 10_000_000_000).expect("airdrop lands");
    let (vault, _) = Address::find_program_address(&[VAULT_SEED], &PROGRAM_ID);
    chain.airdrop(&vault, 5_000_000_000).expect("airdrop lands");
    Fixture { chain, payer, vault }
}

fn send(f: &mut Fixture, ix: Instruction) -> Result<machpay_localnet::LandedTransaction, TransactionError> {
    let blockhash = f.chain.latest_blockhash();
    let message = Message::new_with_blockhash(&[ix], Some(&f.payer.pubkey()), &blockhash);
    let tx = Transaction::new(&[&f.payer], message, blockhash);
    match f.chain.send(VersionedTransaction::from(tx)) {
        Ok(landed) => match &landed.err {
            None => Ok(landed.clone()),
            Some(err) => Err(err.clone()),
        },
        Err(rejection) => Err(rejection.err),
    }
}

fn pay_ix(tag: u8, vault: Address, recipient: Address, amount: u64) -> Instruction {
    let mut data = vec![tag];
    data.extend_from_slice(&amount.to_le_bytes());
    Instruction::new_with_bytes(
        PROGRAM_ID,
        &data,
        vec![
            AccountMeta::new(vault, false),
            AccountMeta::new(recipient, false),
            AccountMeta::new_readonly(solana_sdk_ids::system_program::id(), false),
        ],
    )
}

#[test]
fn pda_signed_cpi_moves_lamports_and_logs_reach_the_transaction() {
    let mut f = fixture();
    let recipient = Address::new_unique();
    let vault_before = f.chain.balance(&f.vault);

    let ix = pay_ix(PAY_FROM_VAULT, f.vault, recipient, 1_234_567);
    let landed = send(&mut f, ix).expect("pays");

    assert_eq!(f.chain.balance(&recipient), 1_234_567, "the CPI must move lamports");
    assert_eq!(f.chain.balance(&f.vault), vault_before - 1_234_567);
    let logs = landed.logs.join("\n");
    assert!(logs.contains(&format!("Program {PROGRAM_ID} invoke [1]")), "{logs}");
    assert!(logs.contains("Program 11111111111111111111111111111111 invoke [2]"), "{logs}");
    assert!(logs.contains(&format!("Program log: slot {} rent 890880", landed.slot)), "{logs}");
    // base64("paid") and base64(1234567 as u64 LE)
    assert!(logs.contains("Program data: cGFpZA== h9YSAAAAAAA="), "{logs}");
    assert!(logs.contains(&format!("Program {PROGRAM_ID} success")), "{logs}");
    let vault_index = landed.account_keys.iter().position(|k| *k == f.vault).unwrap();
    assert_eq!(landed.pre_balances[vault_index] - landed.post_balances[vault_index], 1_234_567);
}

#[test]
fn a_failed_cpi_fails_the_caller_even_if_the_program_ignores_it() {
    let mut f = fixture();
    let recipient = Address::new_unique();
    let vault_before = f.chain.balance(&f.vault);

    let ix = pay_ix(PAY_IGNORING_FAILURE, f.vault, recipient, vault_before + 1);
    let err = send(&mut f, ix).unwrap_err();

    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::Custom(1)), "System: insufficient funds");
    assert_eq!(f.chain.balance(&recipient), 0);
    assert_eq!(f.chain.balance(&f.vault), vault_before);
}

#[test]
fn a_signature_for_an_address_the_program_cannot_derive_is_refused() {
    let mut f = fixture();
    // A plain wallet as "vault": the program derives the PDA and refuses.
    let wallet = Keypair::new();
    f.chain.airdrop(&wallet.pubkey(), 1_000_000_000).unwrap();
    let err = send(&mut f, pay_ix(PAY_FROM_VAULT, wallet.pubkey(), Address::new_unique(), 1)).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::InvalidSeeds));
    assert_eq!(f.chain.balance(&wallet.pubkey()), 1_000_000_000);
}

#[test]
fn data_written_by_the_program_is_kept_only_for_accounts_it_owns() {
    let mut f = fixture();
    let owned = Address::new_unique();
    let foreign = Address::new_unique();
    for (address, owner) in [(owned, PROGRAM_ID), (foreign, Address::new_unique())] {
        let account = Account { lamports: 10_000_000, data: vec![0; 8], owner, executable: false, rent_epoch: 0 };
        f.chain.svm_mut().set_account(address, account).unwrap();
    }
    let write =
        |target| Instruction::new_with_bytes(PROGRAM_ID, &[WRITE_DATA, 1, 2, 3], vec![AccountMeta::new(target, false)]);

    send(&mut f, write(owned)).expect("owner may write");
    assert_eq!(f.chain.account(&owned).unwrap().data, vec![1, 2, 3, 0, 0, 0, 0, 0]);

    let err = send(&mut f, write(foreign)).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::ExternalAccountDataModified));
    assert_eq!(f.chain.account(&foreign).unwrap().data, vec![0; 8]);
}

#[test]
fn each_transaction_lands_in_its_own_slot_and_old_blockhashes_stay_valid() {
    let mut f = fixture();
    let old_hash = f.chain.latest_blockhash();
    let slot_before = f.chain.slot();
    let recipient = Address::new_unique();
    // Signed against a blockhash that is no longer the latest one.
    f.chain.airdrop(&Address::new_unique(), 1_000_000).unwrap();
    let message = Message::new_with_blockhash(
        &[system_instruction::transfer(&f.payer.pubkey(), &recipient, 1_000_000)],
        Some(&f.payer.pubkey()),
        &old_hash,
    );
    let tx = Transaction::new(&[&f.payer], message, old_hash);
    let landed = f.chain.send(VersionedTransaction::from(tx.clone())).expect("recent blockhash accepted");
    assert_eq!(landed.slot, slot_before + 1);
    assert_eq!(f.chain.slot(), slot_before + 2);
    assert_eq!(f.chain.balance(&recipient), 1_000_000);
    // Sending the same transaction again is refused, not paid twice.
    let again = f.chain.send(VersionedTransaction::from(tx)).unwrap_err();
    assert_eq!(again.err, TransactionError::AlreadyProcessed);
    assert_eq!(f.chain.balance(&recipient), 1_000_000);
}

#[test]
fn warp_moves_the_clock_that_programs_read() {
    let mut f = fixture();
    let before = f.chain.clock().unix_timestamp;
    f.chain.warp(3_600, 10);
    assert!(f.chain.clock().unix_timestamp >= before + 3_600);
    let ix = pay_ix(PAY_FROM_VAULT, f.vault, Address::new_unique(), 1_000_000);
    let landed = send(&mut f, ix).unwrap();
    assert!(landed.logs.iter().any(|l| l.starts_with(&format!("Program log: slot {} ", landed.slot))));
}

#[test]
fn changes_to_read_only_accounts_fail_like_on_chain() {
    let mut f = fixture();
    let owned = Address::new_unique();
    let account =
        Account { lamports: 10_000_000, data: vec![0; 8], owner: PROGRAM_ID, executable: false, rent_epoch: 0 };
    f.chain.svm_mut().set_account(owned, account).unwrap();
    let write =
        Instruction::new_with_bytes(PROGRAM_ID, &[WRITE_DATA, 9], vec![AccountMeta::new_readonly(owned, false)]);
    let err = send(&mut f, write).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::ReadonlyDataModified));
    assert_eq!(f.chain.account(&owned).unwrap().data, vec![0; 8]);

    let sink = Address::new_unique();
    f.chain.airdrop(&sink, 1_000_000).unwrap();
    let take = Instruction::new_with_bytes(
        PROGRAM_ID,
        &[TAKE_LAMPORTS],
        vec![AccountMeta::new_readonly(owned, false), AccountMeta::new(sink, false)],
    );
    let err = send(&mut f, take).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::ReadonlyLamportChange));
    assert_eq!(f.chain.balance(&owned), 10_000_000);
}

#[test]
fn sysvar_slices_come_from_the_runtime() {
    let mut f = fixture();
    let read = |offset: u8| Instruction::new_with_bytes(PROGRAM_ID, &[READ_CLOCK_SLICE, offset], vec![]);
    let landed = send(&mut f, read(0)).expect("reads the clock");
    assert!(landed.logs.contains(&format!("Program log: clock slot {}", landed.slot)), "{:?}", landed.logs);
    // Clock is 40 bytes: 8 bytes at offset 33 run past its end.
    let err = send(&mut f, read(33)).unwrap_err();
    assert_eq!(err, TransactionError::InstructionError(0, InstructionError::InvalidArgument));
}
