//! ETags and the `If-None-Match` conversation, and the digest they (and cursors) are made of.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// A 64-bit digest of some context strings (collection, root, endpoint, filter).
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update((p.len() as u64).to_be_bytes());
        hasher.update(p.as_bytes());
    }
    let digest = hasher.finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(word)
}

/// A weak ETag (weak because compression changes the bytes, not the meaning) from a digest.
pub fn etag(digest: u64) -> HeaderValue {
    // Hex digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("W/\"{digest:016x}\""))
        .unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// Whether `If-None-Match` names this ETag (weak comparison, `*` matches anything).
pub fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(ours) = etag.to_str() else {
        return false;
    };
    let ours = ours.trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

/// The 304 answer to a client that has this ETag.
pub fn not_modified_response(tag: HeaderValue) -> Response {
    (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = etag(0xabc);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", \"0000000000000abc\""),
        );
        assert!(not_modified(&headers, &tag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"0000000000000abd\""),
        );
        assert!(!not_modified(&headers, &tag));
    }
}
