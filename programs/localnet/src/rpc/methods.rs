//! The JSON-RPC methods the settler (solana-py) and the SDK use.

use serde_json::{json, Value};
use solana_message::VersionedMessage;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_error::TransactionError;

use super::encode::{self, AccountEncoding, DataSlice};
use super::params::{decode_bytes, parse_address, Config, Params};
use super::{code, RpcError, RpcResult};
use crate::chain::{Chain, Simulation};

/// Every method this endpoint answers.
pub const METHODS: &[&str] = &[
    "getHealth",
    "getVersion",
    "getSlot",
    "getBlockHeight",
    "getGenesisHash",
    "getEpochInfo",
    "getLatestBlockhash",
    "isBlockhashValid",
    "getFeeForMessage",
    "getMinimumBalanceForRentExemption",
    "getBalance",
    "getAccountInfo",
    "getMultipleAccounts",
    "getProgramAccounts",
    "requestAirdrop",
    "sendTransaction",
    "simulateTransaction",
    "getSignatureStatuses",
    "getTransaction",
    "getSignaturesForAddress",
    "machpayLocalnetWarp",
];

/// Reported as `solana-core`: the agave line of the runtime crates.
const CORE_VERSION: &str = "4.2.1";

/// A packet's payload: a transaction larger than this cannot be sent to a
/// validator (`PACKET_DATA_SIZE`).
pub const PACKET_DATA_SIZE: usize = 1232;

