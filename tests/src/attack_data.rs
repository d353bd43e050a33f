//! The real ATT&CK releases in `../shared/attack-data/`, read independently of the code under
//! test so that expected values come from the files, not from Taxiway.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

/// Where the releases are: `TAXIWAY_ATTACK_DATA`, else `../shared/attack-data` beside the repo.
pub fn data_dir() -> PathBuf {
    std::env::var_os("TAXIWAY_ATTACK_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/attack-data")
        })
}

/// The path of one release file, e.g. `ics-attack-18.1.json.zst`.
pub fn path(name: &str) -> PathBuf {
    data_dir().join(name)
}

/// A bundle file parsed with serde_json: its `objects`, in file order.
pub struct Release {
    pub name: String,
    pub objects: Vec<Value>,
}

impl Release {
    pub fn load(name: &str) -> anyhow::Result<Release> {
        let path = path(name);
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (set TAXIWAY_ATTACK_DATA)", path.display()))?;
        let text = zstd::decode_all(bytes.as_slice())?;
        let bundle: Value = serde_json::from_slice(&text)?;
        let objects = bundle
            .get("objects")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{name}: no objects array"))?;
        Ok(Release {
            name: name.to_owned(),
            objects,
        })
    }

    /// The first object of this STIX type.
    pub fn first_of_type(&self, stix_type: &str) -> Option<&Value> {
        self.objects.iter().find(|o| o["type"] == stix_type)
    }

    /// The id of the first object of this STIX type; panics when there is none (test data).
    pub fn first_id_of_type(&self, stix_type: &str) -> String {
        id_of(
            self.first_of_type(stix_type)
                .unwrap_or_else(|| panic!("{}: no {stix_type} object", self.name)),
        )
    }

    /// The `x-mitre-collection` object.
    pub fn collection(&self) -> Option<&Value> {
        self.first_of_type("x-mitre-collection")
    }

    pub fn collection_id(&self) -> String {
        self.collection()
            .and_then(|c| c["id"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// (id, version) of every object: version = `modified`, else `created` — ATT&CK writes
    /// every timestamp with exactly 3 fraction digits, so the text is already canonical.
    pub fn versions(&self) -> BTreeSet<(String, String)> {
        self.by_version().into_keys().collect()
    }

    /// Each object by (id, version).
    pub fn by_version(&self) -> BTreeMap<(String, String), &Value> {
        self.objects
            .iter()
            .map(|o| ((id_of(o), version_of(o)), o))
            .collect()
    }
}

pub fn id_of(object: &Value) -> String {
    object["id"].as_str().unwrap_or_default().to_owned()
}

pub fn version_of(object: &Value) -> String {
    object
        .get("modified")
        .or_else(|| object.get("created"))
        .and_then(Value::as_str)
        .unwrap_or("1970-01-01T00:00:00.000Z")
        .to_owned()
}
