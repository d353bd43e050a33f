//! Canonical JSON and the content digest: the SHA-256 that tells a re-sent version from a corrected one.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Result;

/// SHA-256 of the object's canonical JSON (see [`canonical_json`]).
///
/// Two texts of the same JSON value — pretty-printed or compact, keys in any order — have the
/// same digest; ingest compares digests to tell a re-sent version from a corrected one.
pub fn content_digest(raw: &str) -> Result<[u8; 32]> {
    Ok(Sha256::digest(canonical_json(raw)?).into())
}

/// The canonical form hashed by [`content_digest`]: object keys sorted by their (unescaped)
/// UTF-8 bytes at every level, no insignificant whitespace, strings and numbers as `serde_json`
/// writes them, the last of duplicate keys kept.
///
/// That is `serde_json::to_vec` of the parsed `serde_json::Value`, because serde_json's `Map` is
/// a `BTreeMap`. Were some crate in the build to enable serde_json's `preserve_order` feature,
/// maps would keep insertion order and every digest would change: the tests compare this form
/// with an independent canonicalization and with digests pinned from real bundles, so that
/// cannot happen unnoticed.
pub fn canonical_json(raw: &str) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::from_str::<Value>(raw)?)?)
}
