//! MITRE's collection index (`index.json` of attack-stix-data): every collection and every
//! release with its URL, put in release order, and what a downloaded release file must say to
//! match its entry.

use std::cmp::Ordering;

use reqwest::Url;
use serde::Deserialize;

use schemas::Timestamp;

use crate::check::MitreCollection;
use crate::plan::CollectionInfo;

/// The index as MITRE publishes it; only what a mirror needs. `collections` is required: an
/// answer without it is not an index, while an empty list is an index that lists nothing.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexDocument {
    pub collections: Vec<IndexCollection>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IndexCollection {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub versions: Vec<IndexVersion>,
}

/// One release of a collection. Only the URL is needed; what else the entry says is checked.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexVersion {
    #[serde(default)]
    pub version: Option<String>,
    pub url: String,
    #[serde(default)]
    pub modified: Option<String>,
}

/// One release the index lists, its URL resolved against the index's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRelease {
    pub collection: CollectionInfo,
    pub version: Option<String>,
    pub url: String,
    /// `modified` as written, and parsed.
    pub modified: Option<(String, Timestamp)>,
}

/// An entry of the index that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    pub url: String,
    pub reason: String,
}

impl IndexDocument {
    /// Every release listed, in release order (see [`release_order`]), and the entries that
    /// cannot be used.
    pub fn releases(&self, index_url: &Url) -> (Vec<IndexedRelease>, Vec<BadEntry>) {
        let mut releases = Vec::new();
        let mut bad = Vec::new();
        for collection in &self.collections {
            let info = CollectionInfo {
                id: collection.id.clone(),
                title: collection
                    .name
                    .clone()
                    .unwrap_or_else(|| collection.id.clone()),
                description: collection.description.clone(),
            };
            for entry in &collection.versions {
                let url = match index_url.join(&entry.url) {
                    Ok(url) => url.to_string(),
                    Err(e) => {
                        bad.push(BadEntry {
                            url: entry.url.clone(),
                            reason: format!("{}: not a URL: {e}", entry.url),
                        });
                        continue;
                    }
                };
                let modified = match entry.modified.as_deref().map(Timestamp::parse) {
                    None => None,
                    Some(Ok(ts)) => entry.modified.clone().map(|text| (text, ts)),
                    Some(Err(e)) => {
                        bad.push(BadEntry {
                            reason: format!("{url}: the index gives an unreadable modified: {e}"),
                            url,
                        });
                        continue;
                    }
                };
                releases.push(IndexedRelease {
                    collection: info.clone(),
                    version: entry.version.clone(),
                    url,
                    modified,
                });
            }
        }
        releases.sort_by(release_order);
        (releases, bad)
    }
}

/// Release order: by version compared number by number ("9.0" < "17.1" < "18.0", "11.2-beta"
/// < "11.3"), then by `modified`, then by collection, so that each collection's releases reach
/// the topic oldest first whatever order the index lists them in (MITRE's lists newest first).
pub fn release_order(a: &IndexedRelease, b: &IndexedRelease) -> Ordering {
    let key = |r: &IndexedRelease| r.version.as_deref().map(version_key).unwrap_or_default();
    key(a)
        .cmp(&key(b))
        .then_with(|| {
            let ts = |r: &IndexedRelease| r.modified.as_ref().map(|(_, ts)| *ts);
            ts(a).cmp(&ts(b))
        })
        .then_with(|| a.collection.id.cmp(&b.collection.id))
        .then_with(|| a.url.cmp(&b.url))
}

/// "11.2-beta" → [(11, ""), (2, "-beta")]: each dot-separated part as its leading number and
/// the rest.
fn version_key(version: &str) -> Vec<(u64, String)> {
    version
        .split('.')
        .map(|part| {
            let digits = part.len() - part.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let number = part[..digits].parse().unwrap_or(u64::MAX);
            (number, part[digits..].to_owned())
        })
        .collect()
}

impl IndexedRelease {
    /// Checks the file's `x-mitre-collection` object, when it has one, against what the
    /// index says of it: the collection id, and the version and `modified` where the index
    /// gives them. The reason names the URL.
    pub fn verify(&self, found: Option<&MitreCollection>) -> Result<(), String> {
        let Some(found) = found else {
            return Ok(());
        };
        let mismatch = |what: &str, file: &str, index: &str| {
            Err(format!(
                "{}: the file's x-mitre-collection has {what} {file}, the index says {index}; \
                 nothing of it is published",
                self.url
            ))
        };
        if found.id != self.collection.id {
            return mismatch("id", &found.id, &self.collection.id);
        }
        if let Some(version) = &self.version
            && found.x_mitre_version.as_ref() != Some(version)
        {
            let file = found.x_mitre_version.as_deref().unwrap_or("(none)");
            return mismatch("x_mitre_version", file, version);
        }
        if let Some((text, ts)) = &self.modified {
            let file = found.modified.as_deref().unwrap_or("(none)");
            if Timestamp::parse(file).ok() != Some(*ts) {
                return mismatch("modified", file, text);
            }
        }
        Ok(())
    }

