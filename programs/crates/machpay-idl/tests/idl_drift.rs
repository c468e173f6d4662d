//! Fails when a committed IDL (the settler's codec is derived from it) no
//! longer matches the programs. Fix: `cargo run -p machpay-idl -- write`.
use machpay_idl::{committed_path, generate, PROGRAMS};

#[test]
fn committed_idls_match_the_code() {
    let mut drifted = Vec::new();
    for (dir, stem) in PROGRAMS {
        let generated = generate(dir).unwrap_or_else(|e| panic!("{e}"));
        let path = committed_path(stem);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if committed != generated {
            drifted.push(path.display().to_string());
        }
    }
    assert!(drifted.is_empty(), "IDL drift in {drifted:?}: run `cargo run -p machpay-idl -- write` and commit");
}
