//! Locking the worker's in-memory state (busy and skipped tasks, the journal,
//! the policy cache) from async handlers and task threads alike.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, even if a holder panicked.
///
/// Every critical section is a single insert, remove or file write whose
/// in-memory update happens last, so a poisoned lock holds consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
