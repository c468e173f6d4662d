//! Reading positional JSON-RPC params, with errors that name the parameter.

use base64::Engine as _;
use serde_json::{Map, Value};
use solana_address::Address;
use solana_hash::Hash;
use solana_signature::Signature;

use super::RpcError;

pub struct Params<'a> {
    method: &'a str,
    items: &'a [Value],
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Params<'a> {
    pub fn new(method: &'a str, items: &'a [Value]) -> Self {
        Self { method, items }
    }

    fn error(&self, message: String) -> RpcError {
        RpcError::invalid_params(format!("Invalid params for {}: {message}", self.method))
    }

    pub fn required(&self, index: usize, name: &str) -> Result<&'a Value, RpcError> {
        self.items
            .get(index)
            .filter(|v| !v.is_null())
            .ok_or_else(|| self.error(format!("missing parameter {index} ({name})")))
    }

    pub fn string(&self, index: usize, name: &str) -> Result<&'a str, RpcError> {
        self.required(index, name)?
            .as_str()
            .ok_or_else(|| self.error(format!("parameter {index} ({name}) must be a string")))
    }

    pub fn u64(&self, index: usize, name: &str) -> Result<u64, RpcError> {
        self.required(index, name)?
            .as_u64()
            .ok_or_else(|| self.error(format!("parameter {index} ({name}) must be an unsigned integer")))
    }

    pub fn address(&self, index: usize, name: &str) -> Result<Address, RpcError> {
        let text = self.string(index, name)?;
        parse_address(text).map_err(|_| RpcError::invalid_params(format!("Invalid param: Invalid {name}: {text}")))
    }

    pub fn signature(&self, index: usize, name: &str) -> Result<Signature, RpcError> {
        let text = self.string(index, name)?;
        text.parse::<Signature>()
            .map_err(|_| RpcError::invalid_params(format!("Invalid param: Invalid {name}: {text}")))
    }

    pub fn hash(&self, index: usize, name: &str) -> Result<Hash, RpcError> {
        let text = self.string(index, name)?;
        text.parse::<Hash>().map_err(|_| RpcError::invalid_params(format!("Invalid param: Invalid {name}: {text}")))
    }

    pub fn array(&self, index: usize, name: &str) -> Result<&'a Vec<Value>, RpcError> {
        self.required(index, name)?
            .as_array()
            .ok_or_else(|| self.error(format!("parameter {index} ({name}) must be an array")))
    }

    /// The optional configuration object at `index` (empty when absent).
    pub fn config(&self, index: usize) -> Result<Config<'a>, RpcError> {
        match self.items.get(index) {
            None | Some(Value::Null) => Ok(Config { method: self.method, map: &EMPTY }),
            Some(Value::Object(map)) => Ok(Config { method: self.method, map }),
            Some(_) => Err(self.error(format!("parameter {index} (configuration) must be an object"))),
        }
    }
}

pub fn parse_address(text: &str) -> Result<Address, ()> {
    text.parse::<Address>().map_err(|_| ())
}

pub struct Config<'a> {
    method: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Config<'a> {
    fn error(&self, key: &str, expected: &str) -> RpcError {
        RpcError::invalid_params(format!("Invalid params for {}: `{key}` must be {expected}", self.method))
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, RpcError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.error(key, "a boolean")),
        }
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, RpcError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.error(key, "an unsigned integer")),
        }
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, RpcError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.error(key, "an integer")),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>, RpcError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.error(key, "a string")),
        }
    }

    pub fn object(&self, key: &str) -> Result<Option<Config<'a>>, RpcError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Config { method: self.method, map })),
            Some(_) => Err(self.error(key, "an object")),
        }
    }

    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, RpcError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| self.error(key, "an array")),
        }
    }
}

/// Decodes text in a transaction or memcmp `encoding` (base58 or base64).
pub fn decode_bytes(text: &str, encoding: &str, what: &str) -> Result<Vec<u8>, RpcError> {
    match encoding {
        "base58" => bs58::decode(text)
            .into_vec()
            .map_err(|err| RpcError::invalid_params(format!("invalid base58 encoding of {what}: {err}"))),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|err| RpcError::invalid_params(format!("invalid base64 encoding of {what}: {err}"))),
        other => {
            Err(RpcError::invalid_params(format!("unsupported encoding for {what}: {other} (use base58 or base64)")))
        }
    }
}
