//! Allocator parameters for tensor workloads.
//!
//! glibc's `malloc` maps blocks above a threshold (dynamic, at most 32 MB) straight from the kernel
//! and unmaps them on `free`, and returns the top of the heap to the kernel beyond a trim
//! threshold. Tensor operations allocate and free buffers of megabytes to tens of megabytes on
//! every call, so by default those pages are mapped, zeroed by the kernel on first touch and
//! unmapped again, over and over: a third of an evaluation pass went to page faults. Keeping such
//! blocks on the heap and never trimming it made training 6–9% and evaluation 3–7% faster
//! (`bench/RESULTS.md`), at no cost in peak memory.

/// Largest block glibc accepts as a fixed `mmap` threshold (`HEAP_MAX_SIZE / 2` on 64-bit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Sets the allocator parameters; call first thing in `main`, before other threads start (the
/// `mixlab` binary and the benchmark programs do).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; no other thread is running yet.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
