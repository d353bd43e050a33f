//! What changed in a collection between two of its releases, from the release memberships and
//! the object contents a snapshot holds: the answer to "what changed?" that ATT&CK users
//! otherwise compute by diffing bundles.
//!
//! Per object, with the version each release has of it: added (only in `to`), removed (only in
//! `from`), a new version (another `modified`), re-issued (the same `modified` with other
//! content, as MITRE sometimes publishes), and, across those, newly deprecated
//! (`x_mitre_deprecated`) and newly revoked (`revoked`). Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::snapshot::{Release, Snapshot, format_micros};

/// Types whose changed fields are listed for a new version: techniques, groups, software.
const FIELD_TYPES: [&str; 4] = ["attack-pattern", "intrusion-set", "malware", "tool"];

/// One changed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub id: String,
    /// The ATT&CK id (`T1001`, `G0007`), when the object has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `modified` in `from`, then in `to` (one of them alone for added and removed objects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
    /// Top-level properties that differ: for new versions of techniques, groups and software,
    /// and for every re-issued object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Changes of one kind, grouped by STIX type.
pub type ByType = BTreeMap<String, Vec<Change>>;

/// Everything that changed between two releases of one collection.
#[derive(Debug, Default, Serialize)]
pub struct Changes {
    pub added: ByType,
    pub removed: ByType,
    pub new_version: ByType,
    pub reissued: ByType,
    pub deprecated: ByType,
    pub revoked: ByType,
}

impl Changes {
    /// The number of objects of each kind, by kind name.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let count = |m: &ByType| m.values().map(Vec::len).sum();
        BTreeMap::from([
            ("added", count(&self.added)),
            ("removed", count(&self.removed)),
            ("new_version", count(&self.new_version)),
            ("reissued", count(&self.reissued)),
            ("deprecated", count(&self.deprecated)),
            ("revoked", count(&self.revoked)),
        ])
    }
}

/// Why changes could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    /// A member's JSON is not held (a lean snapshot) or not an object.
    #[error("the content of {0} is not available")]
    Content(String),
}

/// The changes from release `from` to release `to` of `snapshot`.
pub fn between(snapshot: &Snapshot, from: &Release, to: &Release) -> Result<Changes, ChangesError> {
    let mut changes = Changes::default();
    for object in &snapshot.objects {
        let range = object.first..object.first + object.count;
        let before = range.clone().find(|&v| from.members.contains(v));
        let after = range.clone().find(|&v| to.members.contains(v));
        let stix_type = object.stix_type.to_string();
        let json = |v: u32| content(snapshot, v);
        let version = |v: u32| snapshot.versions[v as usize].version_text.to_string();
        match (before, after) {
            (None, None) => {}
            (None, Some(a)) => {
                let now = json(a)?;
                let mut change = describe(&object.id, &now);
                change.to_version = Some(version(a));
                push(&mut changes.added, &stix_type, change);
            }
            (Some(b), None) => {
                let then = json(b)?;
                let mut change = describe(&object.id, &then);
                change.from_version = Some(version(b));
                push(&mut changes.removed, &stix_type, change);
            }
            (Some(b), Some(a)) if b == a => {}
            (Some(b), Some(a)) => {
                let (then, now) = (json(b)?, json(a)?);
                let same_version =
                    snapshot.versions[b as usize].version == snapshot.versions[a as usize].version;
                if same_version && then == now {
                    continue;
                }
                let mut change = describe(&object.id, &now);
                change.from_version = Some(version(b));
                change.to_version = Some(version(a));
                for (flag, list) in [
                    ("x_mitre_deprecated", &mut changes.deprecated),
                    ("revoked", &mut changes.revoked),
                ] {
                    if is_true(&now, flag) && !is_true(&then, flag) {
                        push(list, &stix_type, change.clone());
                    }
                }
                if same_version || FIELD_TYPES.contains(&&*object.stix_type) {
                    change.fields = differing(&then, &now);
                }
                let kind = if same_version {
                    &mut changes.reissued
                } else {
                    &mut changes.new_version
                };
                push(kind, &stix_type, change);
            }
        }
    }
    Ok(changes)
}

fn push(map: &mut ByType, stix_type: &str, change: Change) {
    map.entry(stix_type.to_owned()).or_default().push(change);
}

/// The object JSON of one entry, parsed.
fn content(snapshot: &Snapshot, version: u32) -> Result<Map<String, Value>, ChangesError> {
    let entry = &snapshot.versions[version as usize];
    let id = || snapshot.objects[entry.object as usize].id.to_string();
    match serde_json::from_slice::<Value>(&entry.json) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ChangesError::Content(id())),
    }
}

fn is_true(object: &Map<String, Value>, key: &str) -> bool {
    object.get(key) == Some(&Value::Bool(true))
}

