//! One bundle from start to finish: take the checked objects as they come (see [`check`]),
//! find the collection and release, plan against the checkpoint and publish piece by piece,
//! then the release and the dead letters of what was rejected.
//!
//! [`check`]: crate::check

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use schemas::{DeadLetter, Event, ReleaseMember, Source, SourceKind, Timestamp};

use crate::check::{
    COLLECTION_TYPE, Checked, Chunks, MitreCollection, PreparedObject, Rejected, Stage,
};
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::plan::{
    Candidate, CollectionInfo, Context, Counts, Plan, ReleaseInfo, decide_objects, plan_collection,
    plan_release, version_event,
};
use crate::producer::{Publisher, Sending};

/// How the caller wants the bundle's collection and release decided.
#[derive(Debug, Clone)]
pub struct Origin {
    pub kind: SourceKind,
    /// The file path, or the Workbench URL the bundle came from.
    pub uri: String,
    /// Overrides the `x-mitre-collection` object (`ingest import --collection`).
    pub collection: Option<CollectionInfo>,
    /// With `collection`: declare the bundle a release with this label.
    pub release_label: Option<String>,
    /// With `release_label`: its timestamp; default the newest version in the bundle.
    pub release_timestamp: Option<Timestamp>,
    /// The collection version the bundle must be (a Workbench export of one version): `(id,
    /// modified)` of its collection object. Checked before anything is published.
    pub expect_version: Option<(String, String)>,
}

/// How `x_mitre_contents` compares with the bundle's objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentsCheck {
    /// Listed in `x_mitre_contents`, not in the bundle.
    pub missing: Vec<String>,
    /// In the bundle (other than the collection object and marking definitions), not listed.
    pub unlisted: Vec<String>,
    /// Listed with another `modified` than the bundle's object has.
    pub version_mismatch: Vec<String>,
}

impl ContentsCheck {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unlisted.is_empty() && self.version_mismatch.is_empty()
    }
}

/// What publishing one bundle did.
#[derive(Debug, Clone)]
pub struct BundleReport {
    pub uri: String,
    pub collection_id: String,
    pub objects: usize,
    pub rejected: usize,
    pub counts: Counts,
    pub release: Option<String>,
    pub contents: Option<ContentsCheck>,
    pub json_bytes: usize,
    /// Reading, decompressing and checking the bundle (set by the caller, which does it).
    pub prepare_elapsed: Duration,
    /// Planning and publishing.
    pub elapsed: Duration,
}

impl BundleReport {
    /// The one-line summary printed on stderr after each bundle.
    pub fn progress_line(&self) -> String {
        let secs = (self.prepare_elapsed + self.elapsed)
            .as_secs_f64()
            .max(1e-6);
        let release = match &self.release {
            Some(label) if self.counts.releases > 0 => format!("; release {label} published"),
            Some(label) => format!("; release {label} already known"),
            None => String::new(),
        };
        format!(
            "{}: {} objects in {:.2}s (read and checked {:.2}s, published {:.2}s; {:.0} objects/s, \
             {:.1} MB/s): published {}, corrections {}, skipped as already known {}, rejected {}{release}",
            self.uri,
            self.objects + self.rejected,
            secs,
            self.prepare_elapsed.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            (self.objects + self.rejected) as f64 / secs,
            self.json_bytes as f64 / 1e6 / secs,
            self.counts.published,
            self.counts.corrections,
            self.counts.skipped,
            self.rejected,
        )
    }
}

