//! STIX rules shared by every stage: timestamps, the object check and its rules, canonical and compact JSON.

mod canonical;
mod check;
mod compact;
mod digest_writer;
mod invalid;
mod timestamp;

pub use canonical::{canonical_json, content_digest};
pub use check::{
    SpecVersion, StixObjectMeta, check_stix_id, object_version, spec_version, validate_object,
};
pub use compact::compact_json;
pub use invalid::{Invalid, InvalidKind};
pub use timestamp::Timestamp;
