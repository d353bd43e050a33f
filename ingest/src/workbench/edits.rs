//! `ingest workbench --include-unreleased`: object versions edited in the Workbench between
//! collection releases, published as versions of their collections without a release, so they
//! reach the history root and nothing else.
//!
//! Cost: the latest version of every object (`attack-objects`, tens of MB for a whole
//! Workbench) is read at start and every `--unreleased-full-scan-interval`; in between, each
//! `--unreleased-poll-interval` reads only the [`RECENT_LIMIT`] versions with the newest `modified`
//! (`recent-activity`). When that page does not reach a version an earlier scan of this run
//! already read, more edits may lie beyond it and a full scan follows at once.
//!
//! Which collections a version belongs to: those its `workspace.collections` names (a version
//! imported with, or added to, collection versions); when it names none, every collection in
//! which Taxiway has published some version of the same object. The second rule is what makes
//! edits visible at all: the Workbench frontend saves a new version with `workspace: {workflow}`
//! only, so an edited version names no collection until a release includes it. It applies only
//! to such versions: a version released in one collection (ICS's newer data components, say) is
//! not pushed into another collection that released an older version of the same object.
//! A version of an object no collection holds yet (a new draft) is not published; nor is one
//! whose collection Taxiway has not published yet (its release failed or is pending): it is
//! retried on the next scan, after the release path has had its turn.
//!
//! Corrections: a collection export rewrites some objects (`x_mitre_data_sources`, citations),
//! so the same (id, modified) legitimately differs between a release and `attack-objects`.
//! A scan therefore re-publishes a known version only when the Workbench's own content of it
//! changed between two scans of this run (an in-place overwrite); a difference seen on the
//! first sighting is left to the release path, which would otherwise flip-flop with the scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use schemas::{DeadLetter, Event, Source, SourceKind};

use super::client::{ObjectDocument, ObjectList, WorkbenchClient, parse_object_list};
use crate::check::check_object;
use crate::checkpoint::Checkpoint;
use crate::connection::Connection;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::plan::{Candidate, CollectionInfo, Context, Counts, dead_letter, plan_batch};
use service::now_micros;

/// Versions read per `recent-activity` poll: far more than people edit between two polls, and
/// about 300 KB (the newest ATT&CK objects are large ones, ~6 KB with their Workbench document). A
/// burst beyond it (an import, a bulk edit) triggers a full scan, so nothing is lost.
const RECENT_LIMIT: usize = 50;

/// The `source` label of this path in metrics.
const METRICS_SOURCE: &str = "workbench_unreleased";

/// How often to scan.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub poll_interval: Duration,
    pub full_scan_interval: Duration,
}

/// What one scan did.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub listed: usize,
    pub bytes: usize,
    pub elapsed: Duration,
    pub counts: Counts,
    /// Invalid versions sent to the dead-letter topic (once per run and content).
    pub rejected: u64,
    /// Versions of objects no collection holds.
    pub no_collection: u64,
    /// (version, collection) pairs skipped because the collection is not published yet.
    pub unpublished_collection: u64,
    /// Whether the list reached versions read before (or was complete): nothing newer was missed.
    pub reached_known: bool,
}

/// [`Scanner::retry_wait`] after `failures` failed attempts in a row.
fn retry_wait(schedule: &Schedule, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    schedule
        .poll_interval
        .saturating_mul(1 << doublings)
        .min(schedule.full_scan_interval.max(schedule.poll_interval))
}

/// The content digest of each (object id, `modified` text) read in this run; `None` for content
/// without one (it failed validation).
type Seen = HashMap<(String, String), Option<[u8; 32]>>;

/// The scan's state between polls.
pub struct Scanner {
    client: Arc<WorkbenchClient>,
    metrics: Metrics,
    run_id: String,
    schedule: Schedule,
    seen: Seen,
    last_poll: Option<Instant>,
    last_full: Option<Instant>,
    /// Scans failed in a row since the last that worked: each doubles the wait before the next.
    failures: u32,
}

