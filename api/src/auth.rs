//! Optional authentication: bearer tokens or HTTP basic, with per-collection read rights.
//!
//! Off by default (a public server like MITRE's). When on, principals come from a JSON file:
//!
//! ```json
//! { "anonymous": ["x-mitre-collection--…"],
//!   "principals": [
//!     { "name": "ci", "token_sha256": "<hex sha256 of the token>", "collections": ["*"] },
//!     { "name": "alice", "username": "alice", "password_sha256": "<hex>", "collections": ["id1"] } ] }
//! ```
//!
//! Secrets are stored as SHA-256 digests: a leaked file does not reveal them, and checking costs
//! one hash per request (argon2 would cost ~50 ms of CPU per request on this read path; use long
//! random tokens or passwords, for which a fast hash is sufficient). Missing credentials get the
//! `anonymous` rights, or 401 when there are none; wrong credentials always get 401.
//!
//! A collection the caller may not read answers **403**, not 404: collection listings show every
//! collection with `can_read` reflecting the caller (as the issue asks), so existence is not a
//! secret and 403 tells the client what is actually wrong.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Error};

/// What a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rights {
    All,
    Some(Arc<BTreeSet<String>>),
}

impl Rights {
    pub fn can_read(&self, collection_id: &str) -> bool {
        match self {
            Rights::All => true,
            Rights::Some(set) => set.contains(collection_id),
        }
    }

    fn from_list(list: &[String]) -> Rights {
        if list.iter().any(|c| c == "*") {
            Rights::All
        } else {
            Rights::Some(Arc::new(list.iter().cloned().collect()))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    anonymous: Option<Vec<String>>,
    principals: Vec<PrincipalEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    #[serde(default)]
    token_sha256: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_sha256: Option<String>,
    collections: Vec<String>,
}

/// The loaded principals, indexed by secret digest and user name.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: HashMap<[u8; 32], Rights>,
    users: HashMap<String, ([u8; 32], Rights)>,
    anonymous: Option<Rights>,
}

fn digest(hex_text: &str, who: &str) -> Result<[u8; 32], Error> {
    let bytes = hex::decode(hex_text.trim())
        .map_err(|e| Error::AuthInvalid(format!("{who}: not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| Error::AuthInvalid(format!("{who}: a SHA-256 digest has 32 bytes")))
}

fn sha256(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

impl Auth {
    pub fn from_json(text: &str) -> Result<Auth, Error> {
        let file: AuthFile =
            serde_json::from_str(text).map_err(|e| Error::AuthInvalid(e.to_string()))?;
        let mut auth = Auth {
            tokens: HashMap::new(),
            users: HashMap::new(),
            anonymous: file.anonymous.as_deref().map(Rights::from_list),
        };
        for p in file.principals {
            let rights = Rights::from_list(&p.collections);
            match (&p.token_sha256, &p.username, &p.password_sha256) {
                (Some(t), None, None) => {
                    auth.tokens.insert(digest(t, &p.name)?, rights);
                }
                (None, Some(u), Some(pw)) => {
                    auth.users.insert(u.clone(), (digest(pw, &p.name)?, rights));
                }
                _ => {
                    return Err(Error::AuthInvalid(format!(
                        "principal {}: give either token_sha256, or username and password_sha256",
                        p.name
                    )));
                }
            }
        }
        Ok(auth)
    }

    pub fn from_file(path: &Path) -> Result<Auth, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::AuthRead {
            path: path.display().to_string(),
            source,
        })?;
        Auth::from_json(&text)
    }

    /// The rights of a request, from its `Authorization` header.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Rights, ApiError> {
        let bad = || ApiError::Unauthorized("invalid credentials".to_owned());
        let Some(value) = authorization else {
            return self.anonymous.clone().ok_or_else(|| {
                ApiError::Unauthorized("credentials required (Bearer token or Basic)".to_owned())
            });
        };
        let (scheme, rest) = value.trim().split_once(' ').ok_or_else(bad)?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return self
                .tokens
                .get(&sha256(rest.trim().as_bytes()))
                .cloned()
                .ok_or_else(bad);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| bad())?;
            let text = String::from_utf8(decoded).map_err(|_| bad())?;
            let (user, password) = text.split_once(':').ok_or_else(bad)?;
            let (stored, rights) = self.users.get(user).ok_or_else(bad)?;
            let given = sha256(password.as_bytes());
            let diff = stored
                .iter()
                .zip(given)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            return if diff == 0 {
                Ok(rights.clone())
            } else {
                Err(bad())
            };
        }
        Err(bad())
    }
}

/// Middleware: puts the caller's [`Rights`] in the request extensions, or answers 401.
pub async fn authenticate(
    State(auth): State<Option<Arc<Auth>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let rights = match &auth {
        None => Rights::All,
        Some(auth) => {
            let header = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match auth.authenticate(header) {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            }
        }
    };
    request.extensions_mut().insert(rights);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> String {
        format!(
            r#"{{"anonymous":["pub"],"principals":[
                {{"name":"ci","token_sha256":"{}","collections":["*"]}},
                {{"name":"alice","username":"alice","password_sha256":"{}","collections":["a"]}}]}}"#,
            hex::encode(sha256(b"tok")),
            hex::encode(sha256(b"pw"))
        )
    }

    #[test]
    fn tokens_passwords_and_anonymous_get_their_rights() {
        let auth = Auth::from_json(&file()).unwrap();
        assert_eq!(auth.authenticate(Some("Bearer tok")).unwrap(), Rights::All);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pw")
        );
        let alice = auth.authenticate(Some(&basic)).unwrap();
        assert!(alice.can_read("a") && !alice.can_read("pub"));
        let anon = auth.authenticate(None).unwrap();
        assert!(anon.can_read("pub") && !anon.can_read("a"));
    }

    #[test]
    fn wrong_credentials_are_refused() {
        let auth = Auth::from_json(&file()).unwrap();
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:nope")
        );
        for header in ["Bearer nope", wrong.as_str(), "Digest x", "garbage"] {
            assert!(
                matches!(
                    auth.authenticate(Some(header)),
                    Err(ApiError::Unauthorized(_))
                ),
                "{header}"
            );
        }
    }

    #[test]
    fn principals_need_exactly_one_kind_of_secret() {
        let err = Auth::from_json(r#"{"principals":[{"name":"x","collections":[]}]}"#);
        assert!(err.is_err());
    }
}
