//! Selections kept for paging: a page request re-selects nothing when the same (collection
//! revision, view, filter) was asked before.
//!
//! The selection is an `Arc<[u32]>` of version indices and a page is a binary search in it, so
//! walking the 5,000 pages of Enterprise at `limit=5` costs one filter pass instead of 5,000.
//! Keys include the revision, so a reload never serves stale results; old entries just age out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A small FIFO-evicting map from query fingerprint to selection.
#[derive(Debug)]
pub struct ResultCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, Arc<[u32]>>,
    order: VecDeque<u64>,
}

impl ResultCache {
    pub fn new(capacity: usize) -> Self {
        ResultCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached selection for `key`, or `compute()`'s, stored. The bool says whether it was a hit.
    pub fn get_or_compute(
        &self,
        key: u64,
        compute: impl FnOnce() -> Vec<u32>,
    ) -> (Arc<[u32]>, bool) {
        if let Some(hit) = self.lock().map.get(&key) {
            return (hit.clone(), true);
        }
        // Computed outside the lock: two concurrent misses may both compute, which is cheaper
        // than serialising every request behind one filter pass.
        let value: Arc<[u32]> = compute().into();
        if self.capacity > 0 {
            let mut inner = self.lock();
            if inner.map.insert(key, value.clone()).is_none() {
                inner.order.push_back(key);
            }
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.map.remove(&old);
                }
            }
        }
        (value, false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds no invariant a panic elsewhere could break.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_evicted_oldest_first() {
        let cache = ResultCache::new(2);
        assert!(!cache.get_or_compute(1, || vec![1]).1);
        assert!(cache.get_or_compute(1, || vec![9]).1);
        cache.get_or_compute(2, || vec![2]);
        cache.get_or_compute(3, || vec![3]);
        let (value, hit) = cache.get_or_compute(1, || vec![7]);
        assert!(!hit);
        assert_eq!(&*value, &[7]);
    }
}
