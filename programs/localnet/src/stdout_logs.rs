//! `msg!` lines of native programs into the transaction logs.
//!
//! Natively, Anchor 1.2's `msg!` (solana-msg) is a plain `println!`: the
//! "Instruction: Settle" and "AnchorError occurred ..." lines a validator
//! shows as `Program log: ...` would go to the node's stdout. When enabled
//! (the `machpay-localnet` binary does; unit tests cannot, libtest captures
//! `println!` per thread), file descriptor 1 points at an unlinked temporary
//! file while a native instruction runs, and what the program printed is
//! moved into the runtime's log collector at every syscall boundary, so the
//! lines keep their order relative to CPIs and events.
//!
//! Process-wide by nature (fd 1): the node runs one transaction at a time.

use std::fs::File;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use solana_program_runtime::invoke_context::InvokeContext;
use solana_program_runtime::stable_log;

static ENABLED: AtomicBool = AtomicBool::new(false);
static STATE: Mutex<Option<Capture>> = Mutex::new(None);

struct Capture {
    file: File,
    /// fd 1 as it was before the outermost native instruction started.
    saved_stdout: Option<RawFd>,
    /// Native instructions running (CPIs nest them).
    depth: usize,
}

/// Routes native programs' stdout into transaction logs from now on.
pub fn enable() -> std::io::Result<()> {
    let path = std::env::temp_dir().join(format!("machpay-localnet-stdout-{}", std::process::id()));
    let file = File::options().read(true).write(true).create(true).truncate(true).open(&path)?;
    std::fs::remove_file(&path)?;
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Capture { file, saved_stdout: None, depth: 0 });
    ENABLED.store(true, Ordering::SeqCst);
    Ok(())
}

/// A native instruction starts: point fd 1 at the capture file (outermost only).
pub(crate) fn begin() {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(capture) = state.as_mut() else { return };
    capture.depth += 1;
    if capture.depth == 1 {
        let _ = std::io::stdout().flush();
        // SAFETY: plain descriptor calls on fds this process owns.
        unsafe {
            let saved = libc::dup(1);
            if saved >= 0 && libc::dup2(capture.file.as_raw_fd(), 1) >= 0 {
                capture.saved_stdout = Some(saved);
            } else if saved >= 0 {
                libc::close(saved);
            }
        }
    }
}

/// Moves what the running program printed so far into the transaction logs.
pub(crate) fn drain(context: &InvokeContext) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let _ = std::io::stdout().flush();
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(capture) = state.as_mut() else { return };
    if capture.saved_stdout.is_none() {
        return;
    }
    let len = capture.file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return;
    }
    let mut text = vec![0u8; len as usize];
    if capture.file.read_at(&mut text, 0).is_err() {
        return;
    }
    // fd 1 shares this file's offset: rewinding here rewinds the writer too.
    let _ = capture.file.set_len(0);
    let _ = capture.file.seek(SeekFrom::Start(0));
    drop(state);
    let collector = context.get_log_collector();
    for line in String::from_utf8_lossy(&text).lines() {
        stable_log::program_log(&collector, line);
    }
}

/// A native instruction ends: drain, and restore fd 1 after the outermost.
pub(crate) fn end(context: &InvokeContext) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    drain(context);
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(capture) = state.as_mut() else { return };
    capture.depth = capture.depth.saturating_sub(1);
    if capture.depth == 0 {
        if let Some(saved) = capture.saved_stdout.take() {
            // SAFETY: `saved` is the descriptor `begin` duplicated.
            unsafe {
                libc::dup2(saved, 1);
                libc::close(saved);
            }
        }
    }
}
