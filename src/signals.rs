//! Signal dispositions of a command-line data tool.
//!
//! Rust's runtime ignores `SIGPIPE`, so `mixlab inspect | head -1` made `println!` panic with
//! "failed printing to stdout: Broken pipe" and a backtrace. The default disposition ends the
//! process quietly, as `cat` or `grep` do. `SIGXFSZ` is the opposite case: under a file-size
//! limit (`ulimit -f`, or a batch scheduler's) its default kills the process mid-write, leaving
//! temporary files and no message; ignored, the write fails with `EFBIG` ("File too large") and
//! mixlab reports the path and cleans up as on a full disk.
//!
//! Written against `libc` directly: setting two dispositions is one call each, and the crates
//! that wrap `sigaction` (nix, signal-hook) are not otherwise in the build.

/// Sets `SIGPIPE` to its default and ignores `SIGXFSZ`; call first thing in `main`.
pub fn set_dispositions() {
    #[cfg(unix)]
    // SAFETY: `signal` with `SIG_DFL`/`SIG_IGN` installs no handler code; no other thread runs yet.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
