//! Generated event logs for property tests of a projection: small valid logs (collections,
//! versions with corrections and archival contents, releases in several chunks) and arrival
//! orders with every event at least once, some twice. Used by the projector's own tests and, with
//! the `generated-logs` feature, by other stores of the same tables.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use schemas::{
    CollectionUpserted, Event, ObjectVersionAdded, ReleaseMember, Source, SourceKind, Timestamp,
};

pub fn source() -> Source {
    Source {
        kind: SourceKind::Bundle,
        uri: "test".into(),
        sha256: None,
        position: None,
    }
}

/// One step of a generated log, before sequence numbers are assigned.
#[derive(Debug, Clone)]
pub enum Step {
    Collection {
        collection: u8,
        title: u8,
    },
    Version {
        collection: u8,
        object: u8,
        version: u8,
        content: u8,
        /// Published as an older release's content when the version is already published.
        archival: bool,
    },
    Release {
        collection: u8,
        label: u8,
        members: u8,
    },
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..2u8, 0..3u8).prop_map(|(collection, title)| Step::Collection { collection, title }),
        6 => (0..2u8, 0..3u8, 0..2u8, 0..3u8, proptest::bool::weighted(0.2)).prop_map(
            |(collection, object, version, content, archival)| {
                Step::Version { collection, object, version, content, archival }
            }
        ),
        2 => (0..2u8, 0..2u8, 1..7u8).prop_map(|(collection, label, members)| Step::Release {
            collection,
            label,
            members,
        }),
    ]
}

pub fn object_json(object: u8, version: Timestamp, content: u8) -> String {
    format!(
        "{{\n  \"type\": \"attack-pattern\",\n  \"id\": \"attack-pattern--00000000-0000-4000-8000-{object:012}\",\n  \
         \"spec_version\": \"2.1\",\n  \"modified\": \"{version}\",\n  \"name\": \"n{content}\"\n}}"
    )
}

/// Turns steps into a valid log: one strictly increasing sequence per collection, releases
/// chunked (chunks of at most 2 members here) after versions of their members.
pub fn log(steps: &[Step]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut clock = [1_000i64, 1_000];
    let mut published: [BTreeSet<(u8, u8)>; 2] = Default::default();
    // The date_added each (object, version) was last published with: a re-publication is a
    // correction naming it, as ingest writes them.
    let mut last_added: [BTreeMap<(u8, u8), i64>; 2] = Default::default();
    for step in steps {
        match *step {
            Step::Collection { collection, title } => {
                let c = usize::from(collection);
                clock[c] += 7;
                events.push(Event::Collection(CollectionUpserted {
                    collection_id: format!("c{collection}"),
                    title: format!("t{title}"),
                    description: (title % 2 == 0).then(|| "d".to_owned()),
                    alias: None,
                    media_types: vec![
                        "application/stix+json;version=2.1".into();
                        usize::from(title)
                    ],
                    updated_at: clock[c],
                    source: source(),
                    ingest_run_id: "r".into(),
                    released: title % 2 == 1,
                }));
            }
            Step::Version {
                collection,
                object,
                version,
                content,
                archival,
            } => {
                let c = usize::from(collection);
                // Spread date_added over several manifest buckets.
                clock[c] += schemas::cql::MANIFEST_BUCKET_MICROS / 3;
                let v = Timestamp::from_micros(1_500_000_000_000_000 + i64::from(version) * 1000);
                let json = object_json(object, v, content);
                let archival = archival && published[c].contains(&(object, version));
                published[c].insert((object, version));
                let supersedes = if archival {
                    None
                } else {
                    last_added[c].insert((object, version), clock[c])
                };
                events.push(Event::ObjectVersion(ObjectVersionAdded {
                    collection_id: format!("c{collection}"),
                    object_id: format!("attack-pattern--00000000-0000-4000-8000-{object:012}"),
                    stix_type: "attack-pattern".into(),
                    spec_version: "2.1".into(),
                    version: v.to_string(),
                    version_micros: v.as_micros(),
                    date_added: clock[c],
                    content_sha256: schemas::content_digest(&json).unwrap_or([0; 32]),
                    object_json: json,
                    source: source(),
                    ingest_run_id: "r".into(),
                    correction: supersedes.is_some(),
                    supersedes_date_added: supersedes,
                    archival,
                }));
            }
            Step::Release {
                collection,
                label,
                members,
            } => {
                let c = usize::from(collection);
                clock[c] += 11;
                let members: Vec<ReleaseMember> = published[c]
                    .iter()
                    .take(usize::from(members))
                    .map(|&(o, v)| {
                        ReleaseMember::new(
                            format!("attack-pattern--00000000-0000-4000-8000-{o:012}"),
                            Timestamp::from_micros(1_500_000_000_000_000 + i64::from(v) * 1000),
                            [o; 32],
                        )
                    })
                    .collect();
                let mut chunks = schemas::chunk_release(
                    &format!("c{collection}"),
                    &format!("{label}.0"),
                    Timestamp::from_micros(i64::from(label) * 1_000_000),
                    clock[c],
                    Vec::new(),
                    &source(),
                    "r",
                );
                // Small chunks, so that multi-chunk releases show up in small logs.
                let pieces: Vec<Vec<ReleaseMember>> =
                    members.chunks(2).map(<[_]>::to_vec).collect();
                let template = chunks.remove(0);
                let count = pieces.len().max(1);
                for i in 0..count {
                    let mut chunk = template.clone();
                    chunk.chunk_index = i as i32;
                    chunk.chunk_count = count as i32;
                    chunk.member_count = members.len() as i64;
                    chunk.members = pieces.get(i).cloned().unwrap_or_default();
                    events.push(Event::Release(chunk));
                }
            }
        }
    }
    events
}

/// A log, and an arrival order: every event at least once, some twice, any order.
pub fn log_and_order() -> impl Strategy<Value = (Vec<Event>, Vec<usize>)> {
    proptest::collection::vec(step(), 1..25).prop_flat_map(|steps| {
        let events = log(&steps);
        let n = events.len();
        let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
        let extra = proptest::collection::vec((0..n, 0..=n), 0..n.min(8) + 1);
        (Just(events), order, extra).prop_map(|(events, mut order, extra)| {
            for (event, at) in extra {
                let at = at.min(order.len());
                order.insert(at, event);
            }
            (events, order)
        })
    })
}
