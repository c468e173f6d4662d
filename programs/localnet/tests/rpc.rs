//! The JSON-RPC layer: shapes and error codes as a validator answers them,
//! against a chain running the real programs; one test goes over real HTTP.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use base64::Engine as _;
use machpay_localnet::rpc::{self, code};
use machpay_localnet::testkit::*;
use machpay_localnet::MachPayNet;
use serde_json::{json, Value};
use solana_keypair::Keypair;
use solana_message::Message;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction::Transaction;

fn call(net: &mut MachPayNet, method: &str, params: Value) -> Value {
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params });
    let reply = rpc::handle_body(&mut net.chain, body.to_string().as_bytes());
    assert_eq!(reply["id"], 7, "{reply}");
    reply
}

fn result(net: &mut MachPayNet, method: &str, params: Value) -> Value {
    let reply = call(net, method, params);
    assert!(reply.get("error").is_none(), "{method}: {reply}");
    reply["result"].clone()
}

fn error_code(reply: &Value) -> i64 {
    reply["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {reply}"))
}

fn b64(tx: &VersionedTransaction) -> String {
    base64::engine::general_purpose::STANDARD.encode(bincode::serialize(tx).unwrap())
}

#[test]
fn malformed_requests_get_json_rpc_errors() {
    let mut net = MachPayNet::new();
    let reply = rpc::handle_body(&mut net.chain, b"{not json");
    assert_eq!(error_code(&reply), code::PARSE_ERROR);
    assert_eq!(error_code(&call(&mut net, "getNoSuchThing", json!([]))), code::METHOD_NOT_FOUND);
    let bad_key = call(&mut net, "getBalance", json!(["not-base58!"]));
    assert_eq!(error_code(&bad_key), code::INVALID_PARAMS);
    assert!(bad_key["error"]["message"].as_str().unwrap().contains("address"), "{bad_key}");
    assert_eq!(error_code(&call(&mut net, "getAccountInfo", json!([]))), code::INVALID_PARAMS);
    let encoding = call(&mut net, "getAccountInfo", json!([machpay_config().to_string(), {"encoding": "jsonParsed"}]));
    assert_eq!(error_code(&encoding), code::INVALID_PARAMS);
    let batch = rpc::handle_body(
        &mut net.chain,
        br#"[{"jsonrpc":"2.0","id":1,"method":"getHealth"},{"jsonrpc":"2.0","id":2,"method":"getSlot"}]"#,
    );
    assert_eq!(batch[0]["result"], "ok");
    assert!(batch[1]["result"].as_u64().unwrap() > 0);
}

#[test]
fn a_failing_transaction_is_refused_at_preflight_with_its_logs_and_costs_nothing() {
    let mut net = MachPayNet::new();
    let agent = net.funded(1_000_000_000);
    // Withdrawing from a bond that does not exist fails inside GlobalBond.
    let blockhash = net.chain.latest_blockhash();
    let tx = Transaction::new(
        &[&agent],
        Message::new_with_blockhash(&[withdraw_ix(&agent.pubkey())], Some(&agent.pubkey()), &blockhash),
        blockhash,
    );
    let tx = VersionedTransaction::from(tx);
    let reply = call(&mut net, "sendTransaction", json!([b64(&tx), {"encoding": "base64"}]));
    assert_eq!(error_code(&reply), code::SEND_TRANSACTION_PREFLIGHT_FAILURE, "{reply}");
    let data = &reply["error"]["data"];
    assert!(data["err"]["InstructionError"].is_array(), "{reply}");
    assert!(
        data["logs"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains(&global_bond::ID.to_string())),
        "{reply}"
    );
    assert_eq!(net.chain.balance(&agent.pubkey()), 1_000_000_000, "preflight failure charges no fee");

    // Without preflight the failed transaction lands and pays its fee.
    let sig = result(&mut net, "sendTransaction", json!([b64(&tx), {"encoding": "base64", "skipPreflight": true}]));
    let status = result(&mut net, "getSignatureStatuses", json!([[sig]]));
    assert!(status["value"][0]["err"]["InstructionError"].is_array(), "{status}");
    assert_eq!(net.chain.balance(&agent.pubkey()), 1_000_000_000 - 5_000);
}