/// Publishes one bundle from the stages of [`crate::check::spawn`] (spawned with
/// `find_collection` = `origin.collection.is_none()`): decides its collection and release,
/// then plans and sends each chunk of objects as soon as it is checked, so checking and
/// producing overlap; then the release, then the dead letters. Returns once Kafka acknowledged
/// everything. An unreadable file or a bundle without a collection publishes nothing.
pub async fn publish_bundle(
    mut stages: mpsc::Receiver<Result<Stage, Error>>,
    origin: &Origin,
    checkpoint: &mut Checkpoint,
    publisher: &Publisher,
    metrics: &Metrics,
    run_id: &str,
) -> Result<BundleReport, Error> {
    let started = Instant::now();
    let gone = || Error::KafkaState("bundle reader task stopped unexpectedly".to_owned());
    let Stage::Parsed {
        file,
        sha256,
        collection: found,
        objects: total,
    } = stages.recv().await.ok_or_else(gone)??
    else {
        return Err(gone());
    };
    let path = file.path.clone();
    let content_error = |reason: String| Error::BundleContent {
        path: path.clone(),
        reason,
    };
    if let Some((id, modified)) = &origin.expect_version
        && found
            .as_ref()
            .is_none_or(|c| &c.id != id || c.modified.as_ref() != Some(modified))
    {
        return Err(content_error(format!(
            "the export does not start with collection {id} version {modified}"
        )));
    }
    let (collection, release) = decide(origin, found.as_deref(), &content_error)?;

    let text = file.text.as_str();
    let source = Source {
        kind: origin.kind,
        uri: origin.uri.clone(),
        sha256: Some(sha256),
        position: None,
    };
    let now = now_micros();
    let context = Context {
        run_id,
        now_micros: now,
        source: &source,
    };
    let mut sending = publisher.sending();
    let mut plan = Plan::default();
    plan_collection(checkpoint, &collection, &context, &mut plan);
    send_all(&mut sending, &mut plan).await?;

    // One allocation of the checkpoint's table instead of a dozen rehashes while it grows.
    checkpoint.collection_mut(&collection.id).reserve(total);
    let mut objects: Vec<PreparedObject> = Vec::with_capacity(total);
    let mut rejected: Vec<Rejected> = Vec::new();
    let mut first_mitre: Option<Box<MitreCollection>> = None;
    let mut chunks = Chunks::default();
    let expected_chunks = total.div_ceil(crate::check::CHUNK);
    while chunks.done() < expected_chunks {
        let Stage::Checked { index, outcomes } = stages.recv().await.ok_or_else(gone)?? else {
            return Err(gone());
        };
        for outcomes in chunks.push(index, outcomes) {
            let first = objects.len();
            for outcome in outcomes {
                match outcome {
                    Checked::Valid(object, mitre) => {
                        if first_mitre.is_none() {
                            first_mitre = mitre;
                        }
                        objects.push(object);
                    }
                    Checked::Rejected(r) => rejected.push(r),
                }
            }
            let candidates: Vec<Candidate<'_>> = objects[first..]
                .iter()
                .map(|o| candidate(o, text))
                .collect();
            let decisions = decide_objects(
                checkpoint,
                &collection,
                &candidates,
                &context,
                &mut plan.counts,
            );
            for decision in &decisions {
                let candidate = &candidates[decision.index];
                let event = version_event(&collection, candidate, decision, &context);
                sending.send(&Event::ObjectVersion(event)).await?;
            }
        }
    }
    let checked = started.elapsed();

    let release = release.map(|(label, timestamp)| ReleaseInfo {
        label,
        timestamp: timestamp.unwrap_or_else(|| {
            objects
                .iter()
                .map(|o| o.meta.version)
                .max()
                .unwrap_or(Timestamp::EPOCH)
        }),
    });
    if let Some(release) = &release {
        let members = objects
            .iter()
            .map(|o| ReleaseMember::new(o.meta.id.clone(), o.meta.version))
            .collect();
        plan_release(
            checkpoint,
            &collection,
            members,
            release,
            &context,
            &mut plan,
        );
        send_all(&mut sending, &mut plan).await?;
    }

    let letters: Vec<DeadLetter> = rejected
        .iter()
        .map(|r| dead_letter(r, text, &source, now))
        .collect();
    for letter in &letters {
        tracing::warn!(file = %origin.uri, reason = %letter.reason, "rejected object sent to the dead-letter topic");
    }
    publisher.dead_letters(&letters).await?;
    sending.finish().await?;

    let contents = first_mitre
        .as_ref()
        .filter(|c| c.id == collection.id)
        .map(|c| check_contents(c, &objects));
    if let Some(check) = contents.as_ref().filter(|c| !c.is_clean()) {
        tracing::warn!(
            file = %origin.uri,
            missing = check.missing.len(),
            unlisted = check.unlisted.len(),
            version_mismatch = check.version_mismatch.len(),
            first_missing = ?check.missing.first(),
            first_unlisted = ?check.unlisted.first(),
            first_mismatch = ?check.version_mismatch.first(),
            "x_mitre_contents does not match the bundle's objects"
        );
    }

    let kind = source_label(origin.kind);
    metrics.record_batch(kind, &plan.counts, rejected.len() as u64);
    metrics.bundles.with_label_values(&[kind, "ok"]).inc();
    metrics
        .checkpoint_versions
        .set(i64::try_from(checkpoint.size().versions).unwrap_or(i64::MAX));

    Ok(BundleReport {
        uri: origin.uri.clone(),
        collection_id: collection.id,
        objects: objects.len(),
        rejected: rejected.len(),
        counts: plan.counts,
        release: release.map(|r| r.label),
        contents,
        json_bytes: text.len(),
        prepare_elapsed: checked,
        elapsed: started.elapsed().saturating_sub(checked),
    })
}

