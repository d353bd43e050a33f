//! Deciding what to publish for one batch of objects: new versions, re-issued versions
//! (corrections), collection metadata and the release, against the checkpoint. Pure: no I/O.

use schemas::{
    CollectionUpserted, DeadLetter, Event, ObjectVersionAdded, ReleaseMember, Source,
    StixObjectMeta, Timestamp, chunk_release,
};

use crate::checkpoint::{Checkpoint, KnownCollection, Publication, ReleaseId};

/// TAXII media types of ATT&CK collections, as attack-taxii.mitre.org lists them.
pub const STIX_MEDIA_TYPES: [&str; 1] = ["application/stix+json;version=2.1"];

/// The TAXII collection a batch belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionInfo {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

/// The release a batch is, if it is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub label: String,
    pub timestamp: Timestamp,
}

/// One valid object of the batch.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub meta: &'a StixObjectMeta,
    /// The object's JSON text, published exactly as received.
    pub json: &'a str,
    /// Index in the source bundle.
    pub position: i64,
}

/// What a batch adds, for progress lines and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// New (object, version) pairs.
    pub published: u64,
    /// Known (object, version) pairs re-published because their content changed.
    pub corrections: u64,
    /// Content of an older release than the one that brought a version's served content,
    /// published for that release only (an out-of-order import).
    pub archival: u64,
    /// Known (object, version) pairs with the same content.
    pub skipped: u64,
    /// 1 when the batch published its release, else 0.
    pub releases: u64,
    /// 1 when the release was already complete on the topic.
    pub releases_known: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.published += other.published;
        self.corrections += other.corrections;
        self.archival += other.archival;
        self.skipped += other.skipped;
        self.releases += other.releases;
        self.releases_known += other.releases_known;
    }
}

/// The events of a batch, in publishing order, and what they amount to.
#[derive(Debug, Default)]
pub struct Plan {
    pub events: Vec<Event>,
    pub counts: Counts,
}

/// Identity of the run and the clock, so plans are reproducible in tests.
pub struct Context<'a> {
    pub run_id: &'a str,
    pub now_micros: i64,
    /// The source of the batch; each object's copy gets its position.
    pub source: &'a Source,
}

