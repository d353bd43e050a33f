//! The double's database: collection versions and attack-object versions keyed by (`stix.id`, `stix.modified`),
//! loaded the way Workbench imports a collection bundle, and rendered as Workbench documents.
//!
//! STIX objects are kept as their original JSON text (compacted, key order preserved) and spliced into responses,
//! so what is served is byte-for-byte what the bundle file held, minus whitespace.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{DoubleError, timestamp};

mod prepare;

use prepare::{compact_json, prepare_collection_raw, prepare_object_raw, prepare_object_value};

/// One version of a collection: its `stix.id` and `stix.modified` (as served, millisecond precision).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectionVersionKey {
    pub id: String,
    pub modified: String,
}

/// One version of an attack object: its `stix.id` and `stix.modified` (as served, millisecond precision).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectVersionKey {
    pub id: String,
    pub modified: String,
}

/// What loading a collection bundle did, as Workbench's import would categorize it.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub collection: CollectionVersionKey,
    pub x_mitre_version: Option<String>,
    /// Object versions stored by this load.
    pub objects_added: usize,
    /// Objects whose (id, modified) was stored already. Workbench keeps the stored content and does not add the
    /// new collection to their `workspace.collections` (import category `duplicates`).
    pub duplicates: Vec<ObjectVersionKey>,
    /// The subset of `duplicates` whose content in this bundle differs from the content that will be served
    /// (e.g. 70 ICS attack-patterns between 17.1 and 18.0).
    pub duplicates_with_different_content: Vec<ObjectVersionKey>,
}

/// Where a bundle comes from: a file (plain JSON or zstd-compressed) or its bytes (either form).
#[derive(Debug, Clone)]
pub enum BundleSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl From<&Path> for BundleSource {
    fn from(path: &Path) -> Self {
        BundleSource::Path(path.to_owned())
    }
}

impl From<PathBuf> for BundleSource {
    fn from(path: PathBuf) -> Self {
        BundleSource::Path(path)
    }
}

impl From<&PathBuf> for BundleSource {
    fn from(path: &PathBuf) -> Self {
        BundleSource::Path(path.clone())
    }
}

impl From<Vec<u8>> for BundleSource {
    fn from(bytes: Vec<u8>) -> Self {
        BundleSource::Bytes(bytes)
    }
}

impl From<&[u8]> for BundleSource {
    fn from(bytes: &[u8]) -> Self {
        BundleSource::Bytes(bytes.to_vec())
    }
}

impl BundleSource {
    /// The bundle's JSON text, decompressed if it is zstd.
    pub(crate) fn read_text(self) -> Result<String, DoubleError> {
        let bytes = match self {
            BundleSource::Path(path) => {
                std::fs::read(&path).map_err(|source| DoubleError::Read { path, source })?
            }
            BundleSource::Bytes(bytes) => bytes,
        };
        const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
        let bytes = if bytes.starts_with(&ZSTD_MAGIC) {
            zstd::decode_all(bytes.as_slice()).map_err(DoubleError::Decompress)?
        } else {
            bytes
        };
        String::from_utf8(bytes).map_err(|e| DoubleError::InvalidBundle(e.to_string()))
    }
}

/// One entry of a collection version's `workspace.exported`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub export_timestamp: String,
    pub bundle_id: String,
}

/// The fields of a STIX object the double filters and renders on.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ObjectHead {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub modified: Option<String>,
    #[serde(default)]
    pub revoked: Option<bool>,
    #[serde(default)]
    pub x_mitre_deprecated: Option<bool>,
    #[serde(default)]
    pub x_mitre_version: Option<String>,
    #[serde(default)]
    pub external_references: Option<Vec<ExternalReference>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ExternalReference {
    #[serde(default)]
    pub source_name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
}

