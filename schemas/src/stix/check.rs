//! The check of one STIX object's JSON text, shared by ingest and the projector: one parse yields the checked fields and the content digest.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::digest_writer::{self, Top};
use super::id::{check_id, check_type};
use super::invalid::{Invalid, InvalidKind, quoted};
use super::timestamp::{self, Timestamp};
use super::version::{SpecVersion, object_version, spec_version};

/// What [`validate_object`] learned about a valid object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StixObjectMeta {
    pub id: String,
    pub stix_type: String,
    pub spec_version: SpecVersion,
    /// Per [`object_version`].
    pub version: Timestamp,
    pub created: Option<Timestamp>,
    pub modified: Option<Timestamp>,
    /// [`super::content_digest`] of the object's text.
    pub content_sha256: [u8; 32],
}

/// The fields the check looks at; a second occurrence of one of them is rejected.
const CHECKED: [&str; 5] = ["type", "id", "created", "modified", "spec_version"];

/// Checks one STIX object's JSON text and extracts what the pipeline needs from it.
///
/// Checks: valid JSON (every number within `f64`, as the digest must read it), a JSON object
/// with none of the checked fields twice; `type` of 3–250 characters `[a-z0-9-]`, not starting
/// or ending with `-`; `id` = `<type>--<UUID>`; `created`/`modified`, when present, STIX
/// timestamps; `spec_version` per [`spec_version`]. The same parse gives the content digest.
pub fn validate_object(
    raw: &str,
    bundle_spec_version: Option<&str>,
) -> Result<StixObjectMeta, Invalid> {
    let mut hasher = Sha256::new();
    let fields = match digest_writer::read(raw, &CHECKED, &mut hasher) {
        Ok(Top::Object(fields)) => fields,
        Ok(Top::NotObject(what)) => {
            return Err(Invalid::new(
                InvalidKind::NotAnObject,
                format!("not a JSON object but {what}"),
            ));
        }
        Err(e) => return Err(not_json(&e)),
    };
    if let Some(name) = first_duplicate(&fields) {
        return Err(Invalid::new(
            InvalidKind::DuplicateField,
            format!("{name}: appears more than once"),
        ));
    }
    let field = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
    let stix_type = required_str(field("type"), "type", InvalidKind::Type)?;
    check_type(stix_type).map_err(|why| {
        Invalid::new(
            InvalidKind::Type,
            format!("type {}: {why}", quoted(stix_type)),
        )
    })?;
    let id = required_str(field("id"), "id", InvalidKind::Id)?;
    check_id(id, stix_type)
        .map_err(|why| Invalid::new(InvalidKind::Id, format!("id {}: {why}", quoted(id))))?;
    let created = optional_timestamp(field("created"), "created", InvalidKind::Created)?;
    let modified = optional_timestamp(field("modified"), "modified", InvalidKind::Modified)?;
    let object_spec_version = match field("spec_version") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(Invalid::new(
                InvalidKind::SpecVersion,
                format!("spec_version: must be a string, found {}", kind(other)),
            ));
        }
    };
    let spec_version = spec_version(object_spec_version, bundle_spec_version)?;
    Ok(StixObjectMeta {
        id: id.to_owned(),
        stix_type: stix_type.to_owned(),
        spec_version,
        version: object_version(created, modified),
        created,
        modified,
        content_sha256: hasher.finalize().into(),
    })
}

fn not_json(e: &serde_json::Error) -> Invalid {
    Invalid::new(InvalidKind::NotJson, format!("not valid JSON: {e}"))
}

/// The checked field whose second occurrence comes first, if any.
fn first_duplicate(fields: &[(&'static str, Value)]) -> Option<&'static str> {
    let mut seen = [false; CHECKED.len()];
    fields.iter().find_map(|(key, _)| {
        let i = CHECKED.iter().position(|name| name == key)?;
        std::mem::replace(&mut seen[i], true).then_some(CHECKED[i])
    })
}

fn required_str<'a>(
    field: Option<&'a Value>,
    name: &str,
    kind: InvalidKind,
) -> Result<&'a str, Invalid> {
    match field {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(Invalid::new(
            kind,
            format!("{name}: must be a string, found {}", self::kind(other)),
        )),
        None => Err(Invalid::new(kind, format!("{name}: missing"))),
    }
}

fn optional_timestamp(
    field: Option<&Value>,
    name: &str,
    kind: InvalidKind,
) -> Result<Option<Timestamp>, Invalid> {
    match field {
        None => Ok(None),
        Some(Value::String(s)) => timestamp::parse(s)
            .map(Some)
            .map_err(|why| Invalid::new(kind, format!("{name} {}: {why}", quoted(s)))),
        Some(other) => Err(Invalid::new(
            kind,
            format!(
                "{name}: must be a timestamp string, found {}",
                self::kind(other)
            ),
        )),
    }
}

/// What a JSON value is, for a reason that says what was found instead.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
