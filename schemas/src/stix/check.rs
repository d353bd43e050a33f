//! The check of one STIX object's JSON text, shared by ingest and the projector: one parse yields the checked fields and the content digest.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::canonical::digest;
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
    let fields = match serde_json::from_str::<TopLevel>(raw) {
        Ok(TopLevel::Object(fields)) => fields,
        Ok(TopLevel::NotObject(what)) => {
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
    // The last of duplicate (unchecked) keys is kept, as in the canonical form.
    let object: Map<String, Value> = fields.into_iter().collect();
    let stix_type = required_str(object.get("type"), "type", InvalidKind::Type)?;
    check_type(stix_type).map_err(|why| {
        Invalid::new(
            InvalidKind::Type,
            format!("type {}: {why}", quoted(stix_type)),
        )
    })?;
    let id = required_str(object.get("id"), "id", InvalidKind::Id)?;
    check_id(id, stix_type)
        .map_err(|why| Invalid::new(InvalidKind::Id, format!("id {}: {why}", quoted(id))))?;
    let created = optional_timestamp(object.get("created"), "created", InvalidKind::Created)?;
    let modified = optional_timestamp(object.get("modified"), "modified", InvalidKind::Modified)?;
    let object_spec_version = match object.get("spec_version") {
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
    let (id, stix_type) = (id.to_owned(), stix_type.to_owned());
    let content_sha256 = digest(&Value::Object(object)).map_err(|e| not_json(&e))?;
    Ok(StixObjectMeta {
        id,
        stix_type,
        spec_version,
        version: object_version(created, modified),
        created,
        modified,
        content_sha256,
    })
}

fn not_json(e: &serde_json::Error) -> Invalid {
    Invalid::new(InvalidKind::NotJson, format!("not valid JSON: {e}"))
}

/// The checked field whose second occurrence comes first, if any.
fn first_duplicate(fields: &[(String, Value)]) -> Option<&'static str> {
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

/// An object's top level as written, fields in order and duplicates kept (a `Map` would merge
/// them unseen), or what the JSON was instead of an object.
enum TopLevel {
    Object(Vec<(String, Value)>),
    NotObject(&'static str),
}

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(field) = map.next_entry()? {
            fields.push(field);
        }
        Ok(TopLevel::Object(fields))
    }

    /// Read through, so that invalid JSON inside is still reported as such.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopLevel::NotObject("an array"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a string"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::NotObject("null"))
    }
}