impl Scanner {
    pub fn new(
        client: Arc<WorkbenchClient>,
        metrics: Metrics,
        run_id: String,
        schedule: Schedule,
    ) -> Self {
        Scanner {
            client,
            metrics,
            run_id,
            schedule,
            seen: Seen::new(),
            last_poll: None,
            last_full: None,
            failures: 0,
        }
    }

    /// How long after the last attempt the next one is due: the poll interval, doubled for each
    /// failed attempt in a row, at most the full-scan interval. A failing Workbench (a full scan
    /// lists every object) is not asked again on every mirror poll.
    pub fn retry_wait(&self) -> Duration {
        retry_wait(&self.schedule, self.failures)
    }

    /// Scans if one is due: a full scan first and every `full_scan_interval`, the recent page
    /// every `poll_interval`, and a full scan right after a recent page that did not reach
    /// known versions. Returns the scans made (none when not due).
    ///
    /// After a failure the next attempt waits [`Scanner::retry_wait`].
    pub async fn poll(&mut self, connection: &mut Connection) -> Result<Vec<ScanReport>, Error> {
        if self
            .last_poll
            .is_some_and(|t| t.elapsed() < self.retry_wait())
        {
            return Ok(Vec::new());
        }
        match self.poll_due(connection).await {
            Ok(reports) => {
                self.failures = 0;
                Ok(reports)
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.last_poll = Some(Instant::now());
                Err(e)
            }
        }
    }

    async fn poll_due(&mut self, connection: &mut Connection) -> Result<Vec<ScanReport>, Error> {
        let full_due = self
            .last_full
            .is_none_or(|t| t.elapsed() >= self.schedule.full_scan_interval);
        let mut reports = Vec::new();
        if !full_due {
            let recent = self
                .scan(
                    ObjectList::Recent {
                        limit: RECENT_LIMIT,
                    },
                    connection,
                )
                .await?;
            let reached_known = recent.reached_known;
            reports.push(recent);
            if reached_known {
                self.last_poll = Some(Instant::now());
                return Ok(reports);
            }
            tracing::info!(
                limit = RECENT_LIMIT,
                "more recent edits than one recent-activity page; scanning every object"
            );
        }
        reports.push(self.scan(ObjectList::Latest, connection).await?);
        self.last_full = Some(Instant::now());
        self.last_poll = self.last_full;
        Ok(reports)
    }