/// The collection, and the release label with its timestamp (`None`: the newest version in
/// the bundle), from the command line or else from the bundle's collection object.
#[allow(clippy::type_complexity)] // a private helper's tuple, named at its one call site
fn decide(
    origin: &Origin,
    found: Option<&MitreCollection>,
    content_error: &dyn Fn(String) -> Error,
) -> Result<(CollectionInfo, Option<(String, Option<Timestamp>)>), Error> {
    match (&origin.collection, found) {
        (Some(collection), _) => {
            let release = origin
                .release_label
                .as_ref()
                .map(|label| (label.clone(), origin.release_timestamp));
            Ok((collection.clone(), release))
        }
        (None, Some(mitre)) => {
            let modified = mitre.modified.as_deref().ok_or_else(|| {
                content_error(format!("x-mitre-collection {} has no modified", mitre.id))
            })?;
            let timestamp = Timestamp::parse(modified)
                .map_err(|e| content_error(format!("x-mitre-collection {}: {e}", mitre.id)))?;
            let collection = CollectionInfo {
                id: mitre.id.clone(),
                title: mitre.name.clone().unwrap_or_else(|| mitre.id.clone()),
                description: mitre.description.clone(),
            };
            // A collection version without x_mitre_version is still a release: its label is
            // its timestamp, which is what identifies it in the Workbench.
            let label = mitre
                .x_mitre_version
                .clone()
                .unwrap_or_else(|| timestamp.to_string());
            Ok((collection, Some((label, Some(timestamp)))))
        }
        (None, None) => Err(content_error(
            "has no x-mitre-collection object: pass --collection ID --title TITLE \
             (and --release LABEL to make it a release)"
                .to_owned(),
        )),
    }
}

fn candidate<'t>(object: &'t PreparedObject, text: &'t str) -> Candidate<'t> {
    Candidate {
        meta: Cow::Borrowed(&object.meta),
        json: &text[object.range.clone()],
        digest: object.digest,
        position: object.position,
    }
}

/// Hands the planned events to the producer and empties the plan's event list (its counts stay).
async fn send_all(sending: &mut Sending<'_>, plan: &mut Plan) -> Result<(), Error> {
    for event in plan.events.drain(..) {
        sending.send(&event).await?;
    }
    Ok(())
}

fn dead_letter(r: &Rejected, text: &str, source: &Source, now: i64) -> DeadLetter {
    DeadLetter {
        stage: "ingest".to_owned(),
        reason: match &r.object_id {
            Some(id) => format!("object {id} at position {}: {}", r.position, r.reason),
            None => format!("object at position {}: {}", r.position, r.reason),
        },
        source: Some(Source {
            position: Some(r.position),
            ..source.clone()
        }),
        original_topic: None,
        original_partition: None,
        original_offset: None,
        original_key: None,
        payload: Some(text[r.range.clone()].as_bytes().to_vec()),
        at: now,
    }
}

/// Compares `x_mitre_contents` with the objects, leaving out what ATT&CK never lists: the
/// collection object itself and marking definitions.
pub fn check_contents(collection: &MitreCollection, objects: &[PreparedObject]) -> ContentsCheck {
    let listed: HashSet<(&str, Option<Timestamp>)> = collection
        .x_mitre_contents
        .iter()
        .map(|c| {
            (
                c.object_ref.as_str(),
                Timestamp::parse(&c.object_modified).ok(),
            )
        })
        .collect();
    let listed_ids: HashSet<&str> = listed.iter().map(|(id, _)| *id).collect();
    let present: Vec<&PreparedObject> = objects
        .iter()
        .filter(|o| o.meta.stix_type != COLLECTION_TYPE && o.meta.stix_type != "marking-definition")
        .collect();
    let present_ids: HashSet<&str> = present.iter().map(|o| o.meta.id.as_str()).collect();
    let mut check = ContentsCheck {
        missing: listed_ids
            .iter()
            .filter(|id| !present_ids.contains(*id))
            .map(|id| (*id).to_owned())
            .collect(),
        ..ContentsCheck::default()
    };
    for object in present {
        if !listed_ids.contains(object.meta.id.as_str()) {
            check.unlisted.push(object.meta.id.clone());
        } else if !listed.contains(&(object.meta.id.as_str(), Some(object.meta.version))) {
            check.version_mismatch.push(object.meta.id.clone());
        }
    }
    check.missing.sort();
    check.unlisted.sort();
    check.version_mismatch.sort();
    check
}

