//! Unit tests of the Workbench double's store: versions, exports and edits.

use super::prepare::prepare_collection_value;
use super::*;
use serde_json::json;

#[test]
fn compact_json_keeps_key_order_and_string_whitespace() {
    let text = "{\n  \"b\" : 1,\n  \"a\": \"x \\\" y\\n\",\n  \"c\": [ 1, 2 ]\n}";
    assert_eq!(compact_json(text), r#"{"b":1,"a":"x \" y\n","c":[1,2]}"#);
}

#[test]
fn collection_without_deprecated_flag_gets_the_default_in_text_and_value() {
    let text = r#"{"type":"x-mitre-collection","id":"x-mitre-collection--1","created":"2020-01-01T00:00:00.000Z","modified":"2020-01-02T00:00:00.000Z","x_mitre_contents":[]}"#;
    let raw = RawValue::from_string(text.to_owned()).unwrap();
    let c = prepare_collection_raw(&raw).unwrap();
    assert!(
        c.raw
            .get()
            .starts_with(r#"{"x_mitre_deprecated":false,"type""#)
    );
    assert_eq!(c.stix["x_mitre_deprecated"], json!(false));
}

#[test]
fn collection_with_coarse_timestamps_is_served_with_milliseconds() {
    let c = prepare_collection_value(json!({
        "type": "x-mitre-collection", "id": "x-mitre-collection--1",
        "created": "2020-01-01T00:00:00Z", "modified": "2020-01-02T00:00:00.123456Z",
        "x_mitre_contents": [{"object_ref": "attack-pattern--1", "object_modified": "2020-01-01T00:00:00Z"}]
    }))
    .unwrap();
    assert_eq!(c.key.modified, "2020-01-02T00:00:00.123Z");
    assert_eq!(c.contents[0].modified, "2020-01-01T00:00:00.000Z");
    let served: Value = serde_json::from_str(c.raw.get()).unwrap();
    assert_eq!(served["created"], json!("2020-01-01T00:00:00.000Z"));
}

#[test]
fn edit_object_stores_a_later_version_and_keeps_the_old_one() {
    let mut store = Store::default();
    let first = store
        .add_object(
            json!({"type": "attack-pattern", "id": "attack-pattern--1", "name": "A",
                   "created": "2020-01-01T00:00:00.000Z", "modified": "2020-01-01T00:00:00.000Z"}),
            "reviewed",
        )
        .unwrap();
    let second = store
        .edit_object("attack-pattern--1", |v| v["name"] = json!("B"))
        .unwrap();
    assert!(second.modified > first.modified);
    assert_eq!(
        store
            .latest_object("attack-pattern--1")
            .map(|o| serde_json::from_str::<Value>(o.raw.get()).unwrap()["name"].clone()),
        Some(json!("B"))
    );
    assert_eq!(
        store
            .object("attack-pattern--1", &first.modified)
            .map(|o| serde_json::from_str::<Value>(o.raw.get()).unwrap()["name"].clone()),
        Some(json!("A"))
    );
    assert!(
        store
            .edit_object("attack-pattern--missing", |_| {})
            .is_err()
    );
}
