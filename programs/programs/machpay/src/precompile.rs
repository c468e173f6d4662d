//! Reading the Ed25519 precompile instruction through the instructions sysvar.
//!
//! The precompile must be the instruction immediately before the one
//! executing (so one precompile serves exactly one MachPay instruction), at
//! the top level. Its data is then checked by
//! `machpay_protocol::ed25519::parse` against the single canonical layout.
use anchor_lang::compat::solana_instructions_sysvar::{load_current_index_checked, load_instruction_at_checked};
use anchor_lang::prelude::*;
use anchor_lang::solana_program::instruction::Instruction;

use crate::error::MachPayError;

/// The precompile instruction preceding the current one (program id and data
/// not yet validated: pass them to `machpay_protocol::ed25519::parse`).
pub fn preceding_instruction(instructions_sysvar: &AccountInfo) -> Result<Instruction> {
    // The *_checked loaders verify the sysvar's address.
    let current = load_current_index_checked(instructions_sysvar)?;
    let index = current.checked_sub(1).ok_or(MachPayError::MissingPrecompile)?;
    Ok(load_instruction_at_checked(usize::from(index), instructions_sysvar)?)
}
