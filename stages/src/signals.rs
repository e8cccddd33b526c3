//! Signal dispositions of a command-line data tool, and clean stops of training on request.
//!
//! Rust's runtime ignores `SIGPIPE`, so `mixlab inspect | head -1` made `println!` panic with
//! "failed printing to stdout: Broken pipe" and a backtrace. The default disposition ends the
//! process quietly, as `cat` or `grep` do. `SIGXFSZ` is the opposite case: under a file-size
//! limit (`ulimit -f`, or a batch scheduler's) its default kills the process mid-write, leaving
//! temporary files and no message; ignored, the write fails with `EFBIG` ("File too large") and
//! mixlab reports the path and cleans up as on a full disk.
//!
//! `SIGINT` and `SIGTERM` while a training loop runs ask it to stop: it writes a checkpoint at the
//! current step and the command exits with 128 + the signal's number, so the same command resumes
//! from there. A second signal, or one outside training (ingest, scoring: their outputs are
//! written atomically), ends the process at once, as the default disposition does.
//!
//! Written against `libc` directly: the handler only touches atomics and calls `signal` and
//! `raise`, both async-signal-safe; the crates that wrap `sigaction` (nix, signal-hook) are not
//! otherwise in the build.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Whether a training loop that can stop cleanly is running.
static TRAINING: AtomicBool = AtomicBool::new(false);
/// The signal that asked for a stop; 0 while none did.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Sets `SIGPIPE` to its default, ignores `SIGXFSZ` and installs the stop handler for `SIGINT`
/// and `SIGTERM`; call first thing in `main`.
pub fn set_dispositions() {
    #[cfg(unix)]
    // SAFETY: `signal` with `SIG_DFL`/`SIG_IGN` installs no handler code; `on_stop_signal` is
    // async-signal-safe (atomics, `signal`, `raise`); no other thread runs yet.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Ignores `SIGPIPE`, for a process that talks to peers over sockets (the Ballista roles and
/// client): a peer that hangs up is then an I/O error to handle, not the end of the process.
pub fn ignore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with `SIG_IGN` installs no handler code.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

#[cfg(unix)]
extern "C" fn on_stop_signal(signal: libc::c_int) {
    let first = STOP_SIGNAL
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if !(first && TRAINING.load(Ordering::SeqCst)) {
        // SAFETY: both calls are async-signal-safe; the default action ends the process.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// While alive, a stop signal asks the training loop to stop instead of ending the process.
#[derive(Debug)]
pub struct StoppableTraining(());

impl StoppableTraining {
    /// Marks a training loop as running.
    pub fn start() -> Self {
        TRAINING.store(true, Ordering::SeqCst);
        Self(())
    }
}

impl Drop for StoppableTraining {
    fn drop(&mut self) {
        TRAINING.store(false, Ordering::SeqCst);
    }
}

/// The signal that asked to stop, if one did.
pub fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}