pub fn dispatch(chain: &mut Chain, method: &str, items: &[Value]) -> RpcResult {
    let p = Params::new(method, items);
    match method {
        "getHealth" => Ok(json!("ok")),
        "getVersion" => Ok(json!({ "solana-core": CORE_VERSION, "feature-set": 0 })),
        // The last completed slot, as a validator answers: it is already in the
        // SlotHashes sysvar, so `getSlot` can seed an address lookup table's
        // `recent_slot` (the slot being filled is not there yet).
        "getSlot" | "getBlockHeight" => Ok(json!(chain.processed_slot())),
        "getGenesisHash" => Ok(json!(chain.genesis_hash().to_string())),
        "getEpochInfo" => {
            let clock = chain.clock();
            Ok(json!({
                "absoluteSlot": chain.processed_slot(),
                "blockHeight": chain.processed_slot(),
                "epoch": clock.epoch,
                "slotIndex": chain.processed_slot(),
                "slotsInEpoch": 432_000,
                "transactionCount": chain.transaction_count(),
            }))
        }
        "getLatestBlockhash" => {
            let blockhash = chain.latest_blockhash();
            let last_valid = chain.last_valid_slot(&blockhash).unwrap_or(chain.slot());
            Ok(with_context(chain, json!({ "blockhash": blockhash.to_string(), "lastValidBlockHeight": last_valid })))
        }
        "isBlockhashValid" => {
            let blockhash = p.hash(0, "blockhash")?;
            Ok(with_context(chain, json!(chain.is_blockhash_valid(&blockhash))))
        }
        "getFeeForMessage" => {
            let bytes = decode_bytes(p.string(0, "message")?, "base64", "message")?;
            let message: VersionedMessage = bincode::deserialize(&bytes)
                .map_err(|err| RpcError::invalid_params(format!("invalid message: {err}")))?;
            let fee = chain.fee_for(&message);
            Ok(with_context(chain, json!(fee)))
        }
        "getMinimumBalanceForRentExemption" => {
            let len = p.u64(0, "data length")?;
            Ok(json!(chain.svm().minimum_balance_for_rent_exemption(len as usize)))
        }
        "getBalance" => {
            let address = p.address(0, "address")?;
            Ok(with_context(chain, json!(chain.balance(&address))))
        }
        "getAccountInfo" => {
            let address = p.address(0, "address")?;
            let config = p.config(1)?;
            let (encoding, slice) = account_options(&config)?;
            let value = chain.account(&address).map(|a| encode::account(&a, encoding, slice));
            Ok(with_context(chain, json!(value)))
        }
        "getMultipleAccounts" => {
            let addresses = p.array(0, "addresses")?;
            let config = p.config(1)?;
            let (encoding, slice) = account_options(&config)?;
            let mut values = Vec::with_capacity(addresses.len());
            for item in addresses {
                let address = item
                    .as_str()
                    .and_then(|text| parse_address(text).ok())
                    .ok_or_else(|| RpcError::invalid_params(format!("Invalid param: Invalid address: {item}")))?;
                values.push(json!(chain.account(&address).map(|a| encode::account(&a, encoding, slice))));
            }
            Ok(with_context(chain, Value::Array(values)))
        }
        "getProgramAccounts" => get_program_accounts(chain, &p),
        "requestAirdrop" => {
            let address = p.address(0, "address")?;
            let lamports = p.u64(1, "lamports")?;
            match chain.airdrop(&address, lamports) {
                Ok(signature) => Ok(json!(signature.to_string())),
                Err(rejection) => {
                    Err(RpcError::new(code::INTERNAL_ERROR, format!("airdrop failed: {}", rejection.err)))
                }
            }
        }
        "sendTransaction" => send_transaction(chain, &p),
        "simulateTransaction" => simulate_transaction(chain, &p),
        "getSignatureStatuses" => {
            let signatures = p.array(0, "signatures")?;
            let mut values = Vec::with_capacity(signatures.len());
            for item in signatures {
                let signature = item
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| RpcError::invalid_params(format!("Invalid param: Invalid signature: {item}")))?;
                values.push(match chain.transaction(&signature) {
                    None => Value::Null,
                    Some(landed) => json!({
                        "slot": landed.slot,
                        "confirmations": null,
                        "err": landed.err.as_ref().map(encode::transaction_error),
                        "status": encode::status(&landed.err),
                        "confirmationStatus": "finalized",
                    }),
                });
            }
            Ok(with_context(chain, Value::Array(values)))
        }
        "getTransaction" => {
            let signature = p.signature(0, "signature")?;
            // The second param is a config object or, in old clients, the encoding.
            let (encoding, max_version) = match items.get(1) {
                Some(Value::String(encoding)) => (encoding.clone(), None),
                _ => {
                    let config = p.config(1)?;
                    (
                        config.str("encoding")?.unwrap_or("json").to_owned(),
                        config.u64("maxSupportedTransactionVersion")?,
                    )
                }
            };
            match chain.transaction(&signature) {
                None => Ok(Value::Null),
                Some(landed) => {
                    encode::check_version(&landed.transaction.message, max_version)?;
                    encode::landed_transaction(landed, &encoding, max_version.is_some())
                }
            }
        }
        "getSignaturesForAddress" => get_signatures_for_address(chain, &p),
        "machpayLocalnetWarp" => {
            let config = p.config(0)?;
            let seconds = config.i64("seconds")?.unwrap_or(0);
            let slots = config.u64("slots")?.unwrap_or(1);
            if seconds < 0 {
                return Err(RpcError::invalid_params(
                    "Invalid params for machpayLocalnetWarp: `seconds` must not be negative",
                ));
            }
            chain.warp(seconds, slots);
            let clock = chain.clock();
            Ok(json!({ "slot": chain.processed_slot(), "unixTimestamp": clock.unix_timestamp }))
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, format!("Method not found: {method}"))),
    }
}

fn with_context(chain: &Chain, value: Value) -> Value {
    json!({ "context": { "slot": chain.processed_slot(), "apiVersion": CORE_VERSION }, "value": value })
}

fn account_options(config: &Config) -> Result<(AccountEncoding, Option<DataSlice>), RpcError> {
    let encoding = AccountEncoding::parse(config.str("encoding")?)?;
    let slice = match config.object("dataSlice")? {
        None => None,
        Some(slice) => Some(DataSlice {
            offset: slice.u64("offset")?.unwrap_or(0) as usize,
            length: slice.u64("length")?.unwrap_or(0) as usize,
        }),
    };
    Ok((encoding, slice))
}

/// A `getProgramAccounts` filter.
enum Filter {
    DataSize(usize),
    Memcmp { offset: usize, bytes: Vec<u8> },
}

