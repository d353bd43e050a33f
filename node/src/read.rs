//! The API's reads of an in-memory [`Projection`]: the same rows the CQL store reads, in the
//! same order, assembled by the same functions (those of `api::store`).

use bytes::Bytes;
use futures::future::BoxFuture;

use api::store::{
    self, CollectionData, CollectionMeta, CollectionRevision, ContentKey, Generation, ReleaseRow,
    Store, StoreError, VersionRow,
};
use projector::rows::ReleaseKey;

use crate::projection::{Projection, Rows};

/// The one generation a node has: it rebuilds its projection at start instead of switching.
const GENERATION: i32 = 1;
const KEYSPACE: &str = "memory";

impl Rows {
    fn index(&self, id: &str) -> Option<CollectionData> {
        let cells = self.collections.get(id)?;
        let meta = cells.meta.as_ref().map(|c| &c.value);

        // Manifest buckets in order, each bucket's rows in clustering order, as CQL reads them.
        let mut versions: Vec<VersionRow> = Vec::new();
        for (_, bucket) in self
            .manifest_buckets
            .range((id.to_owned(), i64::MIN)..=(id.to_owned(), i64::MAX))
        {
            let first = projector::rows::ManifestKey {
                collection_id: id.to_owned(),
                bucket: *bucket,
                date_added: i64::MIN,
                object_id: String::new(),
                version: i64::MIN,
            };
            versions.extend(
                self.manifest
                    .range(first..)
                    .take_while(|(k, _)| k.collection_id == id && k.bucket == *bucket)
                    .filter_map(|(k, cells)| {
                        let row = cells.visible()?;
                        Some(store::index_row(
                            k.object_id.clone(),
                            k.version,
                            row.stix_type.clone(),
                            Some(row.spec_version.clone()),
                            Some(row.version_text.clone()),
                            k.date_added,
                            None,
                        ))
                    }),
            );
        }

        let released = self
            .delivery
            .get(id)
            .and_then(|c| c.as_ref())
            .is_some_and(|c| c.value);

        // Releases in clustering order: release_timestamp descending, label ascending.
        let mut listed: Vec<(&ReleaseKey, bool)> = self
            .releases
            .range(release_floor(id)..)
            .take_while(|(k, _)| k.collection_id == id)
            .map(|(k, cells)| (k, cells.complete.as_ref().is_some_and(|c| c.value)))
            .collect();
        listed.sort_by(|(a, _), (b, _)| {
            b.release_timestamp
                .cmp(&a.release_timestamp)
                .then_with(|| a.label.cmp(&b.label))
        });
        let releases: Vec<ReleaseRow> = listed
            .into_iter()
            .map(|(key, complete)| ReleaseRow {
                release_timestamp: key.release_timestamp,
                label: key.label.clone(),
                complete,
                members: if complete {
                    self.members(key)
                } else {
                    Vec::new()
                },
            })
            .collect();

        let others = if store::names_other_contents(&releases) {
            let index = self
                .content_index
                .range((id.to_owned(), String::new(), i64::MIN, Vec::new())..)
                .take_while(|(k, _)| k.0 == id)
                .filter_map(|(k, cell)| {
                    let c = &cell.as_ref()?.value;
                    Some((
                        k.1.clone(),
                        k.2,
                        k.3.clone(),
                        Some(c.date_added),
                        Some(c.stix_type.clone()),
                        Some(c.spec_version.clone()),
                        Some(c.version_text.clone()),
                    ))
                });
            store::other_contents(&versions, &releases, index)
        } else {
            Vec::new()
        };
        versions.extend(others);

        Some(CollectionData {
            meta: CollectionMeta {
                id: id.to_owned(),
                title: meta.map(|m| m.title.clone()).unwrap_or_default(),
                description: meta.and_then(|m| m.description.clone()),
                alias: meta.and_then(|m| m.alias.clone()),
                media_types: meta.map(|m| m.media_types.clone()).unwrap_or_default(),
                released,
            },
            revision: cells.revision.as_ref().map_or(0, |c| c.value),
            versions,
            releases,
        })
    }

    fn members(&self, key: &ReleaseKey) -> Vec<(String, i64, Option<[u8; 32]>)> {
        let floor = (key.clone(), String::new(), i64::MIN);
        let members = self
            .release_members
            .range(floor.clone()..)
            .take_while(|((k, _, _), _)| k == key)
            .filter(|(_, cell)| cell.is_some())
            .map(|((_, object_id, version), _)| (object_id.clone(), *version))
            .collect();
        let contents = self
            .release_member_contents
            .range(floor..)
            .take_while(|((k, _, _), _)| k == key)
            .filter_map(|((_, object_id, version), cell)| {
                Some((
                    object_id.clone(),
                    *version,
                    Some(cell.as_ref()?.value.clone()),
                ))
            })
            .collect();
        store::members(members, contents)
    }

    fn object(&self, id: &str, key: &ContentKey<'_>) -> Option<Bytes> {
        match key.content {
            None => {
                let cells =
                    self.versions
                        .get(&(id.to_owned(), key.object_id.to_owned(), key.version))?;
                Some(cells.row.as_ref()?.value.json.clone())
            }
            Some(digest) => {
                let cell = self.contents.get(&(
                    id.to_owned(),
                    key.object_id.to_owned(),
                    key.version,
                    digest.to_vec(),
                ))?;
                Some(cell.as_ref()?.value.json.clone())
            }
        }
    }
}

/// The first release key of a collection in the map's order.
fn release_floor(id: &str) -> ReleaseKey {
    ReleaseKey {
        collection_id: id.to_owned(),
        release_timestamp: i64::MIN,
        label: String::new(),
    }
}

impl Store for Projection {
    fn active_generation(&self) -> BoxFuture<'_, Result<Generation, StoreError>> {
        Box::pin(std::future::ready(Ok(Generation {
            number: GENERATION,
            keyspace: KEYSPACE.to_owned(),
        })))
    }

    fn list_collections<'a>(
        &'a self,
        _generation: &'a Generation,
    ) -> BoxFuture<'a, Result<Vec<CollectionRevision>, StoreError>> {
        let listed = self
            .rows()
            .collections
            .iter()
            .map(|(id, cells)| CollectionRevision {
                collection_id: id.clone(),
                revision: cells.revision.as_ref().map_or(0, |c| c.value),
            })
            .collect();
        Box::pin(std::future::ready(Ok(listed)))
    }

    fn load_index<'a>(
        &'a self,
        _generation: &'a Generation,
        collection_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CollectionData>, StoreError>> {
        let index = self.rows().index(collection_id);
        self.activity().bump();
        Box::pin(std::future::ready(Ok(index)))
    }

    fn fetch_objects<'a>(
        &'a self,
        _generation: &'a Generation,
        collection_id: &'a str,
        versions: &'a [ContentKey<'a>],
    ) -> BoxFuture<'a, Result<Vec<Bytes>, StoreError>> {
        let rows = self.rows();
        let found = versions
            .iter()
            .map(|key| {
                rows.object(collection_id, key)
                    .ok_or_else(|| store::no_content(key))
            })
            .collect();
        drop(rows);
        Box::pin(std::future::ready(found))
    }
}
