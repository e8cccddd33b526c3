//! Output buffers for large products.
//!
//! A product's output is written once, by the kernel. A large one (the tied output layer's
//! `[tokens, vocab]` logits: 128 MB at batch 16 × 256 tokens with 8k words) is mapped fresh by
//! `malloc` for every call, and first touching it page by page cost half of the product's time
//! (177 → 90 GFLOP/s for 4096×256×8192 on AVX2). Advising transparent huge pages for such a buffer
//! before it is touched maps it 2 MB at a time: 142 GFLOP/s (bench/RESULTS.md, issue 13). The
//! buffers are not zeroed: the kernels write every element (`matmul::new_product`).

/// Buffers at least this large (two huge pages) get the advice.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// An empty buffer with room for `len` floats, its untouched pages advised onto transparent huge
/// pages where the system allows it and the buffer is large.
pub fn with_capacity(len: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    if len * size_of::<f32>() >= HUGE_PAGE_MIN_BYTES {
        advise_huge_pages(values.spare_capacity_mut());
    }
    values
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(values: &mut [std::mem::MaybeUninit<f32>]) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = (values.as_mut_ptr() as usize).next_multiple_of(HUGE_PAGE);
    let end = (values.as_mut_ptr() as usize + size_of_val(values)) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: the range lies inside `values`, which this function borrows mutably; the advice
        // changes how its pages are backed, never their contents (a failure is harmless and
        // ignored: the buffer is then on normal pages).
        #[allow(unsafe_code)]
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_values: &mut [std::mem::MaybeUninit<f32>]) {}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_have_room_on_either_side_of_the_threshold() {
        let _rng = crate::test_rng::lock();
        for len in [0, 10, 2 * (super::HUGE_PAGE_MIN_BYTES / 4) + 3] {
            let mut values = super::with_capacity(len);
            assert!(values.is_empty() && values.capacity() >= len);
            values.extend((0..len).map(|i| i as f32));
            assert_eq!(values.last().copied(), len.checked_sub(1).map(|i| i as f32));
        }
    }
}
