//! The `machpay-localnet` binary as a process: it announces its address, serves
//! JSON-RPC with the programs loaded, and puts the programs' `msg!` lines
//! (stdout natively) into the transaction logs, as a validator does.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use machpay_localnet::testkit::withdraw_ix;
use serde_json::{json, Value};
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_message::Message;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction::Transaction;

struct Node {
    child: Child,
    address: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_machpay-localnet"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line}")).to_owned();
    Node { child, address }
}

fn rpc(node: &Node, method: &str, params: Value) -> Value {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
    let mut stream = TcpStream::connect(&node.address).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        node.address,
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let json_start = reply.find("\r\n\r\n").expect("HTTP headers end") + 4;
    serde_json::from_str(&reply[json_start..]).unwrap()
}

#[test]
fn help_names_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_machpay-localnet")).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for option in ["--bind", "--port", "--version", "--help"] {
        assert!(text.contains(option), "{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_machpay-localnet")).arg("--port").arg("x").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--port"));
}

#[test]
fn a_failing_program_call_carries_its_anchor_error_lines() {
    let node = start();
    let agent = Keypair::new();
    let airdrop = rpc(&node, "requestAirdrop", json!([agent.pubkey().to_string(), 1_000_000_000u64]));
    assert!(airdrop["result"].is_string(), "{airdrop}");
    let latest = rpc(&node, "getLatestBlockhash", json!([]));
    let blockhash: Hash = latest["result"]["value"]["blockhash"].as_str().unwrap().parse().unwrap();
    // No bond exists: GlobalBond's `withdraw` fails in Anchor's account checks.
    let message = Message::new_with_blockhash(&[withdraw_ix(&agent.pubkey())], Some(&agent.pubkey()), &blockhash);
    let tx = VersionedTransaction::from(Transaction::new(&[&agent], message, blockhash));
    let encoded = base64::engine::general_purpose::STANDARD.encode(bincode::serialize(&tx).unwrap());

    let reply = rpc(&node, "sendTransaction", json!([encoded, {"encoding": "base64"}]));

    assert_eq!(reply["error"]["code"], -32002, "{reply}");
    let logs: Vec<&str> =
        reply["error"]["data"]["logs"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(logs[0], format!("Program {} invoke [1]", global_bond::ID));
    assert_eq!(logs[1], "Program log: Instruction: Withdraw");
    assert!(logs[2].starts_with("Program log: AnchorError caused by account: bond."), "{logs:?}");
    assert!(logs[3].starts_with(&format!("Program {} failed", global_bond::ID)), "{logs:?}");
}
