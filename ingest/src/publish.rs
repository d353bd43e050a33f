//! One bundle from start to finish: check every object, find its collection and release,
//! plan against the checkpoint, publish the events and dead-letter what was rejected.

use std::collections::HashSet;
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use schemas::{DeadLetter, Source, SourceKind, StixObjectMeta, Timestamp};

use crate::bundle::BundleFile;
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::plan::{Candidate, CollectionInfo, Context, Counts, ReleaseInfo, plan_batch};
use crate::producer::Publisher;

const COLLECTION_TYPE: &str = "x-mitre-collection";

/// A bundle read, parsed and checked: what the blocking part of the work produces.
#[derive(Debug)]
pub struct PreparedBundle {
    pub file: BundleFile,
    pub objects: Vec<PreparedObject>,
    pub rejected: Vec<Rejected>,
    /// The bundle's `x-mitre-collection` object, when it has one.
    pub collection: Option<MitreCollection>,
}

#[derive(Debug)]
pub struct PreparedObject {
    pub meta: StixObjectMeta,
    /// Where the object's JSON text is in the bundle text.
    pub range: Range<usize>,
    pub digest: [u8; 32],
    pub position: i64,
}

#[derive(Debug)]
pub struct Rejected {
    pub position: i64,
    pub object_id: Option<String>,
    pub reason: String,
    pub range: Range<usize>,
}