impl ObjectHead {
    /// `workspace.attack_id`: the external id of the ATT&CK reference (`T0800`, `G0034`, `S0012`…).
    fn attack_id(&self) -> Option<String> {
        if self.kind == "relationship" {
            return None;
        }
        self.external_references
            .iter()
            .flatten()
            .find(|r| {
                matches!(
                    r.source_name.as_deref(),
                    Some("mitre-attack" | "mitre-mobile-attack" | "mitre-ics-attack")
                )
            })
            .and_then(|r| r.external_id.clone())
    }

    pub(crate) fn revoked(&self) -> bool {
        self.revoked.unwrap_or(false)
    }

    pub(crate) fn deprecated(&self) -> bool {
        self.x_mitre_deprecated.unwrap_or(false)
    }
}

/// `workspace.collections[]` of an attack object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CollectionRef {
    pub collection_ref: String,
    pub collection_modified: String,
}

pub(crate) struct StoredObject {
    pub raw: Box<RawValue>,
    pub head: ObjectHead,
    /// Normalized `stix.modified`.
    pub modified: String,
    pub mongo_id: String,
    pub attack_id: Option<String>,
    pub workflow_state: String,
    pub collections: Vec<CollectionRef>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ImportCategories {
    pub additions: Vec<String>,
    pub changes: Vec<String>,
    pub minor_changes: Vec<String>,
    pub revocations: Vec<String>,
    pub deprecations: Vec<String>,
    pub supersedes_user_edits: Vec<String>,
    pub supersedes_collection_changes: Vec<String>,
    pub duplicates: Vec<String>,
    pub out_of_date: Vec<String>,
    pub errors: Vec<ImportError>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImportError {
    pub object_ref: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_modified: Option<String>,
    pub error_type: &'static str,
    pub error_message: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ImportReferences {
    pub additions: Vec<Value>,
    pub changes: Vec<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Workflow {
    pub state: String,
    pub release: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CollectionWorkspace {
    pub imported: String,
    pub exported: Vec<ExportRecord>,
    pub import_categories: ImportCategories,
    pub import_references: ImportReferences,
    pub reimports: Vec<Value>,
    pub workflow: Workflow,
}

pub(crate) struct CollectionVersion {
    pub key: CollectionVersionKey,
    /// The collection object with normalized timestamps and `x_mitre_deprecated` defaulted, for filtering.
    pub stix: Value,
    /// The same object as served.
    pub raw: Box<RawValue>,
    pub contents: Vec<ObjectVersionKey>,
    pub mongo_id: String,
    pub workspace: CollectionWorkspace,
}

impl CollectionVersion {
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.stix.get(name).and_then(Value::as_str)
    }
}

/// A collection document as `GET /api/collections` lists it.
#[derive(Serialize)]
pub(crate) struct CollectionDoc<'a> {
    #[serde(rename = "_id")]
    mongo_id: &'a str,
    #[serde(rename = "__t")]
    kind: &'static str,
    #[serde(rename = "__v")]
    version: u32,
    workspace: &'a CollectionWorkspace,
    stix: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by_identity: Option<ObjectDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modified_by_identity: Option<ObjectDoc<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ObjectDoc<'a> {
    #[serde(rename = "_id")]
    mongo_id: &'a str,
    workspace: ObjectWorkspace<'a>,
    stix: &'a RawValue,
    #[serde(rename = "__t", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(rename = "__v")]
    version: u32,
}

#[derive(Serialize)]
struct ObjectWorkspace<'a> {
    workflow: WorkflowState<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attack_id: Option<&'a str>,
    collections: &'a [CollectionRef],
}

#[derive(Serialize)]
struct WorkflowState<'a> {
    state: &'a str,
}

#[derive(Default)]
pub(crate) struct Store {
    /// id → modified → version.
    objects: BTreeMap<String, BTreeMap<String, StoredObject>>,
    /// Marking definitions have no `modified`; Workbench keeps one per id.
    markings: BTreeMap<String, Box<RawValue>>,
    /// id → modified → version.
    collections: BTreeMap<String, BTreeMap<String, CollectionVersion>>,
}

impl Store {
    /// Imports a collection bundle: its `x-mitre-collection` becomes a collection version, every other object an
    /// attack-object version (kept as stored when its (id, modified) exists already).
    pub(crate) fn load_bundle(&mut self, text: &str) -> Result<LoadReport, DoubleError> {
        #[derive(Deserialize)]
        struct Bundle<'a> {
            #[serde(borrow)]
            objects: Vec<&'a RawValue>,
        }
        let bundle: Bundle<'_> = serde_json::from_str(text)?;
        let mut collection_raw = None;
        let mut others = Vec::with_capacity(bundle.objects.len());
        for raw in bundle.objects {
            let head: ObjectHead = serde_json::from_str(raw.get())?;
            if head.kind == "x-mitre-collection" {
                if collection_raw.is_some() {
                    return Err(DoubleError::InvalidBundle(
                        "more than one x-mitre-collection object".into(),
                    ));
                }
                collection_raw = Some(raw);
            } else {
                others.push((raw, head));
            }
        }
        let collection_raw = collection_raw.ok_or_else(|| {
            DoubleError::InvalidBundle("Missing x-mitre-collection object.".into())
        })?;
        let mut collection = prepare_collection_raw(collection_raw)?;
        if self
            .collection(&collection.key.id, &collection.key.modified)
            .is_some()
        {
            return Err(DoubleError::DuplicateCollectionVersion {
                id: collection.key.id,
                modified: collection.key.modified,
            });
        }
        let x_mitre_version = collection.text("x_mitre_version").map(str::to_owned);
        let reference = CollectionRef {
            collection_ref: collection.key.id.clone(),
            collection_modified: collection.key.modified.clone(),
        };
        let mut in_contents: HashSet<ObjectVersionKey> =
            collection.contents.iter().cloned().collect();
        let mut categories = ImportCategories::default();
        let mut report = LoadReport {
            collection: collection.key.clone(),
            x_mitre_version,
            objects_added: 0,
            duplicates: Vec::new(),
            duplicates_with_different_content: Vec::new(),
        };

