//! The opaque `next` cursor: the position of the last item a page returned, bound to its query.
//!
//! A page number would skip or repeat items when versions are added between two requests; a
//! position in the total order (date_added, object id, version) does not, because new versions
//! only ever get a larger date_added. The cursor also carries a hash of the query it belongs to
//! (collection, root, endpoint, filters), and an HMAC so a client cannot forge positions or replay
//! a cursor with other filters. Replicas sharing the key accept each other's cursors; without a
//! configured key each process signs with a random one (a fixed default would be public, and
//! anyone could forge positions with it).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Where the previous page ended, in the order every listing uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub date_added: i64,
    pub object_id: String,
    pub version: i64,
}

/// A decoded cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub position: Position,
    /// Hash of the query the cursor was issued for; bound by the listing handler.
    pub query_hash: u64,
}

/// Why a `next` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("not a cursor issued by this server")]
    Malformed,
    #[error("the cursor was altered")]
    Tampered,
}

const FORMAT: u8 = 1;
const MAC_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 8 + 8 + 8;

/// The HMAC key cursors are signed with.
#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(<redacted>)")
    }
}

impl CursorKey {
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        CursorKey(key.as_ref().to_vec())
    }

    /// A key from the operating system's randomness: 32 bytes, as long as the HMAC-SHA256 output.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(CursorKey(key))
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        // HMAC accepts keys of any length, so new_from_slice cannot fail here.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The URL-safe text of a cursor.
    pub fn encode(&self, cursor: &Cursor) -> String {
        let id = cursor.position.object_id.as_bytes();
        let mut bytes = Vec::with_capacity(HEADER_LEN + id.len() + MAC_LEN);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&cursor.position.date_added.to_be_bytes());
        bytes.extend_from_slice(&cursor.position.version.to_be_bytes());
        bytes.extend_from_slice(&cursor.query_hash.to_be_bytes());
        bytes.extend_from_slice(id);
        let mac = self.mac(&bytes);
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes and authenticates a cursor.
    pub fn decode(&self, text: &str) -> Result<Cursor, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| CursorError::Malformed)?;
        if bytes.len() < HEADER_LEN + MAC_LEN || bytes[0] != FORMAT {
            return Err(CursorError::Malformed);
        }
        let (payload, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let expected = self.mac(payload);
        // Constant-time comparison: the MAC is the only secret-dependent value here.
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(CursorError::Tampered);
        }
        let word = |at: usize| {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(&payload[at..at + 8]);
            buf
        };
        let object_id = std::str::from_utf8(&payload[HEADER_LEN..])
            .map_err(|_| CursorError::Malformed)?
            .to_owned();
        Ok(Cursor {
            position: Position {
                date_added: i64::from_be_bytes(word(1)),
                version: i64::from_be_bytes(word(9)),
                object_id,
            },
            query_hash: u64::from_be_bytes(word(17)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cursor() -> impl Strategy<Value = Cursor> {
        (any::<i64>(), ".{0,80}", any::<i64>(), any::<u64>()).prop_map(
            |(date_added, object_id, version, query_hash)| Cursor {
                position: Position {
                    date_added,
                    object_id,
                    version,
                },
                query_hash,
            },
        )
    }

    proptest! {
        #[test]
        fn cursors_round_trip(c in cursor()) {
            let key = CursorKey::new("k");
            let text = key.encode(&c);
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(key.decode(&text), Ok(c));
        }

        #[test]
        fn any_altered_byte_is_detected(c in cursor(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let key = CursorKey::new("k");
            let mut bytes = URL_SAFE_NO_PAD.decode(key.encode(&c)).unwrap();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            let altered = URL_SAFE_NO_PAD.encode(&bytes);
            prop_assert!(key.decode(&altered).is_err());
        }

        #[test]
        fn another_key_refuses_the_cursor(c in cursor()) {
            let text = CursorKey::new("a").encode(&c);
            prop_assert_eq!(CursorKey::new("b").decode(&text), Err(CursorError::Tampered));
        }

        #[test]
        fn a_random_key_refuses_cursors_of_any_other_key(c in cursor(), other in ".{0,40}") {
            let random = CursorKey::random().unwrap();
            prop_assert_eq!(random.decode(&random.encode(&c)), Ok(c.clone()));
            let text = CursorKey::new(other).encode(&c);
            prop_assert_eq!(random.decode(&text), Err(CursorError::Tampered));
            prop_assert_ne!(CursorKey::random().unwrap().0, random.0);
        }

        #[test]
        fn garbage_is_refused_without_panicking(text in ".{0,200}") {
            let _ = CursorKey::new("k").decode(&text);
        }
    }
}