/// What an ATT&CK `x-mitre-collection` object says about its collection and release.
#[derive(Debug, Clone, Deserialize)]
pub struct MitreCollection {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub x_mitre_version: Option<String>,
    pub modified: Option<String>,
    #[serde(default)]
    pub x_mitre_contents: Vec<ContentRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentRef {
    pub object_ref: String,
    pub object_modified: String,
}

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

/// Parses and checks every object of a bundle file. CPU-bound: call it off the async workers.
///
/// Objects are checked on all cores (validation and the canonical digest dominate an import),
/// each thread taking a contiguous slice so results come back in bundle order.
pub fn prepare(file: BundleFile) -> Result<PreparedBundle, Error> {
    let bundle = file.parse()?;
    let base = file.text.as_ptr() as usize;
    let spec_version = bundle.spec_version.as_deref();
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, 8);
    let per_thread = bundle.objects.len().div_ceil(threads).max(1);
    let checked: Vec<Vec<Checked>> = std::thread::scope(|scope| {
        let workers: Vec<_> = bundle
            .objects
            .chunks(per_thread)
            .enumerate()
            .map(|(i, slice)| {
                scope.spawn(move || {
                    slice
                        .iter()
                        .enumerate()
                        .map(|(j, raw)| {
                            check(raw.get(), base, (i * per_thread + j) as i64, spec_version)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            // A panicking worker is a bug in the checks; surface it as a rejected bundle
            // rather than taking the process down.
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let total: usize = checked.iter().map(Vec::len).sum();
    if total != bundle.objects.len() {
        return Err(Error::BundleContent {
            path: file.path.clone(),
            reason: "checking the objects failed unexpectedly".to_owned(),
        });
    }
    let mut objects = Vec::with_capacity(total);
    let mut rejected = Vec::new();
    let mut collection: Option<MitreCollection> = None;
    for outcome in checked.into_iter().flatten() {
        match outcome {
            Checked::Valid(object, mitre) => {
                if collection.is_none() {
                    collection = mitre.map(|m| *m);
                }
                objects.push(object);
            }
            Checked::Rejected(r) => rejected.push(r),
        }
    }
    drop(bundle);
    Ok(PreparedBundle {
        file,
        objects,
        rejected,
        collection,
    })
}

enum Checked {
    Valid(PreparedObject, Option<Box<MitreCollection>>),
    Rejected(Rejected),
}

fn check(text: &str, base: usize, position: i64, spec_version: Option<&str>) -> Checked {
    // The object's text is a slice of the bundle's text: remember where, not a copy.
    let start = text.as_ptr() as usize - base;
    let range = start..start + text.len();
    let checked = schemas::validate_object(text, spec_version)
        .map_err(|e| e.reason)
        .and_then(|meta| {
            schemas::stix::content_digest(text)
                .map(|digest| (meta, digest))
                .map_err(|e| e.to_string())
        });
    match checked {
        Ok((meta, digest)) => {
            let mitre = if meta.stix_type == COLLECTION_TYPE {
                match serde_json::from_str::<MitreCollection>(text) {
                    Ok(c) => Some(Box::new(c)),
                    Err(e) => {
                        return Checked::Rejected(Rejected {
                            position,
                            object_id: Some(meta.id),
                            reason: format!("x-mitre-collection object unreadable: {e}"),
                            range,
                        });
                    }
                }
            } else {
                None
            };
            Checked::Valid(
                PreparedObject {
                    meta,
                    range,
                    digest,
                    position,
                },
                mitre,
            )
        }
        Err(reason) => Checked::Rejected(Rejected {
            position,
            object_id: object_id_of(text),
            reason,
            range,
        }),
    }
}

/// The `id` of an object that failed validation, when it has a readable one, for messages.
fn object_id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        id: Option<serde_json::Value>,
    }
    serde_json::from_str::<Id>(text)
        .ok()
        .and_then(|i| i.id)
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
}

/// Decides the collection and release of a prepared bundle, plans and publishes its events.
pub async fn publish_bundle(
    prepared: &PreparedBundle,
    origin: &Origin,
    checkpoint: &mut Checkpoint,
    publisher: &Publisher,
    metrics: &Metrics,
    run_id: &str,
) -> Result<BundleReport, Error> {
    let started = Instant::now();
    let path = prepared.file.path.clone();
    let content_error = |reason: String| Error::BundleContent {
        path: path.clone(),
        reason,
    };
    let (collection, release) = match (&origin.collection, &prepared.collection) {
        (Some(collection), _) => {
            let release = origin.release_label.as_ref().map(|label| ReleaseInfo {
                label: label.clone(),
                timestamp: origin.release_timestamp.unwrap_or_else(|| {
                    prepared
                        .objects
                        .iter()
                        .map(|o| o.meta.version)
                        .max()
                        .unwrap_or(Timestamp::EPOCH)
                }),
            });
            (collection.clone(), release)
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
            (collection, Some(ReleaseInfo { label, timestamp }))
        }
        (None, None) => {
            return Err(content_error(
                "has no x-mitre-collection object: pass --collection ID --title TITLE \
                 (and --release LABEL to make it a release)"
                    .to_owned(),
            ));
        }
    };

    let contents = prepared
        .collection
        .as_ref()
        .filter(|c| c.id == collection.id)
        .map(|c| check_contents(c, &prepared.objects));
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

    let text = prepared.file.text.as_str();
    let candidates: Vec<Candidate<'_>> = prepared
        .objects
        .iter()
        .map(|o| Candidate {
            meta: o.meta.clone(),
            json: &text[o.range.clone()],
            digest: o.digest,
            position: o.position,
        })
        .collect();
    let source = Source {
        kind: origin.kind,
        uri: origin.uri.clone(),
        sha256: Some(prepared.file.sha256.clone()),
        position: None,
    };
    let now = now_micros();
    let plan = plan_batch(
        checkpoint,
        &collection,
        &candidates,
        release.as_ref(),
        &Context {
            run_id,
            now_micros: now,
            source: &source,
        },
    );

    let letters: Vec<DeadLetter> = prepared
        .rejected
        .iter()
        .map(|r| DeadLetter {
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
        })
        .collect();
    for letter in &letters {
        tracing::warn!(file = %origin.uri, reason = %letter.reason, "rejected object sent to the dead-letter topic");
    }
    publisher.dead_letters(&letters).await?;
    publisher.publish(&plan.events).await?;

    let kind = source_label(origin.kind);
    metrics.record_batch(kind, &plan.counts, prepared.rejected.len() as u64);
    metrics.bundles.with_label_values(&[kind, "ok"]).inc();
    metrics
        .checkpoint_versions
        .set(i64::try_from(checkpoint.size().versions).unwrap_or(i64::MAX));

    Ok(BundleReport {
        uri: origin.uri.clone(),
        collection_id: collection.id,
        objects: prepared.objects.len(),
        rejected: prepared.rejected.len(),
        counts: plan.counts,
        release: release.map(|r| r.label),
        contents,
        json_bytes: text.len(),
        prepare_elapsed: Duration::ZERO,
        elapsed: started.elapsed(),
    })
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

    fn prepared(text: &str) -> PreparedBundle {
        prepare(BundleFile {
            path: "t.json".into(),
            sha256: String::new(),
            text: text.to_owned(),
        })
        .unwrap()
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
        let text = &p.file.text[p.rejected[0].range.clone()];
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
