//! Successful password checks, remembered so that Basic credentials sent with every request cost
//! one argon2 run per process, not one per request.
//!
//! Entries are keyed by HMAC-SHA256 of (user, password) under a random key of this process: the
//! table holds no password, and its keys are useless outside this process. Only successes are
//! stored, so it holds at most one entry per user whose password is right (a wrong password is
//! checked with argon2 every time, which is the point). The auth file is read once at start, so
//! an entry never outlives the hash it was checked against.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rights::Rights;

/// The remembered logins of this process.
pub(crate) struct LoginCache {
    key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], Rights>>,
}

impl LoginCache {
    pub(crate) fn new() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(LoginCache {
            key,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The table key of these credentials.
    pub(crate) fn key_of(&self, user: &str, password: &str) -> [u8; 32] {
        // HMAC accepts keys of any length, so new_from_slice cannot fail here.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        // The user's length first, so ("ab", "c") and ("a", "bc") differ.
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Rights> {
        // A poisoned lock only means a panic during an insert: the map is still whole.
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Remembers credentials argon2 has just accepted.
    pub(crate) fn insert(&self, key: [u8; 32], rights: Rights) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, rights);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_user_password_and_process() {
        let a = LoginCache::new().unwrap();
        let b = LoginCache::new().unwrap();
        let k = a.key_of("alice", "pw");
        assert_eq!(k, a.key_of("alice", "pw"));
        assert_ne!(k, a.key_of("alice", "pW"));
        assert_ne!(k, a.key_of("alicep", "w"));
        assert_ne!(k, b.key_of("alice", "pw"), "another process, another key");
        assert_eq!(a.get(&k), None);
        a.insert(k, Rights::All);
        assert_eq!(a.get(&k), Some(Rights::All));
        assert_eq!(a.get(&a.key_of("alice", "nope")), None);
    }
}
