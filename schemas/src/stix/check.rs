//! The check of one STIX object's JSON text, shared by ingest and the projector, with the rules it applies (type, id, spec_version, version): one parse yields the checked fields and the content digest.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::digest_writer::{self, Top};
use super::invalid::{Invalid, InvalidKind, quoted};
use super::timestamp::{self, Timestamp};

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

/// The STIX specification version an object follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    V2_0,
    V2_1,
}

impl SpecVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V2_0 => "2.0",
            SpecVersion::V2_1 => "2.1",
        }
    }

    /// `"2.0"` or `"2.1"`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2.0" => Some(SpecVersion::V2_0),
            "2.1" => Some(SpecVersion::V2_1),
            _ => None,
        }
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The spec_version rule: the object's own `spec_version` if present, else the bundle's (STIX 2.0
/// bundles carry one, 2.1 bundles do not), else 2.0 — STIX 2.1 requires `spec_version` on every
/// SDO and SRO, so an object without one is a 2.0 object.
pub fn spec_version(object: Option<&str>, bundle: Option<&str>) -> Result<SpecVersion, Invalid> {
    let (value, whose) = match (object, bundle) {
        (Some(value), _) => (value, "spec_version"),
        (None, Some(value)) => (value, "bundle spec_version"),
        (None, None) => return Ok(SpecVersion::V2_0),
    };
    SpecVersion::parse(value).ok_or_else(|| {
        Invalid::new(
            InvalidKind::SpecVersion,
            format!("{whose} {}: must be \"2.0\" or \"2.1\"", quoted(value)),
        )
    })
}

/// The version rule: `modified`, else `created`, else [`Timestamp::EPOCH`].
///
/// STIX versions an object by `modified`; an object with neither property (a 2.1 SCO, say) cannot
/// be revised under the same id, so it has exactly one version and any fixed value identifies it.
/// The epoch is that value: it sorts before every real version and reads as "no timestamp".
pub fn object_version(created: Option<Timestamp>, modified: Option<Timestamp>) -> Timestamp {
    modified.or(created).unwrap_or(Timestamp::EPOCH)
}

/// 3–250 characters of `[a-z0-9-]`, not starting or ending with `-`.
fn check_type(stix_type: &str) -> Result<(), &'static str> {
    if !(3..=250).contains(&stix_type.len()) {
        return Err("must be 3 to 250 characters long");
    }
    if !stix_type
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err("must contain only a-z, 0-9 and '-'");
    }
    if stix_type.starts_with('-') || stix_type.ends_with('-') {
        return Err("must not start or end with '-'");
    }
    Ok(())
}

/// `<type>--<UUID>`, with the object's own type as the prefix.
fn check_id(id: &str, stix_type: &str) -> Result<(), String> {
    let Some(uuid) = id
        .strip_prefix(stix_type)
        .and_then(|rest| rest.strip_prefix("--"))
    else {
        return Err(match id.split_once("--") {
            Some((prefix, _)) => format!(
                "prefix {} does not match type {}",
                quoted(prefix),
                quoted(stix_type)
            ),
            None => "not of the form <type>--<UUID>".to_owned(),
        });
    };
    if is_uuid(uuid) {
        Ok(())
    } else {
        Err("not a UUID".to_owned())
    }
}

/// An id on its own (a release member names objects by id alone): `<type>--<UUID>` with a valid
/// type.
pub fn check_stix_id(id: &str) -> Result<(), String> {
    let Some((stix_type, _)) = id.rsplit_once("--") else {
        return Err(format!("{}: not of the form <type>--<UUID>", quoted(id)));
    };
    check_type(stix_type).map_err(|why| format!("{}: type {why}", quoted(id)))?;
    check_id(id, stix_type).map_err(|why| format!("{}: {why}", quoted(id)))
}

/// RFC 4122 textual form: 8-4-4-4-12 hex digits (either case). The version and variant nibbles
/// are not checked: STIX producers do not all use v4/v5 and the id only needs to be well-formed.
fn is_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_alone_is_checked_by_its_own_type() {
        assert_eq!(
            check_stix_id("x-mitre-tactic--00000000-0000-4000-8000-000000000001"),
            Ok(())
        );
        for bad in [
            "nope",
            "AP--00000000-0000-4000-8000-000000000001",
            "attack-pattern--not-a-uuid",
            "--00000000-0000-4000-8000-000000000001",
        ] {
            assert!(check_stix_id(bad).is_err(), "{bad}");
        }
    }
}
