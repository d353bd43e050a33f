//! `ingest import --attack-domain`: MITRE's STIX 2.0 files, which have no `x-mitre-collection`
//! object, imported as MITRE's collections; the shipped domain table checked against MITRE's
//! own collection objects and index.

use std::collections::BTreeSet;
use std::io::Write;

use ingest::attack_domain::{ATTACK_DOMAINS, AttackDomain, DomainChoice};
use ingest::config::ImportConfig;
use schemas::Event;
use serde_json::Value;
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::pipeline::Topics;
use tokio_util::sync::CancellationToken;

/// The STIX 2.1 files every data directory has, each with its collection object.
const FILES_21: [&str; 5] = [
    "ics-attack-17.1.json.zst",
    "ics-attack-18.0.json.zst",
    "ics-attack-18.1.json.zst",
    "mobile-attack-17.0.json.zst",
    "mobile-attack-17.1.json.zst",
];

/// The domain a MITRE file name starts with (`ics-attack-18.1.json.zst` → `ics-attack`).
fn domain_in_name(name: &str) -> &'static AttackDomain {
    let name = name.rsplit('/').next().unwrap();
    let (domain, _) = name.split_once("-attack-").unwrap();
    AttackDomain::named(&format!("{domain}-attack")).unwrap()
}

fn assert_describes(domain: &AttackDomain, collection: &Value, source: &str) {
    assert_eq!(collection["id"], domain.collection_id, "{source}");
    assert_eq!(collection["name"], domain.title, "{source}");
    assert_eq!(collection["description"], domain.description, "{source}");
}

#[test]
fn the_shipped_domain_table_is_mitres_collection_ids_titles_and_descriptions() {
    let mut checked = BTreeSet::new();
    for name in FILES_21 {
        let release = Release::load(name).unwrap();
        let domain = domain_in_name(name);
        assert_describes(domain, release.collection().unwrap(), name);
        checked.insert(domain.domain);
    }
    // Enterprise has no STIX 2.1 file here; MITRE's index describes all three.
    if let Some(path) = fixtures::shared_only("index.json") {
        let index: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let collections = index["collections"].as_array().unwrap();
        assert_eq!(collections.len(), ATTACK_DOMAINS.len());
        for collection in collections {
            let url = collection["versions"][0]["url"].as_str().unwrap();
            let domain = domain_in_name(url);
            assert_describes(domain, collection, url);
            checked.insert(domain.domain);
        }
        assert_eq!(checked.len(), ATTACK_DOMAINS.len(), "{checked:?}");
    }
}

#[tokio::test]
async fn a_stix_2_0_file_imports_as_mitres_collection_with_the_release_its_name_gives() {
    let Some(path) = fixtures::shared_only("stix-2.0/ics-attack-18.1.json.zst") else {
        return;
    };
    let file = Release::load("stix-2.0/ics-attack-18.1.json.zst").unwrap();
    // What MITRE's STIX 2.1 file of the same release says its collection is.
    let same_in_21 = Release::load("ics-attack-18.1.json.zst").unwrap();
    let collection = same_in_21.collection().unwrap();
    assert!(file.collection().is_none(), "the STIX 2.0 file has none");

    let topics = Topics::new("import_domain");
    let path = path.display().to_string();
    let outcome = topics
        .ingest(ImportConfig::new([&path]).attack_domain(DomainChoice::Auto))
        .await
        .unwrap();
    assert_eq!(outcome, ingest::Outcome::Complete);

    let events = topics.events().await.unwrap();
    let ids: BTreeSet<&str> = events.iter().map(|(_, e)| e.collection_id()).collect();
    assert_eq!(ids, BTreeSet::from([collection["id"].as_str().unwrap()]));
    let upserted = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Collection(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(upserted.title, collection["name"].as_str().unwrap());
    assert_eq!(
        upserted.description.as_deref(),
        collection["description"].as_str()
    );
    let mut labels = BTreeSet::new();
    let mut members = BTreeSet::new();
    for (_, e) in &events {
        if let Event::Release(r) = e {
            labels.insert(r.label.clone());
            members.extend(
                r.members
                    .iter()
                    .map(|m| (m.object_id.clone(), m.version.clone())),
            );
        }
    }
    assert_eq!(
        labels,
        BTreeSet::from([collection["x_mitre_version"].as_str().unwrap().to_owned()])
    );
    assert_eq!(members, file.versions());
}

#[tokio::test]
async fn a_bundle_of_two_domains_is_refused_naming_the_file_and_publishes_nothing() {
    // Objects of one domain only from each of two releases: together, no domain is shared.
    let only = |name: &str, domain: &str| -> Vec<Value> {
        Release::load(name)
            .unwrap()
            .objects
            .into_iter()
            .filter(|o| o["x_mitre_domains"] == serde_json::json!([domain]))
            .take(3)
            .collect()
    };
    let mut objects = only("ics-attack-18.1.json.zst", "ics-attack");
    objects.extend(only("mobile-attack-17.1.json.zst", "mobile-attack"));
    assert_eq!(objects.len(), 6);
    let dir = tempfile::Builder::new()
        .prefix("taxiway-test-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("ics-attack-18.1.json");
    let bundle = serde_json::json!({"type": "bundle", "id": "bundle--0e7a0000-0000-4000-8000-000000000001", "objects": objects});
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bundle.to_string().as_bytes())
        .unwrap();

    let topics = Topics::new("import_mixed");
    let path = path.display().to_string();
    let settings = topics.settings(ImportConfig::new([&path]).attack_domain(DomainChoice::Auto));
    let summary = ingest::run(settings, CancellationToken::new())
        .await
        .unwrap();
    let text = summary.to_string();
    assert_eq!(summary.outcome(), ingest::Outcome::InputsFailed, "{text}");
    assert!(text.contains(&path), "{text}");
    assert!(text.contains("more than one ATT&CK domain"), "{text}");
    assert!(topics.events().await.unwrap().is_empty());
}
