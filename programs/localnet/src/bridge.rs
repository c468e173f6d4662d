//! The builtin bridge: runs a natively compiled program (an Anchor `entry`
//! function) as a LiteSVM builtin, inside the runtime's invoke context.
//!
//! The runtime calls builtins through a plain function pointer, so every
//! native program shares one builtin ([`NativeProgram`]) that looks up the
//! program being executed in a process-wide registry. For each instruction it
//! serializes the instruction's accounts with the SBF input ABI, deserializes
//! them into `AccountInfo`s exactly as an on-chain entrypoint would, calls the
//! program, and writes every changed lamport balance, data and owner back into
//! the transaction context through the runtime's setters, so its own checks
//! (ownership, read-only accounts, rent, balance conservation) apply.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Once, RwLock};

use solana_account_info_v3::AccountInfo;
use solana_address::Address;
use solana_program_error_v3::ProgramResult;
use solana_program_runtime::invoke_context::InvokeContext;
use solana_program_runtime::serialization::serialize_parameters;
use solana_transaction_context::IndexOfAccount;

pub use solana_instruction::error::InstructionError;

/// The shape of a native program's entrypoint: Anchor's generated `entry`
/// function and `solana_program_entrypoint::ProcessInstruction` both fit.
pub type NativeEntry = for<'a> fn(&'a Address, &'a [AccountInfo<'a>], &'a [u8]) -> ProgramResult;

/// Compute units charged per native instruction. Native code is not metered
/// (there is no VM), but the runtime rejects a builtin that consumes none.
pub const NATIVE_INSTRUCTION_COST: u64 = 1_000;

static REGISTRY: RwLock<Option<HashMap<Address, NativeEntry>>> = RwLock::new(None);
static STUBS_INSTALLED: Once = Once::new();

thread_local! {
    /// The invoke context of the instruction executing on this thread. The
    /// syscall stubs (CPI, logs, sysvars) reach the runtime through it.
    static INVOKE_CONTEXT: RefCell<Option<usize>> = const { RefCell::new(None) };
    /// The first runtime error a syscall hit during the current native
    /// instruction (a failed CPI). On-chain such an error aborts the caller at
    /// once; natively the program gets an `Err` back, so the bridge makes this
    /// the instruction's result whatever the program then returns.
    static SYSCALL_FAILURE: RefCell<Option<InstructionError>> = const { RefCell::new(None) };
}

/// Records a runtime error that must end the current native instruction.
pub(crate) fn fail_with(err: InstructionError) {
    SYSCALL_FAILURE.with(|slot| {
        slot.borrow_mut().get_or_insert(err);
    });
}

/// Registers `entry` as the code of `program_id` for every LiteSVM instance in
/// this process (the runtime only keeps a function pointer per builtin).
pub fn register(program_id: Address, entry: NativeEntry) {
    STUBS_INSTALLED.call_once(crate::stubs::install);
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    registry.get_or_insert_with(HashMap::new).insert(program_id, entry);
}

fn lookup(program_id: &Address) -> Option<NativeEntry> {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    registry.as_ref().and_then(|map| map.get(program_id).copied())
}

fn set_invoke_context(invoke_context: &mut InvokeContext) {
    let address = invoke_context as *mut InvokeContext as usize;
    INVOKE_CONTEXT.with(|slot| *slot.borrow_mut() = Some(address));
}

/// The invoke context of the native instruction running on this thread.
///
/// # Panics
/// When no native instruction is executing on this thread (a syscall stub
/// called outside the runtime, e.g. by a unit test calling a program directly).
pub(crate) fn invoke_context<'a, 'b>() -> &'a mut InvokeContext<'b, 'b> {
    let address = INVOKE_CONTEXT
        .with(|slot| *slot.borrow())
        .expect("a Solana syscall was made outside of a native instruction run by the localnet");
    // SAFETY: the pointer was taken from the `&mut InvokeContext` of the
    // builtin call currently on this thread's stack; the runtime does not
    // touch the context while the native program runs, and nested builtin
    // calls (CPI) store the same context again before using it.
    unsafe { &mut *(address as *mut InvokeContext<'b, 'b>) }
}

solana_program_runtime::declare_process_instruction!(NativeProgram, NATIVE_INSTRUCTION_COST, |invoke_context| {
    run_native_instruction(invoke_context)
});

fn run_native_instruction(invoke_context: &mut InvokeContext) -> Result<(), InstructionError> {
    set_invoke_context(invoke_context);
    let instruction_context = invoke_context.transaction_context.get_current_instruction_context()?;
    let program_id = *instruction_context.get_program_key()?;
    let entry = lookup(&program_id).ok_or(InstructionError::UnsupportedProgramId)?;
    let account_indices: HashSet<IndexOfAccount> =
        (0..instruction_context.get_number_of_instruction_accounts()).collect();

    // The same bytes the SBF loader hands an on-chain program (without the VM's
    // address-space tricks, which native code cannot have).
    let (mut input, _regions, _metadata, _data_offset) =
        serialize_parameters(&instruction_context, false, false, false)?;
    // SAFETY: `input` is a buffer serialized in the SBF input ABI with the
    // host's alignment, which is what `deserialize` parses; it outlives
    // every AccountInfo below.
    let (_, account_infos, data) =
        unsafe { solana_program_entrypoint_v3::deserialize(input.as_slice_mut().as_mut_ptr()) };

    // A nested native instruction (CPI into another native program) has its own
    // failure slot; restore the caller's afterwards.
    let outer_failure = SYSCALL_FAILURE.with(|slot| slot.borrow_mut().take());
    crate::stdout_logs::begin();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| entry(&program_id, &account_infos, data)));
    crate::stdout_logs::end(crate::bridge::invoke_context());
    let failure = SYSCALL_FAILURE.with(|slot| std::mem::replace(&mut *slot.borrow_mut(), outer_failure));
    if let Some(err) = failure {
        return Err(err);
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(program_error)) => {
            return Err(InstructionError::from(u64::from(program_error)));
        }
        Err(_) => return Err(InstructionError::ProgramFailedToComplete),
    }

    // A CPI made by the program may have replaced the context pointer's
    // instruction; fetch the current instruction again before writing back.
    let invoke_context = crate::bridge::invoke_context();
    let instruction_context = invoke_context.transaction_context.get_current_instruction_context()?;
    let by_key: HashMap<Address, &AccountInfo> = account_infos.iter().map(|info| (*info.key, info)).collect();
    for index in account_indices {
        // Read-only accounts go through the same setters: a change to one
        // fails with the runtime's own error (ReadonlyLamportChange,
        // ReadonlyDataModified, ...), as it would on-chain.
        let mut account = instruction_context.try_borrow_instruction_account(index)?;
        let Some(info) = by_key.get(account.get_key()) else {
            continue;
        };
        if account.get_lamports() != info.lamports() {
            account.set_lamports(info.lamports())?;
        }
        let data = info.try_borrow_data().map_err(|_| InstructionError::AccountBorrowFailed)?;
        if account.get_data() != &data[..] {
            account.set_data_from_slice(&data)?;
        }
        drop(data);
        // The owner goes last: the runtime allows data and lamport changes only
        // while the program still owns the account.
        if account.get_owner() != info.owner {
            account.set_owner(info.owner.as_ref())?;
        }
    }
    Ok(())
}
