//! An in-memory [`Store`] for tests and demos: collections are replaced or extended at will.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{
    CollectionData, CollectionRevision, Generation, ReleaseRow, Store, StoreError, VersionRow,
};

/// Collections held in a map; every change bumps the collection's revision.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    collections: BTreeMap<String, CollectionData>,
    unreachable: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Adds or replaces a collection.
    pub fn put_collection(&self, data: CollectionData) {
        self.with(|inner| {
            inner.collections.insert(data.meta.id.clone(), data);
        });
    }

    /// Appends versions to a collection and bumps its revision.
    pub fn add_versions(&self, collection_id: &str, versions: Vec<VersionRow>) {
        self.with(|inner| {
            if let Some(c) = inner.collections.get_mut(collection_id) {
                c.versions.extend(versions);
                c.revision += 1;
            }
        });
    }

    /// Adds a release to a collection and bumps its revision.
    pub fn add_release(&self, collection_id: &str, release: ReleaseRow) {
        self.with(|inner| {
            if let Some(c) = inner.collections.get_mut(collection_id) {
                c.releases.push(release);
                c.revision += 1;
            }
        });
    }

    /// Makes every call fail, as an unreachable database would.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.with(|inner| inner.unreachable = unreachable);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.with(|inner| inner.unreachable) {
            Err(StoreError::new("memory store", "unreachable"))
        } else {
            Ok(())
        }
    }
}

impl Store for MemoryStore {
    fn active_generation(&self) -> BoxFuture<'_, Result<Generation, StoreError>> {
        let result = self.check().map(|()| Generation {
            number: 1,
            keyspace: "memory".to_owned(),
        });
        async move { result }.boxed()
    }

    fn list_collections<'a>(
        &'a self,
        _generation: &'a Generation,
    ) -> BoxFuture<'a, Result<Vec<CollectionRevision>, StoreError>> {
        let result = self.check().map(|()| {
            self.with(|inner| {
                inner
                    .collections
                    .values()
                    .map(|c| CollectionRevision {
                        collection_id: c.meta.id.clone(),
                        revision: c.revision,
                    })
                    .collect()
            })
        });
        async move { result }.boxed()
    }

    fn load_collection<'a>(
        &'a self,
        _generation: &'a Generation,
        collection_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CollectionData>, StoreError>> {
        let result = self
            .check()
            .map(|()| self.with(|inner| inner.collections.get(collection_id).cloned()));
        async move { result }.boxed()
    }
}
