//! Sorting one message of the objects topic: an event to apply, or why it is a dead letter —
//! decoded, then checked: its fields hold together, and an object's JSON is valid STIX that
//! agrees with them. Shared by every reader that projects the topic, so they all accept and
//! refuse the same.

use schemas::registry::SchemaIds;
use schemas::{Event, ReleasePublished, Source, Timestamp};

/// Why a message is a dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not an event this build can decode: the reason, starting `undecodable: `.
    Undecodable(String),
    /// An event that breaks the contract: what is wrong, and where the event came from.
    Invalid { reason: String, source: Source },
}

impl Refusal {
    /// The dead-letter kind (the metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Undecodable(_) => "undecodable",
            Refusal::Invalid { .. } => "invalid",
        }
    }
}

/// Decodes `payload` (either framing; registry ids from `ids`) and checks the event.
pub fn triage(payload: &[u8], ids: &SchemaIds) -> Result<Event, Refusal> {
    let event = schemas::decode_event_with(payload, ids)
        .map_err(|e| Refusal::Undecodable(format!("undecodable: {e}")))?;
    match check(&event) {
        Ok(()) => Ok(event),
        Err(reason) => {
            let source = match &event {
                Event::ObjectVersion(v) => v.source.clone(),
                Event::Collection(c) => c.source.clone(),
                Event::Release(r) => r.source.clone(),
            };
            Err(Refusal::Invalid { reason, source })
        }
    }
}

/// The longest collection id or release label taken: far above any real one, and with the
/// other key columns well under CQL's 65,535-byte limit on a partition key.
const MAX_KEY_BYTES: usize = 16 * 1024;

/// Checks what the projector relies on beyond decoding: every event names its collection; a
/// release chunk's numbering and version texts hold together (a chunk count of 0 would mark
/// a release complete with no chunk at all); an object's JSON is valid STIX and agrees with
/// the event's own fields. `Err` carries the reason for the dead-letter topic.
///
/// A release naming versions not (yet) projected passes: events may arrive in any order
/// (docs/events.md), and the API serves only members it has.
pub fn check(event: &Event) -> Result<(), String> {
    // Both are partition keys, which CQL refuses empty or over 64 KiB: the writes of such an
    // event would be retried forever and stall the partition.
    let collection_id = event.collection_id();
    if collection_id.is_empty() {
        return Err("collection_id is empty".to_owned());
    }
    if collection_id.len() > MAX_KEY_BYTES {
        return Err(format!(
            "collection_id of {} bytes is longer than {MAX_KEY_BYTES}",
            collection_id.len()
        ));
    }
    let v = match event {
        Event::ObjectVersion(v) => v,
        Event::Release(r) => return check_release(r),
        Event::Collection(_) => return Ok(()),
    };
    let meta = schemas::validate_object(&v.object_json, Some(&v.spec_version))
        .map_err(|e| format!("object_json is not valid STIX: {e}"))?;
    let mut mismatches = Vec::new();
    if meta.id != v.object_id {
        mismatches.push(format!("id {:?} ≠ object_id {:?}", meta.id, v.object_id));
    }
    if meta.stix_type != v.stix_type {
        mismatches.push(format!(
            "type {:?} ≠ stix_type {:?}",
            meta.stix_type, v.stix_type
        ));
    }
    if meta.spec_version.as_str() != v.spec_version {
        mismatches.push(format!(
            "spec_version {:?} ≠ event spec_version {:?}",
            meta.spec_version.as_str(),
            v.spec_version
        ));
    }
    if meta.version.as_micros() != v.version_micros || meta.version.to_string() != v.version {
        mismatches.push(format!(
            "version {} ≠ event version {:?} ({} µs)",
            meta.version, v.version, v.version_micros
        ));
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "object_json disagrees with the event: {}",
            mismatches.join("; ")
        ))
    }
}

/// The canonical text of `micros`, as every version text of the contract is written.
fn canonical(micros: i64) -> String {
    Timestamp::from_micros(micros).to_string()
}