impl Filter {
    fn parse(value: &Value) -> Result<Self, RpcError> {
        let bad = |why: &str| {
            RpcError::invalid_params(format!("Invalid params for getProgramAccounts: filter {value}: {why}"))
        };
        if let Some(size) = value.get("dataSize") {
            return size
                .as_u64()
                .map(|s| Filter::DataSize(s as usize))
                .ok_or_else(|| bad("`dataSize` must be an unsigned integer"));
        }
        if let Some(memcmp) = value.get("memcmp") {
            let offset = memcmp
                .get("offset")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("`memcmp.offset` must be an unsigned integer"))?;
            let text =
                memcmp.get("bytes").and_then(Value::as_str).ok_or_else(|| bad("`memcmp.bytes` must be a string"))?;
            let encoding = memcmp.get("encoding").and_then(Value::as_str).unwrap_or("base58");
            let bytes = decode_bytes(text, encoding, "memcmp.bytes")?;
            return Ok(Filter::Memcmp { offset: offset as usize, bytes });
        }
        Err(bad("expected `dataSize` or `memcmp`"))
    }

    fn matches(&self, data: &[u8]) -> bool {
        match self {
            Filter::DataSize(size) => data.len() == *size,
            Filter::Memcmp { offset, bytes } => {
                data.get(*offset..offset.saturating_add(bytes.len())).is_some_and(|window| window == bytes.as_slice())
            }
        }
    }
}

