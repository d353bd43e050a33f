//! Checking a bundle, whole, on a blocking thread: every object valid STIX with its content
//! digest, the invalid ones set aside with the reason, and what its ATT&CK collection object says.

use std::collections::HashSet;
use std::ops::Range;

use serde::Deserialize;

use schemas::{StixObjectMeta, Timestamp};

use crate::bundle::{Bundle, Input};
use crate::error::Error;

/// The STIX type of an ATT&CK collection object.
pub const COLLECTION_TYPE: &str = "x-mitre-collection";

/// A bundle and the outcome of checking each of its objects.
#[derive(Debug)]
pub struct CheckedBundle {
    pub bundle: Bundle,
    /// The valid objects, in bundle order.
    pub objects: Vec<CheckedObject>,
    /// The invalid ones, in bundle order.
    pub rejected: Vec<Rejected>,
    /// The first valid `x-mitre-collection` object.
    pub collection: Option<MitreCollection>,
    /// How that object's `x_mitre_contents` compares with the bundle's objects.
    pub contents: Option<ContentsCheck>,
}

/// One object that passed the checks.
#[derive(Debug)]
pub struct CheckedObject {
    pub meta: StixObjectMeta,
    /// Where the object's JSON text is in the bundle text.
    pub range: Range<usize>,
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

/// Reads the bundle and checks it, both on a blocking thread: parsing and validating a large
/// bundle is CPU work of a fraction of a second.
pub async fn check_bundle(input: Input) -> Result<CheckedBundle, Error> {
    tokio::task::spawn_blocking(move || Bundle::load(input).map(check_all))
        .await
        .map_err(|e| Error::KafkaState(format!("bundle checking task failed: {e}")))?
}

/// Checks every object of `bundle`.
fn check_all(bundle: Bundle) -> CheckedBundle {
    let spec_version = bundle.spec_version.as_deref();
    let mut objects = Vec::with_capacity(bundle.objects.len());
    let mut rejected = Vec::new();
    let mut collection = None;
    for (position, range) in bundle.objects.iter().enumerate() {
        let text = &bundle.text[range.clone()];
        match check(text, range.clone(), position as i64, spec_version) {
            Checked::Valid(object, mitre) => {
                if collection.is_none() {
                    collection = mitre.map(|m| *m);
                }
                objects.push(object);
            }
            Checked::Rejected(r) => rejected.push(r),
        }
    }
    let contents = collection.as_ref().map(|c| check_contents(c, &objects));
    CheckedBundle {
        bundle,
        objects,
        rejected,
        collection,
        contents,
    }
}

/// The outcome of checking one object.
enum Checked {
    /// Valid; for an `x-mitre-collection` object, what it says.
    Valid(CheckedObject, Option<Box<MitreCollection>>),
    Rejected(Rejected),
}

/// Checks one object of a bundle: valid STIX (with its content digest), and for a collection
/// object what it says.
fn check(text: &str, range: Range<usize>, position: i64, spec_version: Option<&str>) -> Checked {
    match check_object(text, spec_version) {
        Ok(meta) => {
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
                CheckedObject {
                    meta,
                    range,
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

/// Checks one object's JSON text: valid STIX (with the bundle's `spec_version`, if any), or the
/// reason it is not.
pub fn check_object(text: &str, spec_version: Option<&str>) -> Result<StixObjectMeta, String> {
    schemas::validate_object(text, spec_version).map_err(|e| e.reason)
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

/// Compares `x_mitre_contents` with the objects, leaving out what ATT&CK never lists: the
/// collection object itself and marking definitions.
fn check_contents(collection: &MitreCollection, objects: &[CheckedObject]) -> ContentsCheck {
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
    let present: Vec<&CheckedObject> = objects
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

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str) -> CheckedBundle {
        check_all(
            Bundle::load(Input::Received {
                name: "t.json".to_owned(),
                bytes: text.into(),
                max_bytes: 1 << 20,
            })
            .unwrap(),
        )
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
        let c = checked(BUNDLE);
        assert_eq!(c.objects.len(), 4);
        let positions: Vec<_> = c.objects.iter().map(|o| o.position).collect();
        assert_eq!(positions, [0, 1, 2, 5]);
        let rejected: Vec<_> = c
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
            c.rejected[0].reason.contains("id"),
            "{}",
            c.rejected[0].reason
        );
        assert!(
            c.rejected[1].reason.contains("modified"),
            "{}",
            c.rejected[1].reason
        );
        // The remembered ranges are the objects' exact text.
        let text = &c.bundle.text[c.rejected[0].range.clone()];
        assert!(
            text.starts_with('{') && text.ends_with('}') && text.contains("attack-pattern--bad")
        );
    }

    #[test]
    fn the_collection_object_names_the_collection_and_release() {
        let c = checked(BUNDLE);
        let collection = c.collection.as_ref().unwrap();
        assert_eq!(collection.x_mitre_version.as_deref(), Some("18.1"));
        assert_eq!(collection.x_mitre_contents.len(), 2);
    }

    #[test]
    fn the_collection_object_is_found_wherever_it_is() {
        let tool = |i: usize| {
            format!(
                r#"{{"type":"tool","spec_version":"2.1","id":"tool--00000000-0000-4000-8000-{i:012}","created":"2020-01-01T00:00:00.000Z","modified":"2021-01-01T00:00:00.000Z"}}"#
            )
        };
        let collection = r#"{"type":"x-mitre-collection","spec_version":"2.1","id":"x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09","created":"2020-10-27T14:49:39.188Z","modified":"2025-11-13T14:00:00.188Z","name":"ICS ATT&CK","x_mitre_version":"18.1"}"#;
        for at in [0, 5, 2000] {
            let mut items: Vec<String> = (0..2010).map(tool).collect();
            items[at] = collection.to_owned();
            let text = format!(
                r#"{{"type":"bundle","id":"bundle--1","objects":[{}]}}"#,
                items.join(",\n")
            );
            let c = checked(&text);
            assert_eq!(c.objects.len(), 2010);
            assert_eq!(
                c.collection
                    .as_ref()
                    .and_then(|c| c.x_mitre_version.as_deref()),
                Some("18.1"),
                "collection at {at}"
            );
        }
    }

    #[test]
    fn contents_check_leaves_out_the_collection_and_marking_definitions() {
        let check = checked(BUNDLE).contents.unwrap();
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

    #[tokio::test]
    async fn a_file_that_is_not_a_bundle_is_an_error_and_checks_nothing() {
        let result = check_bundle(Input::Received {
            name: "t.json".to_owned(),
            bytes: br#"{"type":"indicator"}"#.to_vec(),
            max_bytes: 1 << 20,
        })
        .await;
        assert!(
            matches!(result, Err(Error::NotABundle { .. })),
            "{result:?}"
        );
    }
}
