use anchor_lang::prelude::*;

#[error_code]
pub enum BondError {
    #[msg("only the configured admin may do this")]
    Unauthorized,
    #[msg("withdrawal_timelock must be >= 0 seconds")]
    InvalidTimelock,
    #[msg("amount must be greater than zero")]
    ZeroAmount,
    #[msg("amount exceeds the bond balance")]
    InsufficientBond,
    #[msg("no withdrawal is pending for this bond")]
    NoPendingWithdrawal,
    #[msg("the withdrawal timelock has not expired yet")]
    WithdrawalLocked,
    #[msg("only the MachPay bond_authority PDA may debit or slash a bond")]
    NotMachPayAuthority,
    #[msg("prover_reward exceeds the bond balance")]
    RewardTooLarge,
    #[msg("arithmetic overflow")]
    Overflow,
    #[msg("the bond account does not belong to this agent")]
    WrongAgent,
}
