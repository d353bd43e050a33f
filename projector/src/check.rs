//! Whether a decoded event can be projected: its object JSON is valid STIX and agrees with the event's own fields.

use schemas::Event;

/// Checks what the projector relies on beyond decoding: the object JSON is valid STIX and
/// agrees with the event's own fields. `Err` carries the reason for the dead-letter topic.
pub fn check(event: &Event) -> Result<(), String> {
    let Event::ObjectVersion(v) = event else {
        return Ok(());
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