/// Plans the events of one batch and records them in the checkpoint as published.
///
/// The checkpoint is consulted once, up front: whether the release is complete already, and the
/// collection's entry, which planning reads and advances (each object version is recorded as
/// `publish` decides it, since a bundle may hold the same version twice). The collection's
/// metadata and the release chunks are recorded once the batch is planned.
///
/// Order: the collection's metadata (when new or changed), then every new or corrected
/// version with strictly increasing `date_added`, then the release chunks, so that a consumer
/// that sees a release has already seen all its members.
pub fn plan_batch(
    checkpoint: &mut Checkpoint,
    collection: &CollectionInfo,
    objects: &[Candidate<'_>],
    release: Option<&ReleaseInfo>,
    context: &Context<'_>,
) -> Plan {
    let release = release.map(|release| {
        let id = ReleaseId {
            collection_id: collection.id.clone(),
            release_timestamp: release.timestamp.as_micros(),
            label: release.label.clone(),
        };
        (release, checkpoint.release_complete(&id))
    });
    let known = checkpoint.collection_mut(&collection.id);
    let mut plan = Plan::default();
    plan_collection(known, collection, release.is_some(), context, &mut plan);
    let release_timestamp = release.map(|(r, _)| r.timestamp.as_micros());
    plan_objects(
        known,
        collection,
        objects,
        release_timestamp,
        context,
        &mut plan,
    );
    match release {
        Some((_, true)) => plan.counts.releases_known += 1,
        Some((release, false)) => {
            let members = objects
                .iter()
                .map(|o| {
                    ReleaseMember::new(o.meta.id.clone(), o.meta.version, o.meta.content_sha256)
                })
                .collect();
            plan_release(known, collection, members, release, context, &mut plan);
        }
        None => {}
    }
    for event in &plan.events {
        if !matches!(event, Event::ObjectVersion(_)) {
            checkpoint.observe(event);
        }
    }
    plan
}

/// The collection's metadata event, when it is new or changed. `released`: the batch is a
/// release; once a collection has been delivered as releases it stays marked so.
fn plan_collection(
    entry: &mut KnownCollection,
    collection: &CollectionInfo,
    released: bool,
    context: &Context<'_>,
    plan: &mut Plan,
) {
    let known = entry.metadata.as_ref();
    let released = released || known.is_some_and(|k| k.released);
    let metadata = CollectionUpserted {
        collection_id: collection.id.clone(),
        title: collection.title.clone(),
        description: collection.description.clone(),
        alias: None,
        media_types: STIX_MEDIA_TYPES.iter().map(|m| (*m).to_owned()).collect(),
        // From the date_added sequence, so a collection's revision (the newest date_added it
        // has applied) also moves when only its metadata changed.
        updated_at: 0,
        source: context.source.clone(),
        ingest_run_id: context.run_id.to_owned(),
        released,
    };
    let changed = known.is_none_or(|known| {
        known.title != metadata.title
            || known.description != metadata.description
            || known.media_types != metadata.media_types
            || known.released != metadata.released
    });
    if changed {
        let updated_at = entry.next_date_added(context.now_micros);
        plan.events.push(Event::Collection(CollectionUpserted {
            updated_at,
            ..metadata
        }));
    }
}

/// The events of new and corrected versions among `objects`, with strictly increasing
/// `date_added`; known ones are counted as skipped.
fn plan_objects(
    known: &mut KnownCollection,
    collection: &CollectionInfo,
    objects: &[Candidate<'_>],
    release_timestamp: Option<i64>,
    context: &Context<'_>,
    plan: &mut Plan,
) {
    for object in objects {
        let version_micros = object.meta.version.as_micros();
        let publication = known.publish(
            &object.meta.id,
            version_micros,
            object.meta.content_sha256,
            release_timestamp,
            context.now_micros,
        );
        let Publication::Publish {
            date_added,
            supersedes,
            archival,
        } = publication
        else {
            plan.counts.skipped += 1;
            continue;
        };
        if archival {
            plan.counts.archival += 1;
        } else if supersedes.is_some() {
            plan.counts.corrections += 1;
        } else {
            plan.counts.published += 1;
        }
        plan.events.push(Event::ObjectVersion(ObjectVersionAdded {
            collection_id: collection.id.clone(),
            object_id: object.meta.id.clone(),
            stix_type: object.meta.stix_type.clone(),
            spec_version: object.meta.spec_version.as_str().to_owned(),
            version: object.meta.version.to_string(),
            version_micros,
            date_added,
            content_sha256: object.meta.content_sha256,
            object_json: object.json.to_owned(),
            source: Source {
                position: Some(object.position),
                ..context.source.clone()
            },
            ingest_run_id: context.run_id.to_owned(),
            correction: supersedes.is_some(),
            supersedes_date_added: supersedes,
            archival,
        }));
    }
}

/// The chunks of a release that is not complete on the topic yet. Call it after every member's
/// version was planned.
fn plan_release(
    known: &mut KnownCollection,
    collection: &CollectionInfo,
    members: Vec<ReleaseMember>,
    release: &ReleaseInfo,
    context: &Context<'_>,
    plan: &mut Plan,
) {
    let date_added = known.next_date_added(context.now_micros);
    for chunk in chunk_release(
        &collection.id,
        &release.label,
        release.timestamp,
        date_added,
        members,
        context.source,
        context.run_id,
    ) {
        plan.events.push(Event::Release(chunk));
    }
    plan.counts.releases += 1;
}

/// The dead letter of an object that failed its checks: why, where it was in its source, and
/// its text as received.
pub fn dead_letter(
    json: &str,
    object_id: Option<&str>,
    position: i64,
    reason: &str,
    context: &Context<'_>,
) -> DeadLetter {
    DeadLetter {
        stage: "ingest".to_owned(),
        reason: match object_id {
            Some(id) => format!("object {id} at position {position}: {reason}"),
            None => format!("object at position {position}: {reason}"),
        },
        source: Some(Source {
            position: Some(position),
            ..context.source.clone()
        }),
        original_topic: None,
        original_partition: None,
        original_offset: None,
        original_key: None,
        payload: Some(json.as_bytes().to_vec()),
        at: context.now_micros,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use schemas::SourceKind;

    const A1: &str = r#"{"type":"attack-pattern","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z","name":"a"}"#;
    const A1_REISSUED: &str = r#"{"type":"attack-pattern","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z","name":"a","x_mitre_deprecated":true}"#;
    const A1_REORDERED: &str = r#"{"name":"a","modified":"2021-01-01T00:00:00.000Z","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z",
        "type":"attack-pattern"}"#;
    const A2: &str = r#"{"type":"attack-pattern","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2022-01-01T00:00:00.000Z","name":"a2"}"#;

    fn collection() -> CollectionInfo {
        CollectionInfo {
            id: "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09".into(),
            title: "ICS ATT&CK".into(),
            description: None,
        }
    }

    fn source() -> Source {
        Source {
            kind: SourceKind::Bundle,
            uri: "ics.json".into(),
            sha256: Some("00".into()),
            position: None,
        }
    }

    /// Checks `objects` and hands them to `f` as candidates in file order (tests of the
    /// planner and of the Workbench edits plan from them).
    pub(crate) fn with_candidates<R>(objects: &[&str], f: impl FnOnce(&[Candidate]) -> R) -> R {
        let checked: Vec<_> = objects
            .iter()
            .map(|json| crate::check::check_object(json, None).unwrap())
            .collect();
        let candidates: Vec<_> = objects
            .iter()
            .zip(&checked)
            .enumerate()
            .map(|(i, (json, meta))| Candidate {
                meta,
                json,
                position: i as i64,
            })
            .collect();
        f(&candidates)
    }

    fn run(checkpoint: &mut Checkpoint, objects: &[&str], release: Option<&str>, now: i64) -> Plan {
        run_at(checkpoint, objects, release.map(|l| (l, 0)), now)
    }

    /// [`run`] with the release's label and its timestamp in seconds after 2025-01-01.
    fn run_at(
        checkpoint: &mut Checkpoint,
        objects: &[&str],
        release: Option<(&str, i64)>,
        now: i64,
    ) -> Plan {
        let start = Timestamp::parse("2025-01-01T00:00:00.000Z")
            .unwrap()
            .as_micros();
        let release = release.map(|(label, seconds)| ReleaseInfo {
            label: label.to_owned(),
            timestamp: Timestamp::from_micros(start + seconds * 1_000_000),
        });
        let source = source();
        with_candidates(objects, |candidates| {
            plan_batch(
                checkpoint,
                &collection(),
                candidates,
                release.as_ref(),
                &Context {
                    run_id: "run",
                    now_micros: now,
                    source: &source,
                },
            )
        })
    }

    fn versions(plan: &Plan) -> Vec<&ObjectVersionAdded> {
        plan.events
            .iter()
            .filter_map(|e| match e {
                Event::ObjectVersion(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_second_identical_batch_publishes_nothing() {
        let mut checkpoint = Checkpoint::default();
        let first = run(&mut checkpoint, &[A1, A2], Some("1.0"), 100);
        assert_eq!(first.counts.published, 2);
        assert_eq!(first.counts.releases, 1);
        assert!(matches!(first.events.first(), Some(Event::Collection(_))));
        assert!(matches!(first.events.last(), Some(Event::Release(_))));
        let second = run(&mut checkpoint, &[A1, A2], Some("1.0"), 200);
        assert!(second.events.is_empty(), "{:?}", second.events);
        assert_eq!(second.counts.skipped, 2);
        assert_eq!(second.counts.releases_known, 1);
    }

    #[test]
    fn formatting_and_key_order_are_not_content_changes() {
        let mut checkpoint = Checkpoint::default();
        run(&mut checkpoint, &[A1], None, 100);
        let again = run(&mut checkpoint, &[A1_REORDERED], None, 200);
        assert_eq!(again.counts.skipped, 1);
        assert!(versions(&again).is_empty());
    }

    #[test]
    fn reissued_content_under_the_same_version_is_a_correction_with_a_later_date_added() {
        let mut checkpoint = Checkpoint::default();
        let first = run(&mut checkpoint, &[A1], None, 100);
        let first_added = versions(&first)[0].date_added;
        let again = run(&mut checkpoint, &[A1_REISSUED], None, 50);
        let corrected = versions(&again);
        assert_eq!(again.counts.corrections, 1);
        assert_eq!(corrected.len(), 1);
        assert!(corrected[0].correction);
        assert_eq!(corrected[0].object_json, A1_REISSUED);
        assert!(
            corrected[0].date_added > first_added,
            "even with a clock that went back"
        );
        // The correction is now what the checkpoint knows: publishing it again is a no-op.
        assert_eq!(
            run(&mut checkpoint, &[A1_REISSUED], None, 300)
                .counts
                .skipped,
            1
        );
    }

    #[test]
    fn date_added_is_unique_and_increasing_within_a_batch() {
        let mut checkpoint = Checkpoint::default();
        let plan = run(&mut checkpoint, &[A1, A2], None, 100);
        let added: Vec<_> = versions(&plan).iter().map(|v| v.date_added).collect();
        // The collection metadata took 100.
        assert_eq!(added, [101, 102]);
        let positions: Vec<_> = versions(&plan).iter().map(|v| v.source.position).collect();
        assert_eq!(positions, [Some(0), Some(1)]);
    }

    #[test]
    fn a_new_release_of_known_objects_publishes_only_the_release() {
        let mut checkpoint = Checkpoint::default();
        run(&mut checkpoint, &[A1, A2], Some("1.0"), 100);
        let plan = run(&mut checkpoint, &[A2], Some("2.0"), 200);
        assert_eq!(plan.counts.published, 0);
        assert_eq!(plan.counts.releases, 1);
        let Some(Event::Release(release)) = plan.events.last() else {
            panic!("release expected: {:?}", plan.events)
        };
        assert_eq!(release.member_count, 1);
        assert_eq!(
            release.members[0].object_id,
            "attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61"
        );
        assert_eq!(release.members[0].version, "2022-01-01T00:00:00.000Z");
    }

    fn digests(plan: &Plan) -> Vec<[u8; 32]> {
        plan.events
            .iter()
            .filter_map(|e| match e {
                Event::Release(r) => Some(r.members.iter().filter_map(|m| m.content_sha256)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn digest_of(json: &str) -> [u8; 32] {
        crate::check::check_object(json, None)
            .unwrap()
            .content_sha256
    }

    #[test]
    fn release_members_name_the_content_they_shipped() {
        let mut checkpoint = Checkpoint::default();
        let plan = run(&mut checkpoint, &[A1], Some("1.0"), 100);
        assert_eq!(digests(&plan), [digest_of(A1)]);
    }

    #[test]
    fn an_older_release_imported_late_publishes_its_content_as_archival_and_moves_nothing() {
        let mut checkpoint = Checkpoint::default();
        run_at(&mut checkpoint, &[A1_REISSUED], Some(("2.0", 20)), 100);
        let late = run_at(&mut checkpoint, &[A1], Some(("1.0", 10)), 200);
        let published = versions(&late);
        assert_eq!(published.len(), 1);
        assert!(published[0].archival && !published[0].correction);
        assert_eq!(published[0].supersedes_date_added, None);
        assert_eq!(late.counts.archival, 1);
        assert_eq!(late.counts.releases, 1);
        assert_eq!(digests(&late), [digest_of(A1)]);
        // The served content is still the newer release's.
        let served = checkpoint
            .version(
                &collection().id,
                &published[0].object_id,
                published[0].version_micros,
            )
            .unwrap();
        assert_eq!(served.digest, digest_of(A1_REISSUED));
        // Archival content keeps a key of its own, so compaction keeps both contents.
        let first_key = schemas::object_version_key(
            &collection().id,
            &published[0].object_id,
            &published[0].version,
        );
        assert_ne!(late.events[0].key(), first_key);
    }

    #[test]
    fn reimporting_two_releases_with_reissued_content_publishes_nothing() {
        for order in [[("1.0", 10), ("2.0", 20)], [("2.0", 20), ("1.0", 10)]] {
            let mut checkpoint = Checkpoint::default();
            let content = |label: &str| if label == "1.0" { A1 } else { A1_REISSUED };
            for (label, at) in order {
                run_at(&mut checkpoint, &[content(label)], Some((label, at)), 100);
            }
            for (label, at) in order.iter().chain(order.iter().rev()) {
                let again = run_at(&mut checkpoint, &[content(label)], Some((label, *at)), 300);
                assert!(
                    again.events.is_empty(),
                    "{order:?} {label}: {:?}",
                    again.events
                );
            }
        }
    }

    /// A version's content in release `i` of a generated history: one of a few variants.
    fn variant(n: u8) -> String {
        format!(
            r#"{{"type":"attack-pattern","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z","name":"a","x":{n}}}"#
        )
    }

    proptest::proptest! {
        /// Releases re-issuing one version with varying content, imported in any order: the
        /// served content is always the newest imported release's, every release names its own
        /// content, and a re-import of every file, forwards then backwards, publishes nothing.
        #[test]
        fn content_only_moves_forward_whatever_the_import_order(
            contents in proptest::collection::vec(0u8..3, 1..6),
            order in proptest::collection::vec(proptest::num::usize::ANY, 1..6),
        ) {
            let releases: Vec<(String, i64, String)> = contents
                .iter()
                .enumerate()
                .map(|(i, &n)| (format!("{i}.0"), i as i64 * 10, variant(n)))
                .collect();
            // A permutation of the releases derived from `order`, every release once.
            let mut rest: Vec<usize> = (0..releases.len()).collect();
            let mut sequence = Vec::new();
            for pick in order.iter().chain(std::iter::repeat(&0)).take(releases.len()) {
                sequence.push(rest.remove(pick % rest.len()));
            }
            let mut checkpoint = Checkpoint::default();
            let mut newest: Option<usize> = None;
            for (n, &i) in sequence.iter().enumerate() {
                let (label, at, json) = &releases[i];
                let plan = run_at(&mut checkpoint, &[json], Some((label, *at)), 100 + n as i64);
                proptest::prop_assert_eq!(digests(&plan), vec![digest_of(json)]);
                newest = newest.max(Some(i));
                let served = checkpoint
                    .version(&collection().id, "attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61",
                        Timestamp::parse("2021-01-01T00:00:00.000Z").unwrap().as_micros())
                    .unwrap();
                let expected = newest.map(|i| digest_of(&releases[i].2));
                proptest::prop_assert_eq!(Some(served.digest), expected);
            }
            for &i in sequence.iter().chain(sequence.iter().rev()) {
                let (label, at, json) = &releases[i];
                let again = run_at(&mut checkpoint, &[json], Some((label, *at)), 1_000);
                proptest::prop_assert!(again.events.is_empty(), "{:?}", again.events);
            }
        }
    }
}
