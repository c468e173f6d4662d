//! Native IDL generation for the three programs, without the Anchor CLI.
//!
//! Anchor's IDL builder runs `cargo test __anchor_private_print_idl
//! --features idl-build` in a program's folder and assembles what the
//! generated tests print. We run it into a target directory of our own (a
//! nested cargo sharing the caller's would wait on its lock forever) and
//! compare with, or write, `programs/idl/<program>.json`.
use std::fmt;
use std::path::{Path, PathBuf};

/// (crate folder under `programs/programs/`, IDL file stem).
pub const PROGRAMS: [(&str, &str); 3] =
    [("machpay", "machpay"), ("global-bond", "global_bond"), ("service-registry", "service_registry")];

/// The Anchor workspace root (`programs/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root exists")
}

/// Where the nested IDL builds go: `$MACHPAY_IDL_TARGET_DIR`, else a sibling
/// of the caller's target dir, else `programs/target/idl-build`.
pub fn idl_target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MACHPAY_IDL_TARGET_DIR") {
        return dir.into();
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("idl-build"),
        None => workspace_root().join("target").join("idl-build"),
    }
}

#[derive(Debug)]
pub struct IdlError(pub String);

impl fmt::Display for IdlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdlError {}

/// Generate one program's IDL as pretty JSON with a trailing newline.
pub fn generate(program_dir: &str) -> Result<String, IdlError> {
    let path = workspace_root().join("programs").join(program_dir);
    // Anchor's builder would re-invoke `cargo +$RUSTUP_TOOLCHAIN`, and the
    // string it formats for that is broken in 0.1.4: let rustup pick the
    // toolchain from the environment as for any other cargo call.
    std::env::remove_var("RUSTUP_TOOLCHAIN");
    let target = idl_target_dir();
    let idl = anchor_lang_idl::build::IdlBuilder::new()
        .program_path(path.clone())
        .resolution(true)
        // `--lib`: the print tests live in the library; skip building the integration tests.
        .cargo_args(vec!["--lib".into(), "--target-dir".into(), target.display().to_string()])
        .build()
        .map_err(|e| IdlError(format!("building the IDL of {}: {e:#}", path.display())))?;
    let mut json = serde_json::to_string_pretty(&idl).map_err(|e| IdlError(format!("serializing the IDL: {e}")))?;
    json.push('\n');
    Ok(json)
}

/// `programs/idl/<stem>.json`.
pub fn committed_path(stem: &str) -> PathBuf {
    workspace_root().join("idl").join(format!("{stem}.json"))
}
