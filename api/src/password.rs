//! Passwords of the auth file: argon2id PHC strings, made by `api hash-password` and checked here.
//!
//! Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's minimum) is the password
//! hash made for the job: salted, and slow and memory-hard for an attacker holding the file. Only
//! the argon2 family is accepted: one algorithm to review, and the only one our command writes.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, Params, PasswordHasher, PasswordVerifier};

/// A password hash read from the auth file, checked to be one we can verify.
#[derive(Clone)]
pub(crate) struct StoredPassword(PasswordHash);

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredPassword({})", self.0.algorithm)
    }
}

impl StoredPassword {
    /// Parses a PHC string; refuses other algorithms and parameters argon2 would refuse, so a
    /// bad entry stops the start rather than every login.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let hash = PasswordHash::new(text.trim())
            .map_err(|e| format!("not a PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash): {e}"))?;
        if !hash.algorithm.as_str().starts_with("argon2") {
            return Err(format!(
                "algorithm {} is not accepted: use argon2id",
                hash.algorithm
            ));
        }
        Params::try_from(&hash).map_err(|e| format!("argon2 parameters: {e}"))?;
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err("the PHC string has no salt or no hash".to_owned());
        }
        Ok(StoredPassword(hash))
    }

    /// Whether `password` matches; costs one argon2 run with the stored parameters (tens of
    /// milliseconds of CPU, by design): call it off the async runtime.
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        Argon2::default().verify_password(password, &self.0).is_ok()
    }
}

/// The PHC string of `password` with a fresh random salt (argon2id, default parameters).
pub fn hash(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default().hash_password(password)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_salts_differ() {
        let a = hash(b"correct horse").unwrap();
        let b = hash(b"correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        let stored = StoredPassword::parse(&a).unwrap();
        assert!(stored.verify(b"correct horse"));
        assert!(!stored.verify(b"correct horse "));
        assert!(!stored.verify(b""));
    }

    #[test]
    fn other_algorithms_and_garbage_are_refused() {
        let sha = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
        for text in [
            sha,
            "",
            "$pbkdf2-sha256$i=600000,l=32$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            "$argon2id$v=19$m=1,t=0,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(StoredPassword::parse(text).is_err(), "{text}");
        }
    }
}
