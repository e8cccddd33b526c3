//! burn's seeded generator is process-wide: a test that seeds it and one that draws from it at the
//! same time would see each other's streams (and a seeded test a model other than the one it
//! seeded). Every unit test of this crate takes this lock, so they run one at a time.

use std::sync::{Mutex, MutexGuard};

/// The lock; a test that panicked while holding it leaves it usable.
pub(crate) fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
