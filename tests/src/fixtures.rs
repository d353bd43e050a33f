//! The one place the suites and benches find their test data: the real ATT&CK releases, read
//! independently of the code under test so that expected values come from the files, not from Taxiway.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The environment variable that names the data directory explicitly.
pub const DATA_ENV: &str = "TAXIWAY_ATTACK_DATA";

/// The directory of the releases: `TAXIWAY_ATTACK_DATA` if set, else `../shared/attack-data`
/// beside the repository if it exists (it adds the STIX 2.0 releases under `stix-2.0/`), else
/// the five STIX 2.1 releases shipped in `data/attack/`, so a fresh clone runs every suite.
pub fn data_dir() -> PathBuf {
    resolve(std::env::var_os(DATA_ENV), &repo_root())
}

/// The repository's root directory (the parent of this crate's).
pub fn repo_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.parent().unwrap_or(crate_dir).to_path_buf()
}

/// The resolution order of [`data_dir`], for a given environment value and repository root.
fn resolve(explicit: Option<OsString>, repo: &Path) -> PathBuf {
    if let Some(dir) = explicit.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let shared = repo.join("../shared/attack-data");
    if shared.is_dir() {
        shared
    } else {
        repo.join("data/attack")
    }
}

/// The five releases shipped in `data/attack/` (so every data directory has them), in release
/// order: ICS, then Mobile.
pub const SHIPPED_RELEASES: [&str; 5] = [
    "ics-attack-17.1.json.zst",
    "ics-attack-18.0.json.zst",
    "ics-attack-18.1.json.zst",
    "mobile-attack-17.0.json.zst",
    "mobile-attack-17.1.json.zst",
];

/// The path of one release file, e.g. `ics-attack-18.1.json.zst`.
pub fn path(name: &str) -> PathBuf {
    data_dir().join(name)
}

/// The path of a file that only the shared data has (e.g. `stix-2.0/enterprise-attack-18.1.json.zst`),
/// or `None` after printing why whoever needs it is skipped: a fresh clone ships only the five
/// STIX 2.1 releases.
pub fn shared_only(name: &str) -> Option<PathBuf> {
    let path = path(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; it is only in ../shared/attack-data (or set {DATA_ENV})",
            path.display()
        );
        None
    }
}

/// A bundle as the code under test reads it: its `spec_version`, and its objects' JSON texts
/// in file order.
pub type Bundle = (Option<String>, Vec<String>);

/// One of the releases, e.g. `ics-attack-18.1.json.zst`, as a [`Bundle`]; panics, naming the
/// file, when it cannot be read (test data).
pub fn attack_bundle(name: &str) -> Bundle {
    read_bundle(&path(name))
}

/// ICS 18.1 as a STIX 2.0 bundle: MITRE's own 2.0 export when the data has it (the shipped
/// data does not), else the 2.1 bundle turned into one the way the 2.0 export differs from it:
/// `spec_version` on the bundle, none on the objects.
pub fn ics_stix_2_0() -> Bundle {
    let export = path("stix-2.0/ics-attack-18.1.json.zst");
    if export.is_file() {
        return read_bundle(&export);
    }
    let (_, objects) = attack_bundle("ics-attack-18.1.json.zst");
    let objects = objects
        .iter()
        .map(|raw| {
            let mut object: serde_json::Map<String, Value> = serde_json::from_str(raw)
                .unwrap_or_else(|e| panic!("ics-attack-18.1.json.zst: {e}: {raw}"));
            object.remove("spec_version");
            Value::Object(object).to_string()
        })
        .collect();
    (Some("2.0".to_owned()), objects)
}

fn read_bundle(path: &Path) -> Bundle {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        spec_version: Option<String>,
        #[serde(borrow)]
        objects: Vec<&'a serde_json::value::RawValue>,
    }
    let read = || -> anyhow::Result<Bundle> {
        let text = String::from_utf8(zstd::decode_all(std::fs::File::open(path)?)?)?;
        let bundle: Envelope<'_> = serde_json::from_str(&text)?;
        Ok((
            bundle.spec_version,
            bundle.objects.iter().map(|o| o.get().to_owned()).collect(),
        ))
    };
    read().unwrap_or_else(|e| panic!("{}: {e} (set {DATA_ENV})", path.display()))
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
            .map_err(|e| anyhow::anyhow!("{}: {e} (set {DATA_ENV})", path.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: [&str; 5] = [
        "ics-attack-17.1.json.zst",
        "ics-attack-18.0.json.zst",
        "ics-attack-18.1.json.zst",
        "mobile-attack-17.0.json.zst",
        "mobile-attack-17.1.json.zst",
    ];

    #[test]
    fn the_variable_wins_over_everything() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("taxiway");
        std::fs::create_dir_all(root.path().join("shared/attack-data")).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        let chosen = resolve(Some("/elsewhere".into()), &repo);
        assert_eq!(chosen, PathBuf::from("/elsewhere"));
    }

    #[test]
    fn shared_data_beside_the_repository_comes_next() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("taxiway");
        std::fs::create_dir_all(root.path().join("shared/attack-data")).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        assert_eq!(
            resolve(None, &repo),
            repo.join("../shared/attack-data"),
            "an empty variable counts as unset too: {:?}",
            resolve(Some(OsString::new()), &repo)
        );
        assert_eq!(resolve(Some(OsString::new()), &repo), resolve(None, &repo));
    }

    #[test]
    fn a_fresh_clone_falls_back_to_the_shipped_releases() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("taxiway");
        std::fs::create_dir_all(&repo).unwrap();
        assert_eq!(resolve(None, &repo), repo.join("data/attack"));
        // and those are really there, each one a bundle with objects
        let shipped = repo_root().join("data/attack");
        for name in SHIPPED {
            let bytes = std::fs::read(shipped.join(name)).unwrap();
            let bundle: Value =
                serde_json::from_slice(&zstd::decode_all(bytes.as_slice()).unwrap()).unwrap();
            assert!(
                bundle["objects"].as_array().is_some_and(|o| !o.is_empty()),
                "{name}"
            );
        }
    }

    #[test]
    fn a_file_only_the_shared_data_has_is_skipped_when_absent() {
        assert_eq!(shared_only("no-such-release.json.zst"), None);
    }
}