#[test]
fn a_bad_signature_is_refused_before_execution() {
    let mut net = MachPayNet::new();
    let payer = net.funded(1_000_000_000);
    let blockhash = net.chain.latest_blockhash();
    let ix = solana_system_interface::instruction::transfer(&payer.pubkey(), &Keypair::new().pubkey(), 1_000_000);
    let mut tx = VersionedTransaction::from(Transaction::new(
        &[&payer],
        Message::new_with_blockhash(&[ix], Some(&payer.pubkey()), &blockhash),
        blockhash,
    ));
    tx.signatures[0] = solana_signature::Signature::from([1u8; 64]);
    let reply = call(&mut net, "sendTransaction", json!([b64(&tx), {"encoding": "base64"}]));
    assert_eq!(error_code(&reply), code::TRANSACTION_SIGNATURE_VERIFICATION_FAILURE);
}

#[test]
fn settlement_is_visible_through_transaction_and_account_queries() {
    let mut net = MachPayNet::new();
    let settler = net.funded(5_000_000_000);
    let vendor = net.funded(1_000_000_000).pubkey();
    let agent = net.agent_with_bond(3_000_000_000);
    let v = voucher(&agent, &vendor, 1, 2_000_000, 2_000_000);
    let table = net.lookup_table(&settler, &[vendor, channel_of(&agent.pubkey(), &vendor), bond_of(&agent.pubkey())]);
    let tx = net.v0_transaction(&settle_ixs(&settler.pubkey(), &vendor, &[v]), &settler, &[table]);
    let sig = result(&mut net, "sendTransaction", json!([b64(&tx), {"encoding": "base64"}]));

    // getSlot is the last completed slot: the one this transaction landed in.
    let status = result(&mut net, "getSignatureStatuses", json!([[sig]]));
    assert_eq!(status["value"][0]["slot"], result(&mut net, "getSlot", json!([])));

    let needs_version = call(&mut net, "getTransaction", json!([sig, {"encoding": "json"}]));
    assert_eq!(error_code(&needs_version), code::UNSUPPORTED_TRANSACTION_VERSION);
    let got =
        result(&mut net, "getTransaction", json!([sig, {"encoding": "json", "maxSupportedTransactionVersion": 0}]));
    assert_eq!(got["version"], 0);
    assert_eq!(got["meta"]["err"], Value::Null);
    assert_eq!(got["meta"]["fee"], 5_000 * 2, "fee payer + one precompile signature");
    let logs: Vec<&str> = got["meta"]["logMessages"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(logs.iter().any(|l| l.starts_with("Program data: ")), "{logs:?}");
    assert_eq!(got["meta"]["loadedAddresses"]["writable"].as_array().unwrap().len(), 3);
    let keys = got["transaction"]["message"]["accountKeys"].as_array().unwrap().len()
        + got["meta"]["loadedAddresses"]["writable"].as_array().unwrap().len()
        + got["meta"]["loadedAddresses"]["readonly"].as_array().unwrap().len();
    assert_eq!(got["meta"]["preBalances"].as_array().unwrap().len(), keys);

    let all_keys: Vec<&str> = got["transaction"]["message"]["accountKeys"]
        .as_array()
        .unwrap()
        .iter()
        .chain(got["meta"]["loadedAddresses"]["writable"].as_array().unwrap())
        .chain(got["meta"]["loadedAddresses"]["readonly"].as_array().unwrap())
        .map(|k| k.as_str().unwrap())
        .collect();
    let vendor_text = vendor.to_string();
    let vendor_index = all_keys.iter().position(|k| *k == vendor_text).expect("vendor among the keys");
    let pre = got["meta"]["preBalances"][vendor_index].as_u64().unwrap();
    let post = got["meta"]["postBalances"][vendor_index].as_u64().unwrap();
    assert_eq!(post - pre, 2_000_000, "{got}");

    let history = result(&mut net, "getSignaturesForAddress", json!([machpay::ID.to_string(), {"limit": 10}]));
    assert_eq!(history[0]["signature"], sig, "newest first: {history}");

    // The agent's channels, as a settler lists them (docs/onchain.md §4).
    let channels = result(
        &mut net,
        "getProgramAccounts",
        json!([machpay::ID.to_string(), {
            "encoding": "base64",
            "filters": [
                {"memcmp": {"offset": 0, "bytes": bs58::encode([0x31, 0x9f, 0x63, 0x6a, 0xdc, 0x57, 0xdb, 0x58]).into_string()}},
                {"memcmp": {"offset": 8, "bytes": agent.pubkey().to_string()}},
                {"dataSize": 121},
            ],
        }]),
    );
    assert_eq!(channels.as_array().unwrap().len(), 1, "{channels}");
    assert_eq!(channels[0]["pubkey"], channel_of(&agent.pubkey(), &vendor).to_string());
    let none =
        result(&mut net, "getProgramAccounts", json!([machpay::ID.to_string(), {"filters": [{"dataSize": 122}]}]));
    assert_eq!(none, json!([]));

    let sliced = result(
        &mut net,
        "getAccountInfo",
        json!([channel_of(&agent.pubkey(), &vendor).to_string(), {"encoding": "base64", "dataSlice": {"offset": 104, "length": 8}}]),
    );
    let settled =
        base64::engine::general_purpose::STANDARD.decode(sliced["value"]["data"][0].as_str().unwrap()).unwrap();
    assert_eq!(u64::from_le_bytes(settled.try_into().unwrap()), 2_000_000);
    assert_eq!(sliced["value"]["owner"], machpay::ID.to_string());
}

#[test]
fn blockhashes_expire_after_the_window_and_warp_moves_the_clock() {
    let mut net = MachPayNet::new();
    let latest = result(&mut net, "getLatestBlockhash", json!([]));
    let blockhash = latest["value"]["blockhash"].clone();
    assert_eq!(result(&mut net, "isBlockhashValid", json!([blockhash]))["value"], true);
    let before = net.chain.clock().unix_timestamp;
    let warped = result(&mut net, "machpayLocalnetWarp", json!([{"seconds": 7_200, "slots": 200}]));
    assert!(warped["unixTimestamp"].as_i64().unwrap() >= before + 7_200);
    assert_eq!(result(&mut net, "isBlockhashValid", json!([blockhash]))["value"], false);
    assert_eq!(error_code(&call(&mut net, "machpayLocalnetWarp", json!([{"seconds": -1}]))), code::INVALID_PARAMS);
}

#[test]
fn the_server_answers_over_http() {
    let (server, address) = rpc::bind("127.0.0.1:0").unwrap();
    std::thread::spawn(move || {
        let mut chain = machpay_localnet::Chain::new();
        rpc::serve(server, &mut chain);
    });
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getHealth"}"#;
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""result":"ok""#), "{reply}");
}

#[test]
fn simulation_options_behave_like_a_validator() {
    let mut net = MachPayNet::new();
    let payer = net.funded(1_000_000_000);
    let recipient = Keypair::new().pubkey();
    let old = net.chain.latest_blockhash();
    net.chain.warp(0, 200); // `old` is now expired
    let ix = solana_system_interface::instruction::transfer(&payer.pubkey(), &recipient, 2_000_000);
    let message = Message::new_with_blockhash(&[ix], Some(&payer.pubkey()), &old);
    // Unsigned: one all-zero signature.
    let unsigned = VersionedTransaction::from(Transaction::new_unsigned(message.clone()));
    let accounts = json!({"addresses": [recipient.to_string()], "encoding": "base64"});

    let expired = result(&mut net, "simulateTransaction", json!([b64(&unsigned), {"encoding": "base64"}]));
    assert_eq!(expired["value"]["err"], "BlockhashNotFound");
    let replaced = result(
        &mut net,
        "simulateTransaction",
        json!([b64(&unsigned), {"encoding": "base64", "replaceRecentBlockhash": true, "accounts": accounts}]),
    );
    assert_eq!(replaced["value"]["err"], Value::Null, "{replaced}");
    assert_eq!(replaced["value"]["accounts"][0]["lamports"], 2_000_000, "post-simulation state of the asked accounts");
    assert_eq!(net.chain.balance(&recipient), 0, "a simulation changes nothing");

    let mut fresh = message.clone();
    fresh.recent_blockhash = net.chain.latest_blockhash();
    let unsigned_fresh = VersionedTransaction::from(Transaction::new_unsigned(fresh));
    let verified = result(
        &mut net,
        "simulateTransaction",
        json!([b64(&unsigned_fresh), {"encoding": "base64", "sigVerify": true}]),
    );
    assert_eq!(verified["value"]["err"], "SignatureFailure", "{verified}");
    let conflicting = call(
        &mut net,
        "simulateTransaction",
        json!([b64(&unsigned_fresh), {"encoding": "base64", "sigVerify": true, "replaceRecentBlockhash": true}]),
    );
    assert_eq!(error_code(&conflicting), code::INVALID_PARAMS);

    let fee = result(
        &mut net,
        "getFeeForMessage",
        json!([base64::engine::general_purpose::STANDARD
            .encode(bincode::serialize(&solana_message::VersionedMessage::Legacy(message)).unwrap())]),
    );
    assert_eq!(fee["value"], 5_000);
}

#[test]
fn signature_history_pages_newest_first() {
    let mut net = MachPayNet::new();
    let payer = net.funded(1_000_000_000);
    let recipient = Keypair::new().pubkey();
    let mut sent = Vec::new();
    for lamports in [1_000_000u64, 1_000_001, 1_000_002] {
        let blockhash = net.chain.latest_blockhash();
        let ix = solana_system_interface::instruction::transfer(&payer.pubkey(), &recipient, lamports);
        let tx = Transaction::new(
            &[&payer],
            Message::new_with_blockhash(&[ix], Some(&payer.pubkey()), &blockhash),
            blockhash,
        );
        sent.push(result(
            &mut net,
            "sendTransaction",
            json!([b64(&VersionedTransaction::from(tx)), {"encoding": "base64"}]),
        ));
    }
    let all = result(&mut net, "getSignaturesForAddress", json!([recipient.to_string()]));
    let order: Vec<Value> = all.as_array().unwrap().iter().map(|e| e["signature"].clone()).collect();
    assert_eq!(order, vec![sent[2].clone(), sent[1].clone(), sent[0].clone()]);
    let page =
        result(&mut net, "getSignaturesForAddress", json!([recipient.to_string(), {"before": sent[2], "limit": 1}]));
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["signature"], sent[1]);
    let until = result(&mut net, "getSignaturesForAddress", json!([recipient.to_string(), {"until": sent[0]}]));
    assert_eq!(until.as_array().unwrap().len(), 2);
    assert_eq!(
        result(&mut net, "getTransaction", json!([solana_signature::Signature::from([3u8; 64]).to_string()])),
        Value::Null
    );
    assert_eq!(
        error_code(&call(&mut net, "getSignaturesForAddress", json!([recipient.to_string(), {"limit": 0}]))),
        code::INVALID_PARAMS
    );
}