fn check_release(r: &ReleasePublished) -> Result<(), String> {
    let mut wrong = Vec::new();
    if r.label.is_empty() {
        wrong.push("label is empty".to_owned());
    }
    if r.label.len() > MAX_KEY_BYTES {
        wrong.push(format!(
            "label of {} bytes is longer than {MAX_KEY_BYTES}",
            r.label.len()
        ));
    }
    if r.chunk_count < 1 || !(0..r.chunk_count).contains(&r.chunk_index) {
        wrong.push(format!(
            "chunk_index {} is not within chunk_count {}",
            r.chunk_index, r.chunk_count
        ));
    }
    if r.member_count < r.members.len() as i64 {
        wrong.push(format!(
            "member_count {} is less than the chunk's {} members",
            r.member_count,
            r.members.len()
        ));
    }
    if r.release_version != canonical(r.release_timestamp) {
        wrong.push(format!(
            "release_version {:?} ≠ release_timestamp {} µs",
            short(&r.release_version),
            r.release_timestamp
        ));
    }
    for m in &r.members {
        if let Err(why) = schemas::check_stix_id(&m.object_id) {
            wrong.push(format!("member id {why}"));
        }
        if m.version != canonical(m.version_micros) {
            wrong.push(format!(
                "member {:?}: version {:?} ≠ version_micros {}",
                short(&m.object_id),
                short(&m.version),
                m.version_micros
            ));
        }
        // A few reasons are enough to act on; a chunk has up to 5,000 members.
        if wrong.len() > 5 {
            break;
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid release chunk: {}", wrong.join("; ")))
    }
}

/// At most 100 bytes of a field for a reason, so a huge value cannot bloat a dead letter.
fn short(text: &str) -> &str {
    let mut end = text.len().min(100);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{ReleaseMember, Source, SourceKind, chunk_release};

    fn release() -> ReleasePublished {
        let at = Timestamp::parse("2025-10-28T14:00:00.000Z").unwrap();
        let member = ReleaseMember::new(
            "attack-pattern--00000000-0000-4000-8000-000000000001",
            at,
            [0; 32],
        );
        let source = Source {
            kind: SourceKind::Bundle,
            uri: "f.json".into(),
            sha256: None,
            position: None,
        };
        chunk_release("c", "18.1", at, 1, vec![member], &source, "run").remove(0)
    }

    #[test]
    fn a_chunk_as_ingest_writes_it_passes() {
        assert_eq!(check(&Event::Release(release())), Ok(()));
    }

    #[test]
    fn broken_chunk_fields_are_rejected_with_what_is_wrong() {
        type Breaks = fn(&mut ReleasePublished);
        let cases: [(Breaks, &str); 8] = [
            (|r| r.chunk_count = 0, "chunk_count 0"),
            (|r| r.chunk_index = 1, "chunk_index 1"),
            (|r| r.chunk_index = -1, "chunk_index -1"),
            (|r| r.member_count = 0, "member_count 0"),
            (
                |r| r.release_version = "yesterday".into(),
                "release_version",
            ),
            (|r| r.label.clear(), "label is empty"),
            (|r| r.members[0].object_id = "not-an-id".into(), "member id"),
            (|r| r.members[0].version_micros += 1, "version_micros"),
        ];
        for (brk, reason) in cases {
            let mut r = release();
            brk(&mut r);
            let error = check(&Event::Release(r)).unwrap_err();
            assert!(error.contains(reason), "{reason:?} in {error}");
        }
        let mut r = release();
        r.collection_id.clear();
        assert!(
            check(&Event::Release(r))
                .unwrap_err()
                .contains("collection_id")
        );
        let mut r = release();
        r.label = "x".repeat(MAX_KEY_BYTES + 1);
        assert!(
            check(&Event::Release(r))
                .unwrap_err()
                .contains("label of 16385 bytes")
        );
        let mut r = release();
        r.collection_id = "c".repeat(70_000);
        assert!(
            check(&Event::Release(r))
                .unwrap_err()
                .contains("70000 bytes")
        );
    }
}