fn get_program_accounts(chain: &Chain, p: &Params) -> RpcResult {
    let program = p.address(0, "program id")?;
    let config = p.config(1)?;
    let (encoding, slice) = account_options(&config)?;
    let filters = config
        .array("filters")?
        .map(|items| items.iter().map(Filter::parse).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    let mut accounts: Vec<_> = chain
        .svm()
        .get_program_accounts(&program)
        .into_iter()
        .filter(|(_, account)| account.lamports > 0 && filters.iter().all(|f| f.matches(&account.data)))
        .collect();
    accounts.sort_by_key(|(address, _)| *address);
    let values: Vec<Value> = accounts
        .iter()
        .map(|(address, account)| json!({ "pubkey": address.to_string(), "account": encode::account(account, encoding, slice) }))
        .collect();
    if config.bool("withContext", false)? {
        Ok(with_context(chain, Value::Array(values)))
    } else {
        Ok(Value::Array(values))
    }
}

fn decode_transaction(p: &Params, config: &Config) -> Result<VersionedTransaction, RpcError> {
    let encoding = config.str("encoding")?.unwrap_or("base58");
    let bytes = decode_bytes(p.string(0, "transaction")?, encoding, "transaction")?;
    if bytes.len() > PACKET_DATA_SIZE {
        return Err(RpcError::invalid_params(format!(
            "base64 encoded solana_transaction::versioned::VersionedTransaction too large: {} bytes (max: encoded/raw {}/{})",
            bytes.len(),
            PACKET_DATA_SIZE * 4 / 3 + 4,
            PACKET_DATA_SIZE
        )));
    }
    let tx: VersionedTransaction = bincode::deserialize(&bytes)
        .map_err(|err| RpcError::invalid_params(format!("failed to deserialize transaction: {err}")))?;
    tx.sanitize().map_err(|err| RpcError::invalid_params(format!("invalid transaction: {err}")))?;
    Ok(tx)
}

fn simulation_value(simulation: &Simulation, accounts: Value) -> Value {
    json!({
        "err": simulation.err.as_ref().map(encode::transaction_error),
        "logs": simulation.logs,
        "accounts": accounts,
        "unitsConsumed": simulation.compute_units_consumed,
        "returnData": null,
        "innerInstructions": null,
    })
}

fn preflight_failure(simulation: &Simulation) -> RpcError {
    let err = simulation.err.clone().unwrap_or(TransactionError::AccountNotFound);
    RpcError {
        code: code::SEND_TRANSACTION_PREFLIGHT_FAILURE,
        message: format!("Transaction simulation failed: {err}"),
        data: Some(simulation_value(simulation, Value::Null)),
    }
}

fn send_transaction(chain: &mut Chain, p: &Params) -> RpcResult {
    let config = p.config(1)?;
    let tx = decode_transaction(p, &config)?;
    if !tx.verify_with_results().into_iter().all(|ok| ok) {
        return Err(RpcError::new(
            code::TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
            "Transaction signature verification failure",
        ));
    }
    let signature = tx.signatures[0];
    if !config.bool("skipPreflight", false)? {
        let simulation = chain.simulate(&tx, true);
        if simulation.err.is_some() {
            return Err(preflight_failure(&simulation));
        }
    }
    match chain.send(tx) {
        Ok(_) => Ok(json!(signature.to_string())),
        // Without preflight a validator accepts the transaction and drops it
        // later; here the rejection is known at once, so say it.
        Err(rejection) => Err(preflight_failure(&Simulation {
            err: Some(rejection.err),
            logs: rejection.logs,
            compute_units_consumed: rejection.compute_units_consumed,
            post_accounts: Vec::new(),
        })),
    }
}

fn simulate_transaction(chain: &mut Chain, p: &Params) -> RpcResult {
    let config = p.config(1)?;
    let mut tx = decode_transaction(p, &config)?;
    let sig_verify = config.bool("sigVerify", false)?;
    let replace_blockhash = config.bool("replaceRecentBlockhash", false)?;
    if sig_verify && replace_blockhash {
        return Err(RpcError::invalid_params("sigVerify may not be used with replaceRecentBlockhash"));
    }
    if replace_blockhash {
        tx.message.set_recent_blockhash(chain.latest_blockhash());
    }
    let simulation = chain.simulate(&tx, sig_verify);
    let accounts = match config.object("accounts")? {
        None => Value::Null,
        Some(accounts) => {
            let encoding = AccountEncoding::parse(accounts.str("encoding")?)?;
            let addresses = accounts.array("addresses")?.cloned().unwrap_or_default();
            let mut values = Vec::new();
            for item in &addresses {
                let address = item
                    .as_str()
                    .and_then(|t| parse_address(t).ok())
                    .ok_or_else(|| RpcError::invalid_params(format!("Invalid param: Invalid address: {item}")))?;
                let post = simulation
                    .post_accounts
                    .iter()
                    .find(|(k, _)| *k == address)
                    .map(|(_, a)| a.clone())
                    .or_else(|| chain.account(&address));
                values.push(json!(post.filter(|a| a.lamports > 0).map(|a| encode::account(&a, encoding, None))));
            }
            Value::Array(values)
        }
    };
    Ok(with_context(chain, simulation_value(&simulation, accounts)))
}

fn get_signatures_for_address(chain: &Chain, p: &Params) -> RpcResult {
    let address = p.address(0, "address")?;
    let config = p.config(1)?;
    let limit = config.u64("limit")?.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(RpcError::invalid_params("Invalid limit; max 1000"));
    }
    let parse_signature = |key: &str| -> Result<Option<solana_signature::Signature>, RpcError> {
        config
            .str(key)?
            .map(|s| s.parse().map_err(|_| RpcError::invalid_params(format!("Invalid param: Invalid {key}: {s}"))))
            .transpose()
    };
    let before = parse_signature("before")?;
    let until = parse_signature("until")?;
    let mut out = Vec::new();
    // Newest first; `before` skips up to and including it, `until` stops at it.
    let mut started = before.is_none();
    for landed in chain.signatures_for(&address) {
        if !started {
            started = Some(landed.signature) == before;
            continue;
        }
        if Some(landed.signature) == until {
            break;
        }
        out.push(json!({
            "signature": landed.signature.to_string(),
            "slot": landed.slot,
            "err": landed.err.as_ref().map(encode::transaction_error),
            "memo": null,
            "blockTime": landed.block_time,
            "confirmationStatus": "finalized",
        }));
        if out.len() as u64 >= limit {
            break;
        }
    }
    Ok(Value::Array(out))
}
