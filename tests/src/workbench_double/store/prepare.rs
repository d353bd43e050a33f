//! Turning bundle JSON into the double's stored documents the way Workbench does on import:
//! timestamps normalized to milliseconds, schema defaults applied, original text kept otherwise.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{
    CollectionVersion, CollectionVersionKey, CollectionWorkspace, ImportCategories,
    ImportReferences, ObjectHead, ObjectVersionKey, StoredObject, Workflow,
};
use crate::workbench_double::{DoubleError, timestamp};

pub(super) fn new_object(raw: Box<RawValue>, head: ObjectHead, modified: String) -> StoredObject {
    StoredObject {
        attack_id: head.attack_id(),
        raw,
        head,
        modified,
        mongo_id: mongo_object_id(),
        workflow_state: "reviewed".to_owned(),
        collections: Vec::new(),
    }
}

/// An object from a bundle file: served as its original text unless a timestamp needs normalizing.
pub(super) fn prepare_object_raw(
    raw: &RawValue,
    head: ObjectHead,
) -> Result<StoredObject, DoubleError> {
    let created_ok = head
        .created
        .as_deref()
        .is_none_or(|c| timestamp::normalize(c).as_deref() == Some(c));
    let modified = head.modified.as_deref().unwrap_or_default();
    match timestamp::normalize(modified) {
        Some(normalized) if created_ok && normalized == modified => {
            let compact = RawValue::from_string(compact_json(raw.get()))?;
            Ok(new_object(compact, head, normalized))
        }
        _ => prepare_object_value(serde_json::from_str(raw.get())?),
    }
}

/// An object given as a value: timestamps normalized, then serialized.
pub(super) fn prepare_object_value(mut stix: Value) -> Result<StoredObject, DoubleError> {
    let map = stix
        .as_object_mut()
        .ok_or_else(|| DoubleError::InvalidObject("not a JSON object".into()))?;
    normalize_field(map, "created")?;
    if !map.contains_key("modified") {
        return Err(DoubleError::InvalidObject("modified is missing".into()));
    }
    normalize_field(map, "modified")?;
    let head: ObjectHead = serde_json::from_value(stix.clone())?;
    let modified = head.modified.clone().unwrap_or_default();
    let raw = RawValue::from_string(serde_json::to_string(&stix)?)?;
    Ok(new_object(raw, head, modified))
}

pub(super) fn normalize_field(
    map: &mut Map<String, Value>,
    field: &str,
) -> Result<(), DoubleError> {
    if let Some(value) = map.get_mut(field) {
        let text = value
            .as_str()
            .ok_or_else(|| DoubleError::InvalidObject(format!("{field} is not a string")))?;
        let normalized = timestamp::normalize(text)
            .ok_or_else(|| DoubleError::InvalidObject(format!("{field} {text:?} is not a date")))?;
        *value = Value::String(normalized);
    }
    Ok(())
}

/// A collection object from a bundle file: served as its original text when that is already how Workbench
/// would return it, with `x_mitre_deprecated: false` added when absent (a schema default).
pub(super) fn prepare_collection_raw(raw: &RawValue) -> Result<CollectionVersion, DoubleError> {
    let original: Value = serde_json::from_str(raw.get())?;
    let had_flag = original.get("x_mitre_deprecated").is_some();
    let mut collection = prepare_collection_value(original.clone())?;
    let mut expected = original;
    if let Some(map) = expected.as_object_mut() {
        map.entry("x_mitre_deprecated")
            .or_insert(Value::Bool(false));
    }
    if expected == collection.stix {
        let compact = compact_json(raw.get());
        let text = if had_flag {
            compact
        } else {
            compact.replacen('{', r#"{"x_mitre_deprecated":false,"#, 1)
        };
        collection.raw = RawValue::from_string(text)?;
    }
    Ok(collection)
}

/// A collection object given as a value: timestamps normalized (also in `x_mitre_contents`), defaults applied.
pub(super) fn prepare_collection_value(mut stix: Value) -> Result<CollectionVersion, DoubleError> {
    let map = stix
        .as_object_mut()
        .ok_or_else(|| DoubleError::InvalidObject("collection is not a JSON object".into()))?;
    let id = map
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| DoubleError::InvalidObject("collection id is missing".into()))?
        .to_owned();
    normalize_field(map, "created")?;
    if !map.contains_key("modified") {
        return Err(DoubleError::InvalidObject(
            "collection modified is missing".into(),
        ));
    }
    normalize_field(map, "modified")?;
    map.entry("x_mitre_deprecated")
        .or_insert(Value::Bool(false));
    let mut contents = Vec::new();
    if let Some(entries) = map
        .get_mut("x_mitre_contents")
        .and_then(Value::as_array_mut)
    {
        for entry in entries {
            let entry = entry.as_object_mut().ok_or_else(|| {
                DoubleError::InvalidObject("x_mitre_contents entry is not an object".into())
            })?;
            normalize_field(entry, "object_modified")?;
            let object_ref = entry.get("object_ref").and_then(Value::as_str);
            let object_modified = entry.get("object_modified").and_then(Value::as_str);
            if let (Some(id), Some(modified)) = (object_ref, object_modified) {
                contents.push(ObjectVersionKey {
                    id: id.to_owned(),
                    modified: modified.to_owned(),
                });
            }
        }
    }
    let modified = map
        .get("modified")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let raw = RawValue::from_string(serde_json::to_string(&stix)?)?;
    Ok(CollectionVersion {
        key: CollectionVersionKey { id, modified },
        stix,
        raw,
        contents,
        mongo_id: mongo_object_id(),
        workspace: CollectionWorkspace {
            imported: timestamp::now(),
            exported: Vec::new(),
            import_categories: ImportCategories::default(),
            import_references: ImportReferences::default(),
            reimports: Vec::new(),
            workflow: Workflow {
                state: "reviewed".to_owned(),
                release: true,
            },
        },
    })
}

/// Removes insignificant whitespace from JSON text without reordering keys.
pub(super) fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// A 24-hex-digit id shaped like MongoDB's ObjectId (seconds since the epoch, then random).
pub(super) fn mongo_object_id() -> String {
    let seconds = time::OffsetDateTime::now_utc().unix_timestamp();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{:08x}{}", seconds as u32, &random[..16])
}
