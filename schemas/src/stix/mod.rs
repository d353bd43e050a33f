//! STIX rules shared by every stage: timestamps, the version and spec_version rules, the object check, canonical JSON.

mod canonical;
mod check;
mod compact;
mod digest_writer;
mod id;
mod invalid;
mod timestamp;
mod version;

pub use canonical::{canonical_json, content_digest};
pub use check::{StixObjectMeta, validate_object};
pub use compact::compact_json;
pub use id::check_stix_id;
pub use invalid::{Invalid, InvalidKind};
pub use timestamp::Timestamp;
pub use version::{SpecVersion, object_version, spec_version};
