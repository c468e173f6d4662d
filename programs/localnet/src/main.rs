//! `machpay-localnet`: a local Solana JSON-RPC endpoint backed by LiteSVM,
//! with the MachPay programs loaded natively at their program ids.

use std::io::Write as _;
use std::process::ExitCode;

use machpay_localnet::{programs, rpc, Chain};

const HELP: &str = "\
machpay-localnet: a local Solana JSON-RPC endpoint (one node, LiteSVM) with the
MachPay programs (GlobalBond, MachPay, ServiceRegistry) loaded natively.

USAGE:
    machpay-localnet [--bind HOST] [--port PORT]

OPTIONS:
    --bind HOST   address to listen on (default 127.0.0.1; keep it local: the
                  faucet gives lamports to anyone who asks)
    --port PORT   TCP port (default 8899, the validator's; 0 picks a free one)
    --version     print the version and the runtime versions
    -h, --help    print this help

On start it prints one line `listening on http://HOST:PORT` to stdout once
it is ready. State lives in memory only: a restart starts a fresh chain.
Methods: see `--version` and programs/localnet/README.md.
";

struct Args {
    bind: String,
    port: u16,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args { bind: "127.0.0.1".to_owned(), port: 8899 };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "--version" => {
                println!(
                    "machpay-localnet {} (LiteSVM 0.16, agave 4.2.1 runtime crates, anchor-lang 1.2.2)",
                    env!("CARGO_PKG_VERSION")
                );
                println!("methods: {}", rpc::METHODS.join(", "));
                return Ok(None);
            }
            "--bind" => args.bind = iter.next().ok_or("--bind needs a HOST")?,
            "--port" => {
                let value = iter.next().ok_or("--port needs a PORT")?;
                args.port = value.parse().map_err(|_| format!("--port: not a TCP port: {value}"))?;
            }
            other => return Err(format!("unknown argument: {other} (see --help)")),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("machpay-localnet: {message}");
            return ExitCode::from(2);
        }
    };
    let address = format!("{}:{}", args.bind, args.port);
    let (server, local) = match rpc::bind(&address) {
        Ok(bound) => bound,
        Err(message) => {
            eprintln!("machpay-localnet: {message}");
            return ExitCode::from(1);
        }
    };
    if let Err(err) = machpay_localnet::stdout_logs::enable() {
        eprintln!("machpay-localnet: program `msg!` lines stay on stdout (no capture file: {err})");
    }
    let mut chain = Chain::new();
    programs::load(&mut chain);
    println!("listening on http://{local}");
    let _ = std::io::stdout().flush();
    rpc::serve(server, &mut chain);
    ExitCode::SUCCESS
}
