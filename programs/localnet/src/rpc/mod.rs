//! Solana JSON-RPC 2.0 over HTTP, answered from a [`Chain`].
//!
//! One thread serves requests in order: the chain is a single node, and
//! executing one transaction at a time is what gives each its own slot.
//! Every state is final the moment a request returns (one node, no forks), so
//! all commitments answer the same.

mod encode;
mod methods;
mod params;

use std::io::Read as _;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::chain::Chain;

pub use methods::METHODS;

/// JSON-RPC error codes, as a validator uses them.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// `sendTransaction` preflight simulation failed (data: err, logs, ...).
    pub const SEND_TRANSACTION_PREFLIGHT_FAILURE: i64 = -32002;
    pub const TRANSACTION_SIGNATURE_VERIFICATION_FAILURE: i64 = -32003;
    pub const TRANSACTION_PRECOMPILE_VERIFICATION_FAILURE: i64 = -32005;
    pub const UNSUPPORTED_TRANSACTION_VERSION: i64 = -32015;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }

    fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

pub type RpcResult = Result<Value, RpcError>;

fn response(id: Value, result: RpcResult) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "result": result, "id": id }),
        Err(err) => json!({ "jsonrpc": "2.0", "error": err.to_json(), "id": id }),
    }
}

/// Answers one JSON-RPC request object (not a batch).
fn handle_call(chain: &mut Chain, call: &Value) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return response(id, Err(RpcError::new(code::INVALID_REQUEST, "Invalid request: `method` must be a string")));
    };
    if call.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return response(id, Err(RpcError::new(code::INVALID_REQUEST, "Invalid request: `jsonrpc` must be \"2.0\"")));
    }
    let params = call.get("params").cloned().unwrap_or(Value::Array(Vec::new()));
    let params = match params {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        _ => {
            return response(id, Err(RpcError::invalid_params("Invalid params: `params` must be an array")));
        }
    };
    response(id, methods::dispatch(chain, method, &params))
}

/// Answers a request body: one call or a batch.
pub fn handle_body(chain: &mut Chain, body: &[u8]) -> Value {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(err) => {
            return response(Value::Null, Err(RpcError::new(code::PARSE_ERROR, format!("Parse error: {err}"))));
        }
    };
    match parsed {
        Value::Array(calls) if !calls.is_empty() => Value::Array(calls.iter().map(|c| handle_call(chain, c)).collect()),
        Value::Object(_) => handle_call(chain, &parsed),
        _ => response(Value::Null, Err(RpcError::new(code::INVALID_REQUEST, "Invalid request"))),
    }
}

/// Largest request body accepted (a transaction is at most 1,232 bytes; a
/// batch of a few hundred calls stays far below this).
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// Serves JSON-RPC on `server` until the process ends.
pub fn serve(server: tiny_http::Server, chain: &mut Chain) {
    let json_header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("a static header is valid");
    for mut request in server.incoming_requests() {
        if *request.method() != tiny_http::Method::Post {
            let _ = request.respond(
                tiny_http::Response::from_string("Solana JSON-RPC: POST a JSON-RPC 2.0 request\n")
                    .with_status_code(405),
            );
            continue;
        }
        let mut body = Vec::new();
        let read = request.as_reader().take(MAX_BODY_BYTES + 1).read_to_end(&mut body);
        let reply = match read {
            Ok(_) if body.len() as u64 > MAX_BODY_BYTES => {
                response(Value::Null, Err(RpcError::new(code::INVALID_REQUEST, "request body too large")))
            }
            Ok(_) => handle_body(chain, &body),
            Err(err) => response(Value::Null, Err(RpcError::new(code::PARSE_ERROR, format!("Parse error: {err}")))),
        };
        let bytes = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
        let _ = request.respond(tiny_http::Response::from_data(bytes).with_header(json_header.clone()));
    }
}

/// Binds `address` (host:port; port 0 picks a free one).
pub fn bind(address: &str) -> Result<(tiny_http::Server, SocketAddr), String> {
    let server = tiny_http::Server::http(address).map_err(|err| format!("cannot listen on {address}: {err}"))?;
    let local = server.server_addr().to_ip().ok_or_else(|| format!("cannot listen on {address}: not an IP address"))?;
    Ok((server, local))
}
