//! Where a bundle comes from: the source it is published under and what the command line declares it.

use schemas::{SourceKind, Timestamp};

use crate::plan::CollectionInfo;

/// Where a bundle comes from, and how its collection and release are decided.
#[derive(Debug, Clone)]
pub struct Origin {
    pub kind: SourceKind,
    /// The file path, or the Workbench URL the bundle came from.
    pub uri: String,
    /// Overrides the `x-mitre-collection` object (`ingest import --collection`).
    pub collection: Option<CollectionInfo>,
    /// With `collection`: declare the bundle a release with this label.
    pub release_label: Option<String>,
    /// With `release_label`: its timestamp; default the newest version in the bundle.
    pub release_timestamp: Option<Timestamp>,
    /// The collection version the bundle must be (a Workbench export of one version): `(id,
    /// modified)` of its collection object. Checked before anything is published.
    pub expect_version: Option<(String, String)>,
}
