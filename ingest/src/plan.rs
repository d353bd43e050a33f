//! Deciding what to publish for one batch of objects: new versions, re-issued versions
//! (corrections), collection metadata and the release, against the checkpoint. Pure: no I/O.

use schemas::{
    CollectionUpserted, DeadLetter, Event, ObjectVersionAdded, ReleaseMember, Source,
    StixObjectMeta, Timestamp, chunk_release,
};

use crate::checkpoint::{Checkpoint, Publication, ReleaseId};

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
    let mut plan = Plan::default();
    plan_collection(checkpoint, collection, context, &mut plan);
    plan_objects(checkpoint, collection, objects, context, &mut plan);
    if let Some(release) = release {
        let members = objects
            .iter()
            .map(|o| ReleaseMember::new(o.meta.id.clone(), o.meta.version))
            .collect();
        plan_release(checkpoint, collection, members, release, context, &mut plan);
    }
    plan
}

/// The collection's metadata event, when it is new or changed.
fn plan_collection(
    checkpoint: &mut Checkpoint,
    collection: &CollectionInfo,
    context: &Context<'_>,
    plan: &mut Plan,
) {
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
    };
    let changed = checkpoint
        .collection(&collection.id)
        .and_then(|c| c.metadata.as_ref())
        .is_none_or(|known| {
            known.title != metadata.title
                || known.description != metadata.description
                || known.media_types != metadata.media_types
        });
    if changed {
        let updated_at = checkpoint.next_date_added(&collection.id, context.now_micros);
        push(
            checkpoint,
            plan,
            Event::Collection(CollectionUpserted {
                updated_at,
                ..metadata
            }),
        );
    }
}

/// The events of new and corrected versions among `objects`, with strictly increasing
/// `date_added`; known ones are counted as skipped.
fn plan_objects(
    checkpoint: &mut Checkpoint,
    collection: &CollectionInfo,
    objects: &[Candidate<'_>],
    context: &Context<'_>,
    plan: &mut Plan,
) {
    let known = checkpoint.collection_mut(&collection.id);
    for object in objects {
        let version_micros = object.meta.version.as_micros();
        let publication = known.publish(
            &object.meta.id,
            version_micros,
            object.meta.content_sha256,
            context.now_micros,
        );
        let Publication::Publish {
            date_added,
            supersedes,
        } = publication
        else {
            plan.counts.skipped += 1;
            continue;
        };
        if supersedes.is_some() {
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
        }));
    }
}

/// The release's chunks, unless the release is already complete on the topic. Call it after
/// every member's version was planned.
fn plan_release(
    checkpoint: &mut Checkpoint,
    collection: &CollectionInfo,
    members: Vec<ReleaseMember>,
    release: &ReleaseInfo,
    context: &Context<'_>,
    plan: &mut Plan,
) {
    let id = ReleaseId {
        collection_id: collection.id.clone(),
        release_timestamp: release.timestamp.as_micros(),
        label: release.label.clone(),
    };
    if checkpoint.release_complete(&id) {
        plan.counts.releases_known += 1;
        return;
    }
    let date_added = checkpoint.next_date_added(&collection.id, context.now_micros);
    for chunk in chunk_release(
        &collection.id,
        &release.label,
        release.timestamp,
        date_added,
        members,
        context.source,
        context.run_id,
    ) {
        push(checkpoint, plan, Event::Release(chunk));
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

fn push(checkpoint: &mut Checkpoint, plan: &mut Plan, event: Event) {
    checkpoint.observe(&event);
    plan.events.push(event);
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
        let release = release.map(|label| ReleaseInfo {
            label: label.to_owned(),
            timestamp: Timestamp::parse("2025-01-01T00:00:00.000Z").unwrap(),
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
}
