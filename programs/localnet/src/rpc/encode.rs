//! The JSON shapes a validator answers with (accounts, transactions, errors).

use base64::Engine as _;
use serde_json::{json, Value};
use solana_account::Account;
use solana_message::VersionedMessage;
use solana_transaction_error::TransactionError;

use super::RpcError;
use crate::chain::LandedTransaction;

/// Byte range asked for with `dataSlice`.
#[derive(Debug, Clone, Copy)]
pub struct DataSlice {
    pub offset: usize,
    pub length: usize,
}

/// How account data is encoded in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEncoding {
    Base64,
    Base58,
}

impl AccountEncoding {
    pub fn parse(encoding: Option<&str>) -> Result<Self, RpcError> {
        match encoding {
            None | Some("base64") => Ok(Self::Base64),
            Some("base58") => Ok(Self::Base58),
            Some(other) => Err(RpcError::invalid_params(format!(
                "Invalid params: unsupported account encoding `{other}` (this localnet serves base64 and base58)"
            ))),
        }
    }
}

pub fn account(account: &Account, encoding: AccountEncoding, slice: Option<DataSlice>) -> Value {
    let data: &[u8] = match slice {
        Some(DataSlice { offset, length }) => {
            let start = offset.min(account.data.len());
            let end = start.saturating_add(length).min(account.data.len());
            &account.data[start..end]
        }
        None => &account.data,
    };
    let data = match encoding {
        AccountEncoding::Base64 => json!([base64::engine::general_purpose::STANDARD.encode(data), "base64"]),
        AccountEncoding::Base58 => json!([bs58::encode(data).into_string(), "base58"]),
    };
    json!({
        "data": data,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": account.owner.to_string(),
        "rentEpoch": account.rent_epoch,
        "space": account.data.len(),
    })
}

/// A transaction error as a validator serializes it (serde's externally
/// tagged enums: `"BlockhashNotFound"`, `{"InstructionError":[0,{"Custom":1}]}`).
pub fn transaction_error(err: &TransactionError) -> Value {
    serde_json::to_value(err).unwrap_or_else(|_| Value::String(err.to_string()))
}

pub fn status(err: &Option<TransactionError>) -> Value {
    match err {
        None => json!({ "Ok": null }),
        Some(err) => json!({ "Err": transaction_error(err) }),
    }
}

/// Whether a v0 transaction may be returned under `maxSupportedTransactionVersion`.
pub fn check_version(message: &VersionedMessage, max_supported: Option<u64>) -> Result<(), RpcError> {
    match (message, max_supported) {
        (VersionedMessage::Legacy(_), _) => Ok(()),
        (VersionedMessage::V0(_), Some(_)) => Ok(()),
        (VersionedMessage::V0(_), _) => Err(RpcError::new(
            super::code::UNSUPPORTED_TRANSACTION_VERSION,
            "Transaction version (0) is not supported by the requesting client. Please try the request again \
             with the following configuration parameter: \"maxSupportedTransactionVersion\": 0",
        )),
        _ => Err(RpcError::new(super::code::UNSUPPORTED_TRANSACTION_VERSION, "unsupported transaction version")),
    }
}

fn version(message: &VersionedMessage) -> Value {
    match message {
        VersionedMessage::Legacy(_) => json!("legacy"),
        _ => json!(0),
    }
}

fn message_json(message: &VersionedMessage) -> Value {
    let header = message.header();
    let instructions: Vec<Value> = message
        .instructions()
        .iter()
        .map(|ix| {
            json!({
                "programIdIndex": ix.program_id_index,
                "accounts": ix.accounts,
                "data": bs58::encode(&ix.data).into_string(),
                "stackHeight": null,
            })
        })
        .collect();
    let mut out = json!({
        "accountKeys": message.static_account_keys().iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "header": {
            "numRequiredSignatures": header.num_required_signatures,
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
        },
        "recentBlockhash": message.recent_blockhash().to_string(),
        "instructions": instructions,
    });
    if let Some(lookups) = message.address_table_lookups() {
        out["addressTableLookups"] = lookups
            .iter()
            .map(|l| {
                json!({
                    "accountKey": l.account_key.to_string(),
                    "writableIndexes": l.writable_indexes,
                    "readonlyIndexes": l.readonly_indexes,
                })
            })
            .collect();
    }
    out
}

/// `getTransaction` in the `json` or `base64` encoding.
/// `with_version`: the client sent `maxSupportedTransactionVersion` (a
/// validator answers `version` only then).
pub fn landed_transaction(landed: &LandedTransaction, encoding: &str, with_version: bool) -> Result<Value, RpcError> {
    let transaction = match encoding {
        "json" => json!({
            "signatures": landed.transaction.signatures.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "message": message_json(&landed.transaction.message),
        }),
        "base64" | "base58" => {
            let bytes = bincode::serialize(&landed.transaction).map_err(|err| {
                RpcError::new(super::code::INTERNAL_ERROR, format!("cannot encode transaction: {err}"))
            })?;
            if encoding == "base64" {
                json!([base64::engine::general_purpose::STANDARD.encode(bytes), "base64"])
            } else {
                json!([bs58::encode(bytes).into_string(), "base58"])
            }
        }
        other => {
            let message = format!("Invalid params: unsupported transaction encoding `{other}` (json, base64, base58)");
            return Err(RpcError::invalid_params(message));
        }
    };
    let inner: Vec<Value> = landed
        .inner_instructions
        .iter()
        .enumerate()
        .filter(|(_, list)| !list.is_empty())
        .map(|(index, list)| {
            json!({
                "index": index,
                "instructions": list.iter().map(|inner| json!({
                    "programIdIndex": inner.instruction.program_id_index,
                    "accounts": inner.instruction.accounts,
                    "data": bs58::encode(&inner.instruction.data).into_string(),
                    "stackHeight": inner.stack_height,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut out = json!({
        "slot": landed.slot,
        "blockTime": landed.block_time,
        "transaction": transaction,
        "meta": {
            "err": landed.err.as_ref().map(transaction_error),
            "status": status(&landed.err),
            "fee": landed.fee,
            "preBalances": landed.pre_balances,
            "postBalances": landed.post_balances,
            "innerInstructions": inner,
            "logMessages": landed.logs,
            "preTokenBalances": [],
            "postTokenBalances": [],
            "rewards": [],
            "loadedAddresses": {
                "writable": landed.loaded_writable.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                "readonly": landed.loaded_readonly.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            },
            "computeUnitsConsumed": landed.compute_units_consumed,
        },
    });
    if with_version {
        out["version"] = version(&landed.transaction.message);
    }
    Ok(out)
}