        for (raw, head) in others {
            if head.modified.is_none() {
                if head.kind != "marking-definition" {
                    return Err(DoubleError::InvalidObject(format!(
                        "{} has no modified",
                        head.id
                    )));
                }
                categories.errors.push(not_in_contents(&head.id, None));
                if self.markings.contains_key(&head.id) {
                    categories.duplicates.push(head.id.clone());
                } else {
                    let compact = RawValue::from_string(compact_json(raw.get()))?;
                    self.markings.insert(head.id.clone(), compact);
                }
                continue;
            }
            let object = prepare_object_raw(raw, head)?;
            let key = ObjectVersionKey {
                id: object.head.id.clone(),
                modified: object.modified.clone(),
            };
            if !in_contents.remove(&key) {
                categories
                    .errors
                    .push(not_in_contents(&object.head.id, Some(&object.modified)));
            }
            let id = object.head.id.clone();
            let versions = self.objects.entry(id.clone()).or_default();
            if let Some(existing) = versions.get(&object.modified) {
                if !same_json(existing.raw.get(), object.raw.get()) {
                    report.duplicates_with_different_content.push(key.clone());
                }
                report.duplicates.push(key);
                categories.duplicates.push(id);
                continue;
            }
            categorize(&object.head, versions, &mut categories);
            let mut object = object;
            object.collections.push(reference.clone());
            versions.insert(object.modified.clone(), object);
            report.objects_added += 1;
        }
        for key in &collection.contents {
            if in_contents.contains(key) {
                categories.errors.push(ImportError {
                    object_ref: key.id.clone(),
                    object_modified: Some(key.modified.clone()),
                    error_type: "Missing object",
                    error_message: "Object listed in x_mitre_contents, but not in bundle",
                });
            }
        }
        collection.workspace.import_categories = categories;
        self.insert_collection(collection);
        Ok(report)
    }

    fn insert_collection(&mut self, collection: CollectionVersion) {
        self.collections
            .entry(collection.key.id.clone())
            .or_default()
            .insert(collection.key.modified.clone(), collection);
    }

