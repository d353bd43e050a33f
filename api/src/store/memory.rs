//! An in-memory [`Store`] for tests and demos: collections are replaced or extended at will.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{
    CollectionData, CollectionRevision, ContentKey, Generation, Store, StoreError, VersionRow,
};

/// The key of one held content: object id, version and [`VersionRow::content`].
type Held = (String, i64, Option<[u8; 32]>);

/// Collections held in a map; every change bumps the collection's revision.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    collections: BTreeMap<String, CollectionData>,
    /// Per collection, (object id, version, content) → the JSON of its row with the latest
    /// date_added, as the projector keeps it; built on first fetch, dropped on every change.
    contents: HashMap<String, HashMap<Held, Bytes>>,
    /// Fetches that may still succeed before every fetch fails (`None`: no limit).
    fetches_left: Option<usize>,
    fetch_calls: usize,
    fetched_versions: usize,
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
            inner.contents.remove(&data.meta.id);
            inner.collections.insert(data.meta.id.clone(), data);
        });
    }

    /// Appends versions to a collection and bumps its revision.
    pub fn add_versions(&self, collection_id: &str, versions: Vec<VersionRow>) {
        self.with(|inner| {
            inner.contents.remove(collection_id);
            if let Some(c) = inner.collections.get_mut(collection_id) {
                c.versions.extend(versions);
                c.revision += 1;
            }
        });
    }

    /// Lets `calls` more [`Store::fetch_objects`] calls succeed, then fails every fetch (a
    /// database lost in the middle of a response); `None` lifts the limit.
    pub fn fail_fetches_after(&self, calls: Option<usize>) {
        self.with(|inner| inner.fetches_left = calls);
    }

    /// `(fetch_objects calls, versions fetched)` so far.
    pub fn fetch_counts(&self) -> (usize, usize) {
        self.with(|inner| (inner.fetch_calls, inner.fetched_versions))
    }

    fn fetch(
        &self,
        collection_id: &str,
        versions: &[ContentKey<'_>],
    ) -> Result<Vec<Bytes>, StoreError> {
        self.with(|inner| {
            match &mut inner.fetches_left {
                Some(0) => return Err(StoreError::new("memory store", "fetch failed")),
                Some(n) => *n -= 1,
                None => {}
            }
            inner.fetch_calls += 1;
            inner.fetched_versions += versions.len();
            let Inner {
                collections,
                contents,
                ..
            } = inner;
            let contents = contents.entry(collection_id.to_owned()).or_insert_with(|| {
                let mut latest: HashMap<Held, (i64, Bytes)> = HashMap::new();
                for row in collections
                    .get(collection_id)
                    .map_or(&[][..], |c| &c.versions[..])
                {
                    let entry = latest
                        .entry((row.object_id.clone(), row.version, row.content))
                        .or_insert((row.date_added, row.object_json.clone()));
                    if row.date_added > entry.0 {
                        *entry = (row.date_added, row.object_json.clone());
                    }
                }
                latest.into_iter().map(|(k, (_, json))| (k, json)).collect()
            });
            versions
                .iter()
                .map(|key| {
                    contents
                        .get(&(key.object_id.to_owned(), key.version, key.content.copied()))
                        .cloned()
                        .ok_or_else(|| {
                            StoreError::new(
                                "memory store",
                                format!("no version {} of {}", key.version, key.object_id),
                            )
                        })
                })
                .collect()
        })
    }
}

impl Store for MemoryStore {
    fn active_generation(&self) -> BoxFuture<'_, Result<Generation, StoreError>> {
        let generation = Generation {
            number: 1,
            keyspace: "memory".to_owned(),
        };
        async move { Ok(generation) }.boxed()
    }

    fn list_collections<'a>(
        &'a self,
        _generation: &'a Generation,
    ) -> BoxFuture<'a, Result<Vec<CollectionRevision>, StoreError>> {
        let revisions = self.with(|inner| {
            inner
                .collections
                .values()
                .map(|c| CollectionRevision {
                    collection_id: c.meta.id.clone(),
                    revision: c.revision,
                })
                .collect()
        });
        async move { Ok(revisions) }.boxed()
    }

    fn load_index<'a>(
        &'a self,
        _generation: &'a Generation,
        collection_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CollectionData>, StoreError>> {
        let index = self.with(|inner| {
            inner.collections.get(collection_id).map(|c| {
                let mut index = c.clone();
                for v in &mut index.versions {
                    v.object_json = Bytes::new();
                }
                index
            })
        });
        async move { Ok(index) }.boxed()
    }

    fn fetch_objects<'a>(
        &'a self,
        _generation: &'a Generation,
        collection_id: &'a str,
        versions: &'a [ContentKey<'a>],
    ) -> BoxFuture<'a, Result<Vec<Bytes>, StoreError>> {
        let result = self.fetch(collection_id, versions);
        async move { result }.boxed()
    }
}