    /// The release label for a file without an `x-mitre-collection` object, which only the
    /// index can name: its version, else its `modified`.
    pub fn label(&self) -> Option<String> {
        self.version
            .clone()
            .or_else(|| self.modified.as_ref().map(|(text, _)| text.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"id":"10296991-439b-4202-90a3-e38812613ad4","name":"MITRE ATT&CK",
        "collections":[
          {"id":"x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09","name":"ICS ATT&CK","description":"ICS",
           "created":"2020-10-27T14:49:39.188Z","versions":[
             {"version":"18.1","url":"https://example.org/ics-attack/ics-attack-18.1.json","modified":"2025-11-13T14:00:00.188Z"},
             {"version":"9.0","url":"ics-attack/ics-attack-9.0.json","modified":"2021-04-29T14:49:39.188Z"},
             {"version":"17.1","url":"/ics-attack-17.1.json","modified":"2025-05-06T14:00:00.188Z"}]},
          {"id":"x-mitre-collection--dac0d2d7-8653-445c-9bff-82f934c1e858","versions":[
             {"version":"11.3","url":"m-11.3.json","modified":"2022-10-25T14:00:00.188Z"},
             {"version":"11.2-beta","url":"m-11.2.json","modified":"2022-05-24T14:00:00.188Z"},
             {"version":"2.0","url":"m-bad.json","modified":"last tuesday"}]}]}"#;

    fn parsed() -> (Vec<IndexedRelease>, Vec<BadEntry>) {
        let doc: IndexDocument = serde_json::from_str(INDEX).unwrap();
        doc.releases(&Url::parse("http://mirror:8080/attack/index.json").unwrap())
    }

    #[test]
    fn releases_come_in_numeric_version_order_whatever_the_index_order() {
        let (releases, _) = parsed();
        let order: Vec<&str> = releases
            .iter()
            .map(|r| r.version.as_deref().unwrap())
            .collect();
        assert_eq!(order, ["9.0", "11.2-beta", "11.3", "17.1", "18.1"]);
    }

    #[test]
    fn urls_resolve_against_the_index_and_bad_entries_are_set_aside_by_url() {
        let (releases, bad) = parsed();
        let url = |v: &str| {
            releases
                .iter()
                .find(|r| r.version.as_deref() == Some(v))
                .unwrap()
                .url
                .clone()
        };
        assert_eq!(
            url("18.1"),
            "https://example.org/ics-attack/ics-attack-18.1.json"
        );
        assert_eq!(
            url("9.0"),
            "http://mirror:8080/attack/ics-attack/ics-attack-9.0.json"
        );
        assert_eq!(url("17.1"), "http://mirror:8080/ics-attack-17.1.json");
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0]
                .reason
                .contains("http://mirror:8080/attack/m-bad.json"),
            "{bad:?}"
        );
        // A collection without a name is titled by its id.
        let mobile = releases
            .iter()
            .find(|r| r.version.as_deref() == Some("11.3"))
            .unwrap();
        assert_eq!(mobile.collection.title, mobile.collection.id);
    }

    #[test]
    fn an_answer_without_collections_is_not_an_index_but_an_empty_list_is() {
        assert!(serde_json::from_str::<IndexDocument>(r#"{"objects":[]}"#).is_err());
        let empty: IndexDocument = serde_json::from_str(r#"{"collections":[]}"#).unwrap();
        assert!(
            empty
                .releases(&Url::parse("http://x/").unwrap())
                .0
                .is_empty()
        );
    }

    fn collection(id: &str, version: Option<&str>, modified: Option<&str>) -> MitreCollection {
        serde_json::from_value(serde_json::json!({
            "id": id, "x_mitre_version": version, "modified": modified,
        }))
        .unwrap()
    }

    #[test]
    fn a_file_must_be_the_collection_version_and_modified_the_index_says() {
        let (releases, _) = parsed();
        let ics = releases
            .iter()
            .find(|r| r.version.as_deref() == Some("18.1"))
            .unwrap();
        let id = ics.collection.id.as_str();
        let modified = "2025-11-13T14:00:00.188Z";
        assert_eq!(
            ics.verify(Some(&collection(id, Some("18.1"), Some(modified)))),
            Ok(())
        );
        // Same instant written with more digits is the same modified.
        let longer = collection(id, Some("18.1"), Some("2025-11-13T14:00:00.188000Z"));
        assert_eq!(ics.verify(Some(&longer)), Ok(()));
        assert_eq!(ics.verify(None), Ok(()), "nothing to compare");
        for (wrong, what) in [
            (
                collection("x-mitre-collection--other", Some("18.1"), Some(modified)),
                "id",
            ),
            (
                collection(id, Some("18.0"), Some(modified)),
                "x_mitre_version 18.0",
            ),
            (
                collection(id, None, Some(modified)),
                "x_mitre_version (none)",
            ),
            (
                collection(id, Some("18.1"), Some("2025-10-28T14:00:00.188Z")),
                "modified",
            ),
        ] {
            let reason = ics.verify(Some(&wrong)).unwrap_err();
            assert!(reason.starts_with(&ics.url), "{reason}");
            assert!(reason.contains(what), "{what}: {reason}");
        }
    }

    #[test]
    fn labels_come_from_the_version_else_the_modified() {
        let (releases, _) = parsed();
        let mut release = releases[0].clone();
        assert_eq!(release.label().as_deref(), Some("9.0"));
        release.version = None;
        assert_eq!(release.label().as_deref(), Some("2021-04-29T14:49:39.188Z"));
        release.modified = None;
        assert_eq!(release.label(), None);
    }
}
