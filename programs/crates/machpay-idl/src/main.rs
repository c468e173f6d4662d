//! `machpay-idl write|check`: regenerate or verify programs/idl/*.json.
use std::process::ExitCode;

use machpay_idl::{committed_path, generate, PROGRAMS};

const USAGE: &str = "usage: machpay-idl <write|check>

  write   regenerate programs/idl/<program>.json for machpay, global_bond and
          service_registry (runs `cargo test __anchor_private_print_idl
          --features idl-build` per program, into $MACHPAY_IDL_TARGET_DIR or
          $CARGO_TARGET_DIR/idl-build)
  check   exit 1 when a committed IDL differs from what the code generates";

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if !matches!(mode.as_str(), "write" | "check") {
        eprintln!("{USAGE}");
        return if mode == "--help" || mode == "-h" { ExitCode::SUCCESS } else { ExitCode::from(2) };
    }
    let mut drift = false;
    for (dir, stem) in PROGRAMS {
        let json = match generate(dir) {
            Ok(json) => json,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let path = committed_path(stem);
        if mode == "write" {
            if let Err(e) = std::fs::write(&path, &json) {
                eprintln!("error: writing {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(json.as_str()) {
            eprintln!("drift: {} differs from the code; run `cargo run -p machpay-idl -- write`", path.display());
            drift = true;
        } else {
            println!("ok {}", path.display());
        }
    }
    if drift {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