    /// Stores one attack-object version built by a test.
    pub(crate) fn add_object(
        &mut self,
        stix: Value,
        workflow_state: &str,
    ) -> Result<ObjectVersionKey, DoubleError> {
        let mut object = prepare_object_value(stix)?;
        object.workflow_state = workflow_state.to_owned();
        let key = ObjectVersionKey {
            id: object.head.id.clone(),
            modified: object.modified.clone(),
        };
        let versions = self.objects.entry(key.id.clone()).or_default();
        if versions.contains_key(&key.modified) {
            return Err(DoubleError::DuplicateObjectVersion {
                id: key.id,
                modified: key.modified,
            });
        }
        versions.insert(key.modified.clone(), object);
        Ok(key)
    }

    /// Stores a new version of object `id`: its latest version changed by `mutate`, with a later `modified`.
    pub(crate) fn edit_object(
        &mut self,
        id: &str,
        mutate: impl FnOnce(&mut Value),
    ) -> Result<ObjectVersionKey, DoubleError> {
        let latest = self
            .latest_object(id)
            .ok_or_else(|| DoubleError::UnknownObject(id.to_owned()))?;
        let mut stix: Value = serde_json::from_str(latest.raw.get())?;
        let previous = latest.modified.clone();
        mutate(&mut stix);
        if let Some(map) = stix.as_object_mut() {
            map.insert("id".into(), Value::String(id.to_owned()));
            map.insert(
                "modified".into(),
                Value::String(timestamp::later_than(&previous)),
            );
        }
        self.add_object(stix, "work-in-progress")
    }

    pub(crate) fn remove_collection(&mut self, id: &str, modified: &str) -> bool {
        let Some(modified) = timestamp::normalize(modified) else {
            return false;
        };
        let Some(versions) = self.collections.get_mut(id) else {
            return false;
        };
        let removed = versions.remove(&modified).is_some();
        if versions.is_empty() {
            self.collections.remove(id);
        }
        removed
    }

    pub(crate) fn collection(&self, id: &str, modified: &str) -> Option<&CollectionVersion> {
        self.collections.get(id)?.get(modified)
    }

    pub(crate) fn collection_mut(
        &mut self,
        id: &str,
        modified: &str,
    ) -> Option<&mut CollectionVersion> {
        self.collections.get_mut(id)?.get_mut(modified)
    }

    pub(crate) fn latest_collection(&self, id: &str) -> Option<&CollectionVersion> {
        self.collections.get(id)?.values().next_back()
    }

    /// `GET /api/collections`: every version, or the latest of each collection.
    pub(crate) fn list_collections(&self, latest_only: bool) -> Vec<&CollectionVersion> {
        let take = if latest_only { 1 } else { usize::MAX };
        self.collections
            .values()
            .flat_map(|versions| versions.values().rev().take(take))
            .collect()
    }

    pub(crate) fn object(&self, id: &str, modified: &str) -> Option<&StoredObject> {
        self.objects.get(id)?.get(modified)
    }

    pub(crate) fn latest_object(&self, id: &str) -> Option<&StoredObject> {
        self.objects.get(id)?.values().next_back()
    }

    /// Every object version, sorted by id ascending then modified descending.
    pub(crate) fn all_object_versions(&self) -> impl Iterator<Item = &StoredObject> {
        self.objects.values().flat_map(|v| v.values().rev())
    }

    /// The latest version of every object, sorted by id.
    pub(crate) fn latest_objects(&self) -> impl Iterator<Item = &StoredObject> {
        self.objects.values().filter_map(|v| v.values().next_back())
    }

    /// The collection's `x_mitre_contents` resolved to stored versions, in order; unresolved references dropped.
    pub(crate) fn resolve_contents(&self, collection: &CollectionVersion) -> Vec<&StoredObject> {
        collection
            .contents
            .iter()
            .filter_map(|k| self.object(&k.id, &k.modified))
            .collect()
    }