    /// Reads one object list and publishes every version in it the topic does not hold yet.
    pub async fn scan(
        &mut self,
        list: ObjectList,
        connection: &mut Connection,
    ) -> Result<ScanReport, Error> {
        let checkpoint = &mut connection.checkpoint;
        let request = list.label();
        let fetched = self
            .metrics
            .workbench_request(request, self.client.object_list(list).await)?;
        let url = self.client.object_list_url(list);
        let source = Source {
            kind: SourceKind::Workbench,
            uri: url.clone(),
            sha256: None,
            position: None,
        };
        let run_id = self.run_id.clone();
        // Parsing and checking a whole Workbench is seconds of CPU: off the async workers, with
        // the state it updates moved in and back.
        let mut owned_checkpoint = std::mem::take(checkpoint);
        let mut seen = std::mem::take(&mut self.seen);
        let body = fetched.value;
        let (owned_checkpoint, seen, planned) = tokio::task::spawn_blocking(move || {
            let planned = parse_object_list(&url, &body).map(|docs| {
                let listed = docs.len();
                let plan = plan_scan(
                    &docs,
                    &mut owned_checkpoint,
                    &mut seen,
                    &Context {
                        run_id: &run_id,
                        now_micros: now_micros(),
                        source: &source,
                    },
                );
                (listed, plan)
            });
            (owned_checkpoint, seen, planned)
        })
        .await
        .map_err(|e| Error::KafkaState(format!("object list reader task failed: {e}")))?;
        *checkpoint = owned_checkpoint;
        self.seen = seen;
        let (listed, plan) = planned.inspect_err(|_| {
            self.metrics
                .workbench_errors
                .with_label_values(&[request])
                .inc();
        })?;

        for letter in &plan.letters {
            tracing::warn!(reason = %letter.reason, "rejected Workbench object sent to the dead-letter topic");
        }
        connection
            .publisher
            .publish(&plan.events, &plan.letters)
            .await?;
        self.metrics
            .record_batch(METRICS_SOURCE, &plan.counts, plan.rejected);
        for (outcome, n) in [
            ("no_collection", plan.no_collection),
            ("unpublished_collection", plan.unpublished_collection),
        ] {
            self.metrics
                .objects
                .with_label_values(&[METRICS_SOURCE, outcome])
                .inc_by(n);
        }
        self.metrics.record_checkpoint(&connection.checkpoint);

        let report = ScanReport {
            listed,
            bytes: fetched.bytes,
            elapsed: fetched.elapsed,
            counts: plan.counts,
            rejected: plan.rejected,
            no_collection: plan.no_collection,
            unpublished_collection: plan.unpublished_collection,
            reached_known: match list {
                ObjectList::Latest => true,
                ObjectList::Recent { limit } => plan.reached_known || listed < limit,
            },
        };
        if let Some(collection) = &plan.first_unpublished {
            tracing::info!(
                collection = %collection,
                versions = plan.unpublished_collection,
                "edited versions of a collection Taxiway has not published yet; retried after its release"
            );
        }
        let changed = plan.counts.published + plan.counts.corrections + plan.rejected > 0;
        if changed || list == ObjectList::Latest {
            tracing::info!(
                request,
                listed = report.listed,
                bytes = report.bytes,
                ms = report.elapsed.as_millis() as u64,
                published = report.counts.published,
                corrections = report.counts.corrections,
                skipped = report.counts.skipped,
                rejected = report.rejected,
                no_collection = report.no_collection,
                unpublished_collection = report.unpublished_collection,
                "workbench unreleased scan"
            );
        }
        Ok(report)
    }
}

/// The events and dead letters of one scan.
#[derive(Debug, Default)]
struct ScanPlan {
    events: Vec<Event>,
    letters: Vec<DeadLetter>,
    counts: Counts,
    rejected: u64,
    no_collection: u64,
    unpublished_collection: u64,
    first_unpublished: Option<String>,
    /// Some version in the list had been read by an earlier scan of this run.
    reached_known: bool,
}

/// The fields of a document read before validation, to remember it by.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    modified: Option<serde_json::Value>,
}

