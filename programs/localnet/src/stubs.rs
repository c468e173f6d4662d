//! Syscalls of natively compiled programs, answered by the runtime.
//!
//! Off the SBF target, Anchor 1.2 (with its default `solana-v3` crates) sends
//! its syscalls to `solana_sysvar::program_stubs` of solana-sysvar 3.x:
//! CPI (`solana-invoke`), `Sysvar::get`, the stack height and return data.
//! Installing these stubs on any other copy of that crate leaves the default
//! stubs in place, whose `sol_invoke_signed` logs and returns `Ok` — a CPI that
//! silently does nothing. `tests/bridge.rs` asserts balances after every CPI
//! to catch exactly that.
//!
//! Not routed here by Anchor 1.2 natively: `msg!` (a `println!`; see
//! [`crate::stdout_logs`]) and `emit!`/`sol_log_data` (a no-op). The MachPay
//! programs send their events through `solana_sysvar::program_stubs::sol_log_data`
//! off-chain (their `emit_event`), which lands here.

use std::collections::HashMap;

use solana_account_info_v3::AccountInfo;
use solana_address::Address;
use solana_instruction::error::{InstructionError, UNSUPPORTED_SYSVAR};
use solana_instruction::Instruction;
use solana_program_error_v3::{ProgramError, ProgramResult};
use solana_program_runtime::invoke_context::InvokeContext;
use solana_program_runtime::solana_sbpf::vm::ContextObject as _;
use solana_program_runtime::stable_log;
use solana_svm_timings::ExecuteTimings;
use solana_sysvar_v3::program_stubs::{set_syscall_stubs, SyscallStubs};

use crate::bridge::invoke_context;

/// `SUCCESS` of the syscall ABI.
const SUCCESS: u64 = 0;
/// `OFFSET_LENGTH_EXCEEDS_SYSVAR` of `sol_get_sysvar`.
const OFFSET_LENGTH_EXCEEDS_SYSVAR: u64 = 1;
/// `SYSVAR_NOT_FOUND` of `sol_get_sysvar`.
const SYSVAR_NOT_FOUND: u64 = 2;

pub(crate) fn install() {
    set_syscall_stubs(Box::new(RuntimeSyscalls));
}

struct RuntimeSyscalls;

/// Runtime errors have no exact `ProgramError` counterpart in general; the
/// exact error is kept in [`crate::bridge::fail_with`] and becomes the
/// instruction's error, so a failed CPI aborts the caller like on-chain even
/// if the program ignores the returned error.
fn program_error(err: InstructionError) -> ProgramError {
    let lossy = ProgramError::try_from(err.clone()).unwrap_or(ProgramError::Custom(u32::MAX));
    crate::bridge::fail_with(err);
    lossy
}

fn write_sysvar<T: Clone>(value: Result<std::sync::Arc<T>, InstructionError>, var_addr: *mut u8) -> u64 {
    match value {
        Ok(value) => {
            // SAFETY: the caller passes a pointer to a `T` (the getter of that
            // very sysvar type, see `impl_sysvar_get!`).
            unsafe { *(var_addr as *mut T) = T::clone(&value) };
            SUCCESS
        }
        Err(_) => UNSUPPORTED_SYSVAR,
    }
}

impl SyscallStubs for RuntimeSyscalls {
    fn sol_log(&self, message: &str) {
        let context = invoke_context();
        crate::stdout_logs::drain(context);
        stable_log::program_log(&context.get_log_collector(), message);
    }

    fn sol_log_data(&self, fields: &[&[u8]]) {
        let context = invoke_context();
        crate::stdout_logs::drain(context);
        stable_log::program_data(&context.get_log_collector(), fields);
    }

    fn sol_log_compute_units(&self) {
        let context = invoke_context();
        let remaining = context.get_remaining();
        stable_log::program_log(
            &context.get_log_collector(),
            &format!("Program consumption: {remaining} units remaining"),
        );
    }

    fn sol_remaining_compute_units(&self) -> u64 {
        invoke_context().get_remaining()
    }

    fn sol_invoke_signed(
        &self,
        instruction: &Instruction,
        account_infos: &[AccountInfo],
        signers_seeds: &[&[&[u8]]],
    ) -> ProgramResult {
        let context = invoke_context();
        crate::stdout_logs::drain(context);
        invoke_signed(context, instruction, account_infos, signers_seeds)
    }

    fn sol_get_sysvar(&self, sysvar_id_addr: *const u8, var_addr: *mut u8, offset: u64, length: u64) -> u64 {
        let context = invoke_context();
        // SAFETY: the ABI passes a pointer to a 32-byte address.
        let sysvar_id = unsafe { *(sysvar_id_addr as *const Address) };
        let Some(buffer) = context.environment_config.sysvar_cache().sysvar_id_to_buffer(&sysvar_id) else {
            return SYSVAR_NOT_FOUND;
        };
        let (Ok(offset), Ok(length)) = (usize::try_from(offset), usize::try_from(length)) else {
            return OFFSET_LENGTH_EXCEEDS_SYSVAR;
        };
        let Some(end) = offset.checked_add(length).filter(|end| *end <= buffer.len()) else {
            return OFFSET_LENGTH_EXCEEDS_SYSVAR;
        };
        // SAFETY: the caller's buffer holds at least `length` bytes
        // (`solana_sysvar::get_sysvar` checks it before the call).
        unsafe { std::ptr::copy_nonoverlapping(buffer[offset..end].as_ptr(), var_addr, length) };
        SUCCESS
    }

    fn sol_get_clock_sysvar(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(invoke_context().environment_config.sysvar_cache().get_clock(), var_addr)
    }

    fn sol_get_epoch_schedule_sysvar(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(invoke_context().environment_config.sysvar_cache().get_epoch_schedule(), var_addr)
    }

