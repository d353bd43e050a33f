//! Checking a bundle's objects on all cores, in chunks handed over in bundle order as they are
//! done, so publishing starts while the rest of the bundle is still being checked.
//!
//! [`spawn`] reads the bundle on a blocking thread, parses its envelope, finds the collection
//! object when the caller needs it to name the collection, then checks chunks of
//! [`CHUNK`] objects on every core. The caller receives [`Stage::Parsed`] first, then every
//! chunk once, possibly out of order (each carries its index; [`Chunks`] restores the order).
//! Nothing is sent for a file that is not a bundle except the error: the caller publishes
//! nothing from it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::Deserialize;
use tokio::sync::mpsc;

use schemas::StixObjectMeta;

use crate::bundle::BundleFile;
use crate::error::Error;

/// Objects per chunk: small enough that the first chunk is published within milliseconds,
/// large enough that handing chunks over costs nothing measurable.
pub const CHUNK: usize = 1024;

/// Chunks that may wait for the publisher: they hold metadata and positions only (the JSON
/// stays in the shared bundle text), so even a whole Enterprise bundle's worth is small.
const QUEUED_CHUNKS: usize = 64;

/// The STIX type of an ATT&CK collection object.
pub const COLLECTION_TYPE: &str = "x-mitre-collection";

/// One object that passed the checks.
#[derive(Debug)]
pub struct PreparedObject {
    pub meta: StixObjectMeta,
    /// Where the object's JSON text is in the bundle text.
    pub range: Range<usize>,
    pub digest: [u8; 32],
    pub position: i64,
}

/// One object that did not, with the reason.
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

/// The outcome of checking one object.
#[derive(Debug)]
pub enum Checked {
    /// Valid; for an `x-mitre-collection` object, what it says.
    Valid(PreparedObject, Option<Box<MitreCollection>>),
    Rejected(Rejected),
}

/// What the checking thread hands over.
#[derive(Debug)]
pub enum Stage {
    /// The bundle was read and is a bundle. `collection` is its first valid collection object,
    /// when the caller asked for it.
    Parsed {
        file: Arc<BundleFile>,
        /// [`BundleFile::sha256_hex`].
        sha256: String,
        collection: Option<Box<MitreCollection>>,
        objects: usize,
    },
    /// The outcomes of objects `index * CHUNK ..`, in bundle order within the chunk.
    Checked {
        index: usize,
        outcomes: Vec<Checked>,
    },
}