fn text_of(value: Option<serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Plans one scan and records what it publishes in the checkpoint and what it read in `seen`.
/// Pure: no I/O.
fn plan_scan(
    docs: &[ObjectDocument],
    checkpoint: &mut Checkpoint,
    seen: &mut Seen,
    context: &Context<'_>,
) -> ScanPlan {
    let mut plan = ScanPlan::default();
    let checked: Vec<_> = docs
        .iter()
        .map(|doc| check_object(doc.stix.get(), None))
        .collect();
    // Candidates per collection, in list order.
    let mut batches: BTreeMap<String, Vec<Candidate<'_>>> = BTreeMap::new();
    for (position, (doc, checked)) in docs.iter().zip(&checked).enumerate() {
        let position = position as i64;
        let json = doc.stix.get();
        let head = serde_json::from_str::<Head>(json).unwrap_or(Head {
            id: None,
            modified: None,
        });
        let id = text_of(head.id);
        let digest = checked.as_ref().ok().map(|meta| meta.content_sha256);
        let previous = seen.insert((id.clone(), text_of(head.modified)), digest);
        plan.reached_known |= previous.is_some();

        let mut collections: BTreeSet<&str> = doc
            .workspace
            .collections
            .iter()
            .map(|c| c.collection_ref.as_str())
            .collect();
        if collections.is_empty() {
            collections.extend(checkpoint.collections_of(&id));
        }
        if collections.is_empty() {
            plan.no_collection += 1;
            continue;
        }
        let meta = match checked {
            Ok(meta) => meta,
            Err(reason) => {
                // Once per run and content: every later scan reads the same object again.
                if previous != Some(None) {
                    plan.rejected += 1;
                    plan.letters.push(dead_letter(
                        json,
                        Some(id.as_str()).filter(|id| !id.is_empty()),
                        position,
                        reason,
                        context,
                    ));
                }
                continue;
            }
        };
        let (version, digest) = (meta.version.as_micros(), meta.content_sha256);
        for collection in collections {
            if checkpoint
                .collection(collection)
                .is_none_or(|c| c.metadata.is_none())
            {
                plan.unpublished_collection += 1;
                plan.first_unpublished
                    .get_or_insert_with(|| collection.to_owned());
                continue;
            }
            let publish = match checkpoint.version(collection, &meta.id, version) {
                None => true,
                Some(known) if known.digest == digest => false,
                // Re-published only when the Workbench's content changed under our eyes; see
                // the module comment for why a first sighting is not enough.
                Some(_) => matches!(previous, Some(Some(before)) if before != digest),
            };
            if publish {
                batches
                    .entry(collection.to_owned())
                    .or_default()
                    .push(Candidate {
                        meta,
                        json,
                        position,
                    });
            } else {
                plan.counts.skipped += 1;
            }
        }
    }
    for (collection_id, candidates) in batches {
        let Some(metadata) = checkpoint
            .collection(&collection_id)
            .and_then(|c| c.metadata.as_ref())
        else {
            continue;
        };
        // The collection's own title and description, so no metadata event is planned.
        let collection = CollectionInfo {
            id: collection_id,
            title: metadata.title.clone(),
            description: metadata.description.clone(),
        };
        let batch = plan_batch(checkpoint, &collection, &candidates, None, context);
        plan.counts += batch.counts;
        plan.events.extend(batch.events);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ReleaseInfo;
    use schemas::Timestamp;

    const ICS: &str = "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09";
    const MOBILE: &str = "x-mitre-collection--dac0d2d7-8653-445c-9bff-82f934c1e858";
    const T1: &str = r#"{"type":"attack-pattern","spec_version":"2.1","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z","name":"a"}"#;
    const T1_EDITED: &str = r#"{"type":"attack-pattern","spec_version":"2.1","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2022-01-01T00:00:00.000Z","name":"b"}"#;
    const T1_EDITED_AGAIN_IN_PLACE: &str = r#"{"type":"attack-pattern","spec_version":"2.1","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2022-01-01T00:00:00.000Z","name":"c"}"#;
    const T1_OVERWRITTEN: &str = r#"{"type":"attack-pattern","spec_version":"2.1","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2022-01-01T00:00:00.000Z","name":"d"}"#;
    const DRAFT: &str = r#"{"type":"tool","spec_version":"2.1","id":"tool--22222222-2222-4222-8222-222222222222","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z"}"#;
    const INVALID: &str = r#"{"type":"attack-pattern","spec_version":"9.9","id":"attack-pattern--008b8f56-6107-48be-aa9f-746f927dbb61","created":"2020-01-01T00:00:00.000Z","modified":"2023-01-01T00:00:00.000Z"}"#;

    #[test]
    fn failed_scans_wait_longer_each_time_up_to_the_full_scan_interval() {
        let schedule = Schedule {
            poll_interval: Duration::from_secs(30),
            full_scan_interval: Duration::from_secs(3600),
        };
        let waits: Vec<u64> = (0..10)
            .map(|failures| retry_wait(&schedule, failures).as_secs())
            .collect();
        assert_eq!(
            waits,
            [30, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600],
            "no failure or one: the poll interval; then doubling, capped"
        );
        assert_eq!(retry_wait(&schedule, u32::MAX), Duration::from_secs(3600));
        // A full-scan interval below the poll interval never shortens the wait.
        let odd = Schedule {
            poll_interval: Duration::from_secs(30),
            full_scan_interval: Duration::from_secs(10),
        };
        assert_eq!(retry_wait(&odd, 5), Duration::from_secs(30));
    }

    fn source() -> Source {
        Source {
            kind: SourceKind::Workbench,
            uri: "http://wb/api/attack-objects".into(),
            sha256: None,
            position: None,
        }
    }

    /// The checkpoint after a release of `collection` holding `objects`.
    fn released(checkpoint: &mut Checkpoint, collection: &str, objects: &[&str]) {
        crate::plan::tests::with_candidates(objects, |candidates| {
            plan_batch(
                checkpoint,
                &CollectionInfo {
                    id: collection.into(),
                    title: collection.into(),
                    description: None,
                },
                candidates,
                Some(&ReleaseInfo {
                    label: "1.0".into(),
                    timestamp: Timestamp::parse("2021-06-01T00:00:00.000Z").unwrap(),
                }),
                &Context {
                    run_id: "run",
                    now_micros: 100,
                    source: &source(),
                },
            )
        });
    }

    /// An object list as the Workbench sends it: `(stix, workspace collection refs)`.
    fn list(docs: &[(&str, &[&str])]) -> Vec<ObjectDocument> {
        let body: Vec<String> = docs
            .iter()
            .map(|(stix, refs)| {
                let refs: Vec<String> = refs
                    .iter()
                    .map(|r| {
                        format!(
                            r#"{{"collection_ref":"{r}","collection_modified":"2021-06-01T00:00:00.000Z"}}"#
                        )
                    })
                    .collect();
                format!(
                    r#"{{"workspace":{{"workflow":{{"state":"reviewed"}},"collections":[{}]}},"stix":{stix}}}"#,
                    refs.join(",")
                )
            })
            .collect();
        parse_object_list("u", format!("[{}]", body.join(",")).as_bytes()).unwrap()
    }

    fn scan(checkpoint: &mut Checkpoint, seen: &mut Seen, docs: &[(&str, &[&str])]) -> ScanPlan {
        plan_scan(
            &list(docs),
            checkpoint,
            seen,
            &Context {
                run_id: "run",
                now_micros: 1_000,
                source: &source(),
            },
        )
    }

    fn added(plan: &ScanPlan) -> Vec<(&str, &str, bool)> {
        plan.events
            .iter()
            .map(|e| match e {
                Event::ObjectVersion(v) => (
                    v.collection_id.as_str(),
                    v.object_json.as_str(),
                    v.correction,
                ),
                other => panic!("only object versions expected: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn an_edit_naming_no_collection_is_published_in_every_collection_holding_the_object() {
        let mut checkpoint = Checkpoint::default();
        released(&mut checkpoint, ICS, &[T1]);
        released(&mut checkpoint, MOBILE, &[T1]);
        let mut seen = Seen::new();
        let plan = scan(&mut checkpoint, &mut seen, &[(T1_EDITED, &[])]);
        assert_eq!(
            added(&plan),
            [(ICS, T1_EDITED, false), (MOBILE, T1_EDITED, false)]
        );
        assert_eq!(plan.counts.published, 2);
        let again = scan(&mut checkpoint, &mut seen, &[(T1_EDITED, &[])]);
        assert!(again.events.is_empty());
        assert_eq!(again.counts.skipped, 2);
        assert!(again.reached_known);
    }

    #[test]
    fn a_version_released_in_one_collection_is_not_pushed_into_another_holding_an_older_one() {
        let mut checkpoint = Checkpoint::default();
        released(&mut checkpoint, ICS, &[T1_EDITED]);
        released(&mut checkpoint, MOBILE, &[T1]);
        let mut seen = Seen::new();
        let plan = scan(&mut checkpoint, &mut seen, &[(T1_EDITED, &[ICS])]);
        assert!(plan.events.is_empty(), "{:?}", plan.events);
        assert_eq!(plan.counts.skipped, 1);
    }

    #[test]
    fn known_versions_are_skipped_and_drafts_of_no_collection_are_not_published() {
        let mut checkpoint = Checkpoint::default();
        released(&mut checkpoint, ICS, &[T1]);
        let mut seen = Seen::new();
        let plan = scan(&mut checkpoint, &mut seen, &[(T1, &[ICS]), (DRAFT, &[])]);
        assert!(plan.events.is_empty(), "{:?}", plan.events);
        assert_eq!(plan.counts.skipped, 1);
        assert_eq!(plan.no_collection, 1);
        assert!(!plan.reached_known, "nothing was read before this scan");
    }

    #[test]
    fn a_collection_not_published_yet_is_left_for_a_later_scan() {
        let mut checkpoint = Checkpoint::default();
        let mut seen = Seen::new();
        let plan = scan(&mut checkpoint, &mut seen, &[(T1, &[ICS])]);
        assert!(plan.events.is_empty());
        assert_eq!(plan.unpublished_collection, 1);
        assert_eq!(plan.first_unpublished.as_deref(), Some(ICS));
        // Once its release is published, the same version is known through it.
        released(&mut checkpoint, ICS, &[T1]);
        let plan = scan(&mut checkpoint, &mut seen, &[(T1, &[ICS])]);
        assert!(plan.events.is_empty());
        assert_eq!(plan.counts.skipped, 1);
    }

    #[test]
    fn content_differing_from_a_release_on_first_sight_is_not_republished_but_an_in_place_overwrite_is()
     {
        let mut checkpoint = Checkpoint::default();
        // The release carried the export's rewrite of this version.
        released(&mut checkpoint, ICS, &[T1_EDITED]);
        let mut seen = Seen::new();
        let first = scan(
            &mut checkpoint,
            &mut seen,
            &[(T1_EDITED_AGAIN_IN_PLACE, &[ICS])],
        );
        assert!(
            first.events.is_empty(),
            "no flip-flop with the release path"
        );
        let unchanged = scan(
            &mut checkpoint,
            &mut seen,
            &[(T1_EDITED_AGAIN_IN_PLACE, &[ICS])],
        );
        assert!(unchanged.events.is_empty());
        let overwritten = scan(&mut checkpoint, &mut seen, &[(T1_OVERWRITTEN, &[ICS])]);
        assert_eq!(added(&overwritten), [(ICS, T1_OVERWRITTEN, true)]);
        assert_eq!(overwritten.counts.corrections, 1);
    }

    #[test]
    fn invalid_versions_of_a_held_object_are_dead_lettered_once_per_run() {
        let mut checkpoint = Checkpoint::default();
        released(&mut checkpoint, ICS, &[T1]);
        let mut seen = Seen::new();
        let plan = scan(&mut checkpoint, &mut seen, &[(INVALID, &[]), (T1, &[])]);
        assert!(plan.events.is_empty());
        assert_eq!(plan.rejected, 1);
        let letter = &plan.letters[0];
        assert!(
            letter.reason.contains("attack-pattern--008b8f56")
                && letter.reason.contains("spec_version"),
            "{}",
            letter.reason
        );
        assert_eq!(letter.payload.as_deref(), Some(INVALID.as_bytes()));
        assert_eq!(letter.source.as_ref().and_then(|s| s.position), Some(0));
        let again = scan(&mut checkpoint, &mut seen, &[(INVALID, &[])]);
        assert_eq!(again.rejected, 0);
        assert!(again.letters.is_empty());
    }

    #[test]
    fn scan_events_are_versions_only_with_increasing_date_added_after_the_release() {
        let mut checkpoint = Checkpoint::default();
        released(&mut checkpoint, ICS, &[T1]);
        let last = checkpoint.collection(ICS).unwrap().last_date_added;
        let mut seen = Seen::new();
        let plan = scan(&mut checkpoint, &mut seen, &[(T1_EDITED, &[]), (T1, &[])]);
        let Event::ObjectVersion(v) = &plan.events[0] else {
            panic!("{:?}", plan.events)
        };
        assert_eq!(plan.events.len(), 1);
        assert!(v.date_added > last);
        assert_eq!(v.source.uri, "http://wb/api/attack-objects");
        assert_eq!(v.source.position, Some(0));
    }
}