    fn sol_get_epoch_rewards_sysvar(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(invoke_context().environment_config.sysvar_cache().get_epoch_rewards(), var_addr)
    }

    fn sol_get_last_restart_slot(&self, var_addr: *mut u8) -> u64 {
        write_sysvar(invoke_context().environment_config.sysvar_cache().get_last_restart_slot(), var_addr)
    }

    #[allow(deprecated)]
    fn sol_get_rent_sysvar(&self, var_addr: *mut u8) -> u64 {
        // The runtime keeps the v4 `Rent`; programs read the v3 one (same
        // bytes, renamed fields), so convert field by field.
        match invoke_context().environment_config.sysvar_cache().get_rent() {
            Ok(rent) => {
                let program_rent = solana_rent_v3::Rent {
                    lamports_per_byte_year: rent.lamports_per_byte,
                    exemption_threshold: f64::from_le_bytes(rent.exemption_threshold),
                    burn_percent: rent.burn_percent,
                };
                // SAFETY: the caller passes a pointer to a v3 `Rent`.
                unsafe { *(var_addr as *mut solana_rent_v3::Rent) = program_rent };
                SUCCESS
            }
            Err(_) => UNSUPPORTED_SYSVAR,
        }
    }

    fn sol_get_return_data(&self) -> Option<(Address, Vec<u8>)> {
        let (program_id, data) = invoke_context().transaction_context.get_return_data();
        Some((*program_id, data.to_vec()))
    }

    fn sol_set_return_data(&self, data: &[u8]) {
        let context = invoke_context();
        let caller = context
            .transaction_context
            .get_current_instruction_context()
            .and_then(|ix| ix.get_program_key().copied())
            .expect("return data set outside of an instruction");
        context
            .transaction_context
            .set_return_data(caller, data.to_vec())
            .expect("return data longer than the runtime allows");
    }

    fn sol_get_stack_height(&self) -> u64 {
        invoke_context().get_stack_height() as u64
    }
}

/// A CPI made by a native program: the caller's `AccountInfo` edits go into
/// the transaction context, the runtime runs the callee (with its signer,
/// privilege and ownership checks), and the results come back into the
/// caller's `AccountInfo`s — as the SBF loader's CPI syscall does.
fn invoke_signed(
    context: &mut InvokeContext,
    instruction: &Instruction,
    account_infos: &[AccountInfo],
    signers_seeds: &[&[&[u8]]],
) -> ProgramResult {
    let caller = context
        .transaction_context
        .get_current_instruction_context()
        .and_then(|ix| ix.get_program_key().copied())
        .map_err(program_error)?;
    let signers = signers_seeds
        .iter()
        .map(|seeds| Address::create_program_address(seeds, &caller))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ProgramError::InvalidSeeds)?;

    context.prepare_next_cpi_instruction(instruction.clone(), &signers).map_err(program_error)?;

    let info_index: HashMap<Address, usize> =
        account_infos.iter().enumerate().map(|(i, info)| (*info.key, i)).collect();
    // (index in transaction, index in account_infos) of writable callee accounts.
    let mut writable = Vec::new();
    {
        let transaction_context = &context.transaction_context;
        let caller_ix = transaction_context.get_current_instruction_context().map_err(program_error)?;
        let callee_ix = transaction_context.get_next_instruction_context().map_err(program_error)?;
        for callee_account in callee_ix.instruction_accounts() {
            let key = transaction_context
                .get_key_of_account_at_index(callee_account.index_in_transaction)
                .map_err(program_error)?;
            let &info_at = info_index.get(key).ok_or(ProgramError::NotEnoughAccountKeys)?;
            let info = &account_infos[info_at];
            let index_in_caller = caller_ix
                .get_index_of_account_in_instruction(callee_account.index_in_transaction)
                .map_err(program_error)?;
            let mut account = caller_ix.try_borrow_instruction_account(index_in_caller).map_err(program_error)?;
            if account.get_lamports() != info.lamports() {
                account.set_lamports(info.lamports()).map_err(program_error)?;
            }
            let data = info.try_borrow_data()?;
            if account.get_data() != &data[..] {
                account.set_data_from_slice(&data).map_err(program_error)?;
            }
            drop(data);
            if account.get_owner() != info.owner {
                account.set_owner(info.owner.as_ref()).map_err(program_error)?;
            }
            if callee_account.is_writable() {
                writable.push((callee_account.index_in_transaction, info_at));
            }
        }
    }

    let mut units = 0;
    context.process_instruction(&mut units, &mut ExecuteTimings::default()).map_err(program_error)?;

    let transaction_context = &context.transaction_context;
    let caller_ix = transaction_context.get_current_instruction_context().map_err(program_error)?;
    for (index_in_transaction, info_at) in writable {
        let index_in_caller =
            caller_ix.get_index_of_account_in_instruction(index_in_transaction).map_err(program_error)?;
        let account = caller_ix.try_borrow_instruction_account(index_in_caller).map_err(program_error)?;
        let info = &account_infos[info_at];
        **info.try_borrow_mut_lamports()? = account.get_lamports();
        if info.owner != account.get_owner() {
            // SAFETY: the SBF loader also rewrites the owner in the caller's
            // serialized input after a CPI (e.g. System `assign`); natively the
            // owner lives behind a shared reference into the input buffer.
            #[allow(invalid_reference_casting)]
            unsafe {
                *(info.owner as *const Address as *mut Address) = *account.get_owner();
            }
        }
        let new_data = account.get_data();
        if info.data_len() != new_data.len() {
            info.resize(new_data.len())?;
        }
        info.try_borrow_mut_data()?.copy_from_slice(new_data);
    }
    Ok(())
}
