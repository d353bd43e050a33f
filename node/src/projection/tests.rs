//! The in-memory tables against CQL's write semantics, and the projector's property tests of
//! order and duplication independence run against them.

use std::collections::BTreeMap;

use api::store::{CollectionData, ContentKey, Store};
use projector::batch::BatchWriter;
use projector::metrics::Metrics;
use projector::rows::generated::log_and_order;
use projector::rows::{ManifestKey, ManifestRow, Mutation};
use projector::tables::Tables;
use proptest::prelude::*;
use schemas::Event;
use tokio_util::sync::CancellationToken;

use super::Projection;

fn manifest_row(date_added: i64) -> ManifestRow {
    ManifestRow {
        key: ManifestKey::new("c", date_added, "o", 7),
        stix_type: "attack-pattern".into(),
        spec_version: "2.1".into(),
        version_text: "v".into(),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_manifest_delete_shadows_inserts_up_to_its_timestamp_whenever_they_arrive() {
    let p = Projection::new();
    let key = ManifestKey::new("c", 10, "o", 7);
    block_on(async {
        p.write(&Mutation::ManifestDelete {
            key: key.clone(),
            timestamp: 20,
        })
        .await
        .unwrap();
        p.write(&Mutation::ManifestInsert(manifest_row(10)))
            .await
            .unwrap();
    });
    assert!(p.rows().manifest[&key].visible().is_none(), "older insert");

    // A tie goes to the delete, as in CQL.
    let tie = ManifestKey::new("c", 20, "o", 7);
    block_on(async {
        p.write(&Mutation::ManifestInsert(manifest_row(20)))
            .await
            .unwrap();
        p.write(&Mutation::ManifestDelete {
            key: tie.clone(),
            timestamp: 20,
        })
        .await
        .unwrap();
    });
    assert!(p.rows().manifest[&tie].visible().is_none(), "tie");

    // A later insert is not shadowed.
    let later = ManifestKey::new("c", 30, "o", 7);
    block_on(async {
        p.write(&Mutation::ManifestDelete {
            key: later.clone(),
            timestamp: 20,
        })
        .await
        .unwrap();
        p.write(&Mutation::ManifestInsert(manifest_row(30)))
            .await
            .unwrap();
    });
    assert!(p.rows().manifest[&later].visible().is_some(), "later");
}

#[test]
fn an_older_write_does_not_replace_a_newer_one() {
    let p = Projection::new();
    block_on(async {
        for revision in [5, 9, 7] {
            p.write(&projector::rows::revision("c", revision))
                .await
                .unwrap();
        }
    });
    let revision = p.rows().collections["c"].revision.as_ref().unwrap().value;
    assert_eq!(revision, 9);
}

/// Every collection's index and the JSON of every version it lists, as the API would read them.
type Served = BTreeMap<String, (CollectionData, Vec<Vec<u8>>)>;

/// Projects `events` one batch each, in the given order, through the projector's batch writer.
fn project<'a>(events: impl IntoIterator<Item = &'a Event>) -> Served {
    block_on(async {
        let projection = Projection::new();
        let writer = BatchWriter::new(
            projection.clone(),
            4,
            Metrics::new().unwrap(),
            CancellationToken::new(),
        );
        for event in events {
            writer
                .write_batch(std::slice::from_ref(event))
                .await
                .unwrap();
        }
        let generation = projection.active_generation().await.unwrap();
        let mut served = Served::new();
        for listed in projection.list_collections(&generation).await.unwrap() {
            let index = projection
                .load_index(&generation, &listed.collection_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(index.revision, listed.revision);
            let keys: Vec<ContentKey<'_>> = index
                .versions
                .iter()
                .map(|v| ContentKey {
                    object_id: &v.object_id,
                    version: v.version,
                    content: v.content.as_ref(),
                })
                .collect();
            let json = projection
                .fetch_objects(&generation, &listed.collection_id, &keys)
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.to_vec())
                .collect();
            served.insert(listed.collection_id.clone(), (index, json));
        }
        served
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_order_and_duplication_serves_the_same((events, order) in log_and_order()) {
        let in_order = project(&events);
        prop_assert!(!in_order.is_empty());
        prop_assert_eq!(project(order.iter().map(|&i| &events[i])), in_order);
    }

    #[test]
    fn the_index_lists_each_version_once_under_its_latest_date_added((events, order) in log_and_order()) {
        let served = project(order.iter().map(|&i| &events[i]));
        let mut latest: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
        for e in &events {
            if let Event::ObjectVersion(v) = e
                && !v.archival
            {
                let slot = latest
                    .entry((v.collection_id.clone(), v.object_id.clone(), v.version_micros))
                    .or_insert(v.date_added);
                *slot = (*slot).max(v.date_added);
            }
        }
        let listed: BTreeMap<(String, String, i64), i64> = served
            .iter()
            .flat_map(|(c, (index, _))| {
                index
                    .versions
                    .iter()
                    .filter(|v| v.content.is_none())
                    .map(move |v| ((c.clone(), v.object_id.clone(), v.version), v.date_added))
            })
            .collect();
        let count: usize = served
            .values()
            .map(|(index, _)| index.versions.iter().filter(|v| v.content.is_none()).count())
            .sum();
        prop_assert_eq!(count, listed.len(), "a version listed twice");
        prop_assert_eq!(listed, latest);
    }
}