/// Id, ATT&CK id and name of an object.
fn describe(id: &str, object: &Map<String, Value>) -> Change {
    let attack_id = object
        .get("external_references")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|r| {
            r["source_name"]
                .as_str()
                .is_some_and(|s| s.starts_with("mitre-"))
                && r["external_id"].is_string()
        })
        .and_then(|r| r["external_id"].as_str())
        .map(str::to_owned);
    Change {
        id: id.to_owned(),
        attack_id,
        name: object
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        from_version: None,
        to_version: None,
        fields: Vec::new(),
    }
}

/// Top-level keys whose values differ, sorted.
fn differing(then: &Map<String, Value>, now: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = then
        .keys()
        .chain(now.keys())
        .filter(|k| then.get(*k) != now.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A release's label and date, as the changes document names it.
pub fn release_json(release: &Release) -> Value {
    serde_json::json!({
        "label": release.label,
        "date": format_micros(release.timestamp),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::{CollectionData, ReleaseRow, VersionRow};

    fn row(id: &str, version: i64, json: Value, content: Option<[u8; 32]>) -> VersionRow {
        VersionRow {
            object_id: id.into(),
            version,
            version_text: version.to_string(),
            stix_type: id.split("--").next().unwrap_or_default().into(),
            spec_version: "2.1".into(),
            date_added: version * 10 + i64::from(content.is_some()),
            object_json: Bytes::from(json.to_string()),
            content,
        }
    }

    #[test]
    fn each_kind_of_change_is_told_apart() {
        let technique = |modified: i64, description: &str, deprecated: bool| {
            serde_json::json!({"id": "attack-pattern--t", "name": "Drive-by", "modified": modified,
                "description": description, "x_mitre_deprecated": deprecated,
                "external_references": [{"source_name": "mitre-attack", "external_id": "T1189"}]})
        };
        let old_rel = serde_json::json!({"id": "relationship--r", "x_mitre_deprecated": false});
        let new_rel = serde_json::json!({"id": "relationship--r", "x_mitre_deprecated": true});
        let gone = serde_json::json!({"id": "tool--gone", "name": "Gone"});
        let new = serde_json::json!({"id": "malware--new", "name": "New"});
        let same = serde_json::json!({"id": "identity--same"});
        let snapshot = Snapshot::build(CollectionData {
            versions: vec![
                row("attack-pattern--t", 1, technique(1, "a", false), None),
                row("attack-pattern--t", 2, technique(2, "b", true), None),
                row("relationship--r", 1, old_rel, Some([7; 32])),
                row("relationship--r", 1, new_rel, None),
                row("tool--gone", 1, gone, None),
                row("malware--new", 1, new, None),
                row("identity--same", 1, same, None),
            ],
            releases: vec![
                ReleaseRow {
                    release_timestamp: 1,
                    label: "1.0".into(),
                    complete: true,
                    members: vec![
                        ("attack-pattern--t".into(), 1, None),
                        ("relationship--r".into(), 1, Some([7; 32])),
                        ("tool--gone".into(), 1, None),
                        ("identity--same".into(), 1, None),
                    ],
                },
                ReleaseRow {
                    release_timestamp: 2,
                    label: "2.0".into(),
                    complete: true,
                    members: vec![
                        ("attack-pattern--t".into(), 2, None),
                        ("relationship--r".into(), 1, None),
                        ("malware--new".into(), 1, None),
                        ("identity--same".into(), 1, None),
                    ],
                },
            ],
            ..Default::default()
        });
        let (to, from) = (&snapshot.releases[0], &snapshot.releases[1]);
        let c = between(&snapshot, from, to).unwrap();
        let ids =
            |m: &ByType| -> Vec<String> { m.values().flatten().map(|c| c.id.clone()).collect() };
        assert_eq!(ids(&c.added), ["malware--new"]);
        assert_eq!(ids(&c.removed), ["tool--gone"]);
        assert_eq!(ids(&c.new_version), ["attack-pattern--t"]);
        assert_eq!(ids(&c.reissued), ["relationship--r"]);
        assert_eq!(ids(&c.deprecated), ["attack-pattern--t", "relationship--r"]);
        assert!(c.revoked.is_empty());
        let t = &c.new_version["attack-pattern"][0];
        assert_eq!(t.attack_id.as_deref(), Some("T1189"));
        assert_eq!(t.name.as_deref(), Some("Drive-by"));
        assert_eq!(t.fields, ["description", "modified", "x_mitre_deprecated"]);
        assert_eq!(c.reissued["relationship"][0].fields, ["x_mitre_deprecated"]);
        // Nothing changes between a release and itself.
        assert!(
            between(&snapshot, to, to)
                .unwrap()
                .counts()
                .values()
                .all(|n| *n == 0)
        );
    }
}