pub fn source_label(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Bundle => "bundle",
        SourceKind::Workbench => "workbench",
    }
}

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle checked synchronously, its outcomes in bundle order.
    struct Prepared {
        text: String,
        objects: Vec<PreparedObject>,
        rejected: Vec<Rejected>,
        collection: Option<Box<MitreCollection>>,
    }

    fn prepared(text: &str) -> Prepared {
        let stages = std::sync::Mutex::new(Vec::new());
        crate::check::check_bundle(
            crate::bundle::BundleFile {
                path: "t.json".into(),
                text: text.to_owned(),
            },
            true,
            &|s| {
                stages.lock().unwrap().push(s);
                true
            },
        )
        .unwrap();
        let mut p = Prepared {
            text: text.to_owned(),
            objects: Vec::new(),
            rejected: Vec::new(),
            collection: None,
        };
        let mut chunks = Chunks::default();
        for stage in stages.into_inner().unwrap() {
            match stage {
                Stage::Parsed { collection, .. } => p.collection = collection,
                Stage::Checked { index, outcomes } => {
                    for outcome in chunks.push(index, outcomes).into_iter().flatten() {
                        match outcome {
                            Checked::Valid(o, _) => p.objects.push(o),
                            Checked::Rejected(r) => p.rejected.push(r),
                        }
                    }
                }
            }
        }
        p
    }

    const BUNDLE: &str = r#"{"type":"bundle","id":"bundle--1","objects":[
        {"type":"x-mitre-collection","spec_version":"2.1","id":"x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09","created":"2020-10-27T14:49:39.188Z","modified":"2025-11-13T14:00:00.188Z","name":"ICS ATT&CK","x_mitre_version":"18.1",
         "x_mitre_contents":[{"object_ref":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","object_modified":"2025-04-15T19:58:01.218Z"},
                             {"object_ref":"malware--00000000-0000-4000-8000-000000000000","object_modified":"2025-04-15T19:58:01.218Z"}]},
        {"type":"marking-definition","spec_version":"2.1","id":"marking-definition--fa42a846-8d90-4e51-bc29-71d5b4802168","created":"2017-06-01T00:00:00.000Z"},
        {"type":"attack-pattern","spec_version":"2.1","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2025-04-15T19:58:01.218Z"},
        {"type":"attack-pattern","spec_version":"2.1","id":"attack-pattern--bad","created":"2020-01-01T00:00:00.000Z"},
        {"type":"tool","spec_version":"2.1","id":"tool--11111111-1111-4111-8111-111111111111","created":"2020-01-01T00:00:00.000Z","modified":"nope"},
        {"type":"tool","spec_version":"2.1","id":"tool--22222222-2222-4222-8222-222222222222","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z"}
    ]}"#;

    #[test]
    fn invalid_objects_are_set_aside_with_their_position_and_reason() {
        let p = prepared(BUNDLE);
        assert_eq!(p.objects.len(), 4);
        let rejected: Vec<_> = p
            .rejected
            .iter()
            .map(|r| (r.position, r.object_id.clone()))
            .collect();
        assert_eq!(
            rejected,
            [
                (3, Some("attack-pattern--bad".to_owned())),
                (
                    4,
                    Some("tool--11111111-1111-4111-8111-111111111111".to_owned())
                )
            ]
        );
        assert!(
            p.rejected[0].reason.contains("id"),
            "{}",
            p.rejected[0].reason
        );
        assert!(
            p.rejected[1].reason.contains("modified"),
            "{}",
            p.rejected[1].reason
        );
        // The remembered ranges are the objects' exact text.
        let text = &p.text[p.rejected[0].range.clone()];
        assert!(
            text.starts_with('{') && text.ends_with('}') && text.contains("attack-pattern--bad")
        );
    }

    #[test]
    fn the_collection_object_names_the_collection_and_release() {
        let p = prepared(BUNDLE);
        let c = p.collection.as_ref().unwrap();
        assert_eq!(c.x_mitre_version.as_deref(), Some("18.1"));
        assert_eq!(c.x_mitre_contents.len(), 2);
    }

    #[test]
    fn contents_check_leaves_out_the_collection_and_marking_definitions() {
        let p = prepared(BUNDLE);
        let check = check_contents(p.collection.as_ref().unwrap(), &p.objects);
        assert_eq!(
            check.missing,
            ["malware--00000000-0000-4000-8000-000000000000"]
        );
        assert_eq!(
            check.unlisted,
            ["tool--22222222-2222-4222-8222-222222222222"]
        );
        assert!(check.version_mismatch.is_empty());
    }
}