#[test]
fn a_transaction_over_the_packet_size_is_refused_like_a_validator_does() {
    let mut net = MachPayNet::new();
    let settler = net.funded(10_000_000_000);
    let vendor = net.funded(1_000_000_000).pubkey();
    let agents: Vec<Keypair> = (0..5).map(|_| net.agent_with_bond(1_000_000_000)).collect();
    let vouchers: Vec<Voucher> = agents.iter().map(|a| voucher(a, &vendor, 1, 1_000_000, 1_000_000)).collect();
    let mut keys =
        vec![vendor, machpay_config(), bond_authority(), INSTRUCTIONS_SYSVAR, global_bond::ID, SYSTEM_PROGRAM];
    for a in &agents {
        keys.push(channel_of(&a.pubkey(), &vendor));
        keys.push(bond_of(&a.pubkey()));
    }
    let table = net.lookup_table(&settler, &keys);
    // Five channels: 1,367 bytes (docs/onchain.md §5), one packet is 1,232.
    let tx = net.v0_transaction(&settle_ixs(&settler.pubkey(), &vendor, &vouchers), &settler, &[table]);
    assert!(bincode::serialize(&tx).unwrap().len() > 1_232);
    let reply = call(&mut net, "sendTransaction", json!([b64(&tx), {"encoding": "base64"}]));
    assert_eq!(error_code(&reply), code::INVALID_PARAMS);
    assert!(reply["error"]["message"].as_str().unwrap().contains("too large"), "{reply}");
    assert_eq!(net.bond_balance(&agents[0].pubkey()), 1_000_000_000);
}
