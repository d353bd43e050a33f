//! The STIX version rules: which spec_version an object follows, and which timestamp versions it.

use std::fmt;

use super::invalid::{Invalid, InvalidKind, quoted};
use super::timestamp::Timestamp;

/// The STIX specification version an object follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    V2_0,
    V2_1,
}

impl SpecVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V2_0 => "2.0",
            SpecVersion::V2_1 => "2.1",
        }
    }

    /// `"2.0"` or `"2.1"`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2.0" => Some(SpecVersion::V2_0),
            "2.1" => Some(SpecVersion::V2_1),
            _ => None,
        }
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The spec_version rule: the object's own `spec_version` if present, else the bundle's (STIX 2.0
/// bundles carry one, 2.1 bundles do not), else 2.0 — STIX 2.1 requires `spec_version` on every
/// SDO and SRO, so an object without one is a 2.0 object.
pub fn spec_version(object: Option<&str>, bundle: Option<&str>) -> Result<SpecVersion, Invalid> {
    let (value, whose) = match (object, bundle) {
        (Some(value), _) => (value, "spec_version"),
        (None, Some(value)) => (value, "bundle spec_version"),
        (None, None) => return Ok(SpecVersion::V2_0),
    };
    SpecVersion::parse(value).ok_or_else(|| {
        Invalid::new(
            InvalidKind::SpecVersion,
            format!("{whose} {}: must be \"2.0\" or \"2.1\"", quoted(value)),
        )
    })
}

/// The version rule: `modified`, else `created`, else [`Timestamp::EPOCH`].
///
/// STIX versions an object by `modified`; an object with neither property (a 2.1 SCO, say) cannot
/// be revised under the same id, so it has exactly one version and any fixed value identifies it.
/// The epoch is that value: it sorts before every real version and reads as "no timestamp".
pub fn object_version(created: Option<Timestamp>, modified: Option<Timestamp>) -> Timestamp {
    modified.or(created).unwrap_or(Timestamp::EPOCH)
}