    pub(crate) fn render_collection<'a>(
        &'a self,
        collection: &'a CollectionVersion,
    ) -> CollectionDoc<'a> {
        let identity = |field: &str| {
            let id = collection.text(field)?;
            let identity = self.latest_object(id)?;
            Some(self.object_doc(identity))
        };
        CollectionDoc {
            mongo_id: &collection.mongo_id,
            kind: "Collection",
            version: 0,
            workspace: &collection.workspace,
            stix: &collection.raw,
            created_by_identity: identity("created_by_ref"),
            modified_by_identity: identity("x_mitre_modified_by_ref"),
        }
    }

    pub(crate) fn object_doc<'a>(&'a self, object: &'a StoredObject) -> ObjectDoc<'a> {
        ObjectDoc {
            mongo_id: &object.mongo_id,
            workspace: ObjectWorkspace {
                workflow: WorkflowState {
                    state: &object.workflow_state,
                },
                attack_id: object.attack_id.as_deref(),
                collections: &object.collections,
            },
            stix: &object.raw,
            kind: model_name(&object.head.kind),
            version: 0,
        }
    }

    /// The body of `GET /api/collection-bundles`: the collection object first, then its resolved contents.
    pub(crate) fn bundle_json(&self, collection: &CollectionVersion, bundle_id: &str) -> String {
        let contents = self.resolve_contents(collection);
        let size = collection.raw.get().len()
            + contents
                .iter()
                .map(|o| o.raw.get().len() + 1)
                .sum::<usize>()
            + 128;
        let mut out = String::with_capacity(size);
        out.push_str(r#"{"type":"bundle","id":""#);
        out.push_str(bundle_id);
        out.push_str(r#"","objects":["#);
        out.push_str(collection.raw.get());
        for object in contents {
            out.push(',');
            out.push_str(object.raw.get());
        }
        out.push_str("]}");
        out
    }
}

/// Workbench's import categories for a new version of an object that has `existing` versions.
fn categorize(
    head: &ObjectHead,
    existing: &BTreeMap<String, StoredObject>,
    categories: &mut ImportCategories,
) {
    let Some(latest) = existing.values().next_back() else {
        categories.additions.push(head.id.clone());
        return;
    };
    let id = head.id.clone();
    let modified = head.modified.as_deref().and_then(timestamp::normalize);
    if head.revoked() && !latest.head.revoked() {
        categories.revocations.push(id);
    } else if head.deprecated() && !latest.head.deprecated() {
        categories.deprecations.push(id);
    } else if modified.is_some_and(|m| latest.modified < m) {
        // JavaScript compares the version strings; `undefined === undefined` counts as equal.
        match (&latest.head.x_mitre_version, &head.x_mitre_version) {
            (Some(old), Some(new)) if old < new => categories.changes.push(id),
            (old, new) if old == new => categories.minor_changes.push(id),
            _ => {}
        }
    } else {
        categories.out_of_date.push(id);
    }
}

fn not_in_contents(id: &str, modified: Option<&str>) -> ImportError {
    ImportError {
        object_ref: id.to_owned(),
        object_modified: modified.map(str::to_owned),
        error_type: "Not in contents",
        error_message: "Warning: Object in bundle but not in x_mitre_contents. Object will be saved in database.",
    }
}

/// The Mongoose discriminator Workbench stores in `__t`; relationships live in their own collection without one.
fn model_name(stix_type: &str) -> Option<&'static str> {
    Some(match stix_type {
        "attack-pattern" => "Technique",
        "x-mitre-tactic" => "Tactic",
        "course-of-action" => "Mitigation",
        "intrusion-set" => "Group",
        "campaign" => "Campaign",
        "malware" | "tool" => "Software",
        "x-mitre-matrix" => "Matrix",
        "identity" => "Identity",
        "marking-definition" => "MarkingDefinition",
        "note" => "Note",
        "x-mitre-data-source" => "DataSource",
        "x-mitre-data-component" => "DataComponent",
        "x-mitre-asset" => "Asset",
        "x-mitre-analytic" => "Analytic",
        "x-mitre-detection-strategy" => "DetectionStrategy",
        "x-mitre-collection" => "Collection",
        _ => return None,
    })
}

fn same_json(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
mod tests;