/// Reads (with `read`) and checks a bundle on a blocking thread; the stages arrive on the
/// returned channel. `find_collection`: look for the collection object before checking, for
/// callers that take the collection from it. Dropping the receiver stops the checking.
pub fn spawn<R>(read: R, find_collection: bool) -> mpsc::Receiver<Result<Stage, Error>>
where
    R: FnOnce() -> Result<BundleFile, Error> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let send = |stage| tx.blocking_send(Ok(stage)).is_ok();
        let result = read().and_then(|file| check_bundle(file, find_collection, &send));
        if let Err(e) = result {
            // The receiver may be gone already; then nobody needs the error either.
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// Restores bundle order: feed chunks as they arrive, take them out in order.
#[derive(Debug, Default)]
pub struct Chunks {
    waiting: BTreeMap<usize, Vec<Checked>>,
    next: usize,
}

impl Chunks {
    /// Adds a chunk and returns every chunk that is now next in order.
    pub fn push(&mut self, index: usize, outcomes: Vec<Checked>) -> Vec<Vec<Checked>> {
        self.waiting.insert(index, outcomes);
        let mut ready = Vec::new();
        while let Some(outcomes) = self.waiting.remove(&self.next) {
            ready.push(outcomes);
            self.next += 1;
        }
        ready
    }

    /// Chunks handed out so far.
    pub fn done(&self) -> usize {
        self.next
    }
}

/// Parses `file` and checks its objects, calling `send` with each stage (from several threads
/// at once). Stops early when `send` returns false.
pub fn check_bundle(
    file: BundleFile,
    find_collection: bool,
    send: &(dyn Fn(Stage) -> bool + Sync),
) -> Result<(), Error> {
    let file = Arc::new(file);
    let base = file.text.as_ptr() as usize;
    // The file's digest takes as long as parsing the envelope: one on each core.
    let (sha256, parsed) = std::thread::scope(|scope| {
        let sha256 = scope.spawn(|| file.sha256_hex());
        let parsed = file.parse().map(|bundle| {
            let collection = if find_collection {
                first_collection(&bundle.objects, base, bundle.spec_version.as_deref())
            } else {
                None
            };
            (bundle, collection)
        });
        // Hashing cannot fail; a panic in it is a bug, re-raised like a checking worker's.
        let sha256 = sha256
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (sha256, parsed)
    });
    let (bundle, collection) = parsed?;
    let spec_version = bundle.spec_version.as_deref();
    let parsed = Stage::Parsed {
        file: file.clone(),
        sha256,
        collection,
        objects: bundle.objects.len(),
    };
    if !send(parsed) {
        return Ok(());
    }
    let chunks: Vec<&[&serde_json::value::RawValue]> = bundle.objects.chunks(CHUNK).collect();
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, 8)
        .min(chunks.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // A panicking worker is a bug in the checks: the scope re-raises it and the caller sees the
    // reader task fail, with nothing of the unfinished chunks published.
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(index) else {
                        break;
                    };
                    let outcomes = chunk
                        .iter()
                        .enumerate()
                        .map(|(j, raw)| {
                            check(raw.get(), base, (index * CHUNK + j) as i64, spec_version)
                        })
                        .collect();
                    if !send(Stage::Checked { index, outcomes }) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Ok(())
}

/// The first valid `x-mitre-collection` object, as [`check`] would find it. ATT&CK puts it
/// first; otherwise a substring filter keeps the scan of the rest cheap.
fn first_collection(
    objects: &[&serde_json::value::RawValue],
    base: usize,
    spec_version: Option<&str>,
) -> Option<Box<MitreCollection>> {
    objects
        .iter()
        .enumerate()
        .filter(|(_, raw)| raw.get().contains(COLLECTION_TYPE))
        .find_map(
            |(i, raw)| match check(raw.get(), base, i as i64, spec_version) {
                Checked::Valid(_, mitre) => mitre,
                Checked::Rejected(_) => None,
            },
        )
}

/// Checks one object: valid STIX, its canonical digest, and for a collection object what it says.
pub fn check(text: &str, base: usize, position: i64, spec_version: Option<&str>) -> Checked {
    // The object's text is a slice of the bundle's text: remember where, not a copy.
    let start = text.as_ptr() as usize - base;
    let range = start..start + text.len();
    match schemas::validate_object(text, spec_version) {
        Ok(meta) => {
            let digest = meta.content_sha256;
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
        Err(invalid) => Checked::Rejected(Rejected {
            position,
            object_id: object_id_of(text),
            reason: invalid.reason,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn bundle(objects: usize, collection_at: Option<usize>) -> BundleFile {
        let mut items: Vec<String> = (0..objects)
            .map(|i| {
                format!(
                    r#"{{"type":"tool","spec_version":"2.1","id":"tool--00000000-0000-4000-8000-{i:012}","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z"}}"#
                )
            })
            .collect();
        if let Some(at) = collection_at {
            items[at] = r#"{"type":"x-mitre-collection","spec_version":"2.1","id":"x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09","created":"2020-10-27T14:49:39.188Z","modified":"2025-11-13T14:00:00.188Z","name":"ICS ATT&CK","x_mitre_version":"18.1"}"#.to_owned();
        }
        BundleFile {
            path: "t.json".into(),
            text: format!(
                r#"{{"type":"bundle","id":"bundle--1","objects":[{}]}}"#,
                items.join(",\n")
            ),
        }
    }

    fn stages(file: BundleFile, find_collection: bool) -> Vec<Stage> {
        let out = Mutex::new(Vec::new());
        check_bundle(file, find_collection, &|s| {
            out.lock().unwrap().push(s);
            true
        })
        .unwrap();
        out.into_inner().unwrap()
    }

    #[test]
    fn every_object_is_checked_once_and_chunks_reassemble_in_bundle_order() {
        let n = 3 * CHUNK + 17;
        let stages = stages(bundle(n, None), false);
        let Stage::Parsed { objects, .. } = &stages[0] else {
            panic!("first stage is not Parsed");
        };
        assert_eq!(*objects, n);
        let mut chunks = Chunks::default();
        let mut positions = Vec::new();
        // Feed the chunks in reverse to exercise the reordering.
        for stage in stages.into_iter().skip(1).rev() {
            let Stage::Checked { index, outcomes } = stage else {
                panic!("a second Parsed stage");
            };
            for ready in chunks.push(index, outcomes) {
                positions.extend(ready.iter().map(|c| match c {
                    Checked::Valid(o, _) => o.position,
                    Checked::Rejected(r) => r.position,
                }));
            }
        }
        assert_eq!(positions, (0..n as i64).collect::<Vec<_>>());
        assert_eq!(chunks.done(), n.div_ceil(CHUNK));
    }

    #[test]
    fn the_collection_object_is_found_before_checking_wherever_it_is() {
        for at in [0, 5, 2 * CHUNK + 3] {
            let stages = stages(bundle(2 * CHUNK + 10, Some(at)), true);
            let Stage::Parsed { collection, .. } = &stages[0] else {
                panic!("first stage is not Parsed");
            };
            assert_eq!(
                collection
                    .as_ref()
                    .and_then(|c| c.x_mitre_version.as_deref()),
                Some("18.1"),
                "collection at {at}"
            );
        }
        let stages = stages(bundle(10, Some(3)), false);
        assert!(matches!(
            &stages[0],
            Stage::Parsed {
                collection: None,
                ..
            }
        ));
    }

    #[test]
    fn a_file_that_is_not_a_bundle_sends_nothing() {
        let file = BundleFile {
            path: "t.json".into(),
            text: r#"{"type":"indicator"}"#.to_owned(),
        };
        let sent = Mutex::new(0);
        let result = check_bundle(file, true, &|_| {
            *sent.lock().unwrap() += 1;
            true
        });
        assert!(
            matches!(result, Err(Error::NotABundle { .. })),
            "{result:?}"
        );
        assert_eq!(*sent.lock().unwrap(), 0);
    }

    #[test]
    fn a_receiver_that_goes_away_stops_the_workers() {
        let sent = Mutex::new(0);
        check_bundle(bundle(20 * CHUNK, None), false, &|_| {
            *sent.lock().unwrap() += 1;
            false
        })
        .unwrap();
        // Only Parsed was sent: its refusal stops everything before any chunk is checked.
        assert_eq!(*sent.lock().unwrap(), 1);
    }
}
