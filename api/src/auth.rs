//! Optional authentication: bearer tokens or HTTP basic, with per-collection read rights.
//!
//! Off by default (a public server like MITRE's). When on, principals come from a JSON file:
//!
//! ```json
//! { "anonymous": ["x-mitre-collection--…"],
//!   "principals": [
//!     { "name": "ci", "token_sha256": "<hex sha256 of the token>", "collections": ["*"] },
//!     { "name": "alice", "username": "alice", "password_hash": "$argon2id$v=19$…", "collections": ["id1"] } ] }
//! ```
//!
//! Passwords are argon2id PHC strings (`api hash-password` prints one): people choose passwords,
//! so a leaked file must not be cheap to brute-force. Checking one costs tens of milliseconds of
//! CPU, so it runs on the blocking pool, at most one per core at a time, and a success is
//! remembered ([`crate::login_cache`]) so that a client sending its credentials with every request
//! pays it once. Unsalted SHA-256 password entries (`password_sha256`, accepted before) are
//! refused at start with the way to replace them. Bearer tokens stay SHA-256 digests: they are
//! long random strings an operator generates, for which a fast hash loses nothing and keeps the
//! read path at one hash per request.
//!
//! Missing credentials get the `anonymous` rights, or 401 when there are none; wrong credentials
//! always get 401.
//!
//! A collection the caller may not read answers **403**, not 404: collection listings show every
//! collection with `can_read` reflecting the caller (as the issue asks), so existence is not a
//! secret and 403 tells the client what is actually wrong.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::error::{ApiError, Error};
use crate::login_cache::LoginCache;
use crate::password::{self, StoredPassword};
use crate::rights::Rights;

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
    password_hash: Option<String>,
    /// Read only to refuse it with a useful message.
    #[serde(default)]
    password_sha256: Option<String>,
    collections: Vec<String>,
}

/// One user of HTTP basic.
struct User {
    password: StoredPassword,
    rights: Rights,
}

/// The loaded principals, indexed by token digest and user name.
pub struct Auth {
    tokens: HashMap<[u8; 32], Rights>,
    users: HashMap<String, User>,
    anonymous: Option<Rights>,
    logins: LoginCache,
    /// Bounds the CPU (and the 19 MiB each) that password checks take: one per core.
    checking: Semaphore,
    /// Checked for unknown users, so that an unknown user costs as much as a wrong password and
    /// timing does not tell which user names exist.
    decoy: Option<StoredPassword>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .field("users", &self.users.len())
            .field("anonymous", &self.anonymous.is_some())
            .finish_non_exhaustive()
    }
}

fn digest(hex_text: &str, who: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_text.trim()).map_err(|e| format!("{who}: not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{who}: a SHA-256 digest has 32 bytes"))
}

fn sha256(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

/// How to make a hash, for the messages that refuse a password entry.
const HOW_TO_HASH: &str = "put \"password_hash\": \"<PHC string>\" in its place, the line \
     `api hash-password` prints (it reads the password from the terminal, or one line of stdin)";

impl Auth {
    /// Principals from JSON text (`source` names it in errors, e.g. the file's path).
    pub fn from_json_named(text: &str, source: &str) -> Result<Auth, Error> {
        let invalid = |reason: String| Error::AuthInvalid {
            path: source.to_owned(),
            reason,
        };
        let file: AuthFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut tokens = HashMap::new();
        let mut users = HashMap::new();
        for p in file.principals {
            let rights = Rights::from_list(&p.collections);
            let who = format!("principal {:?}", p.name);
            match (
                &p.token_sha256,
                &p.username,
                &p.password_hash,
                &p.password_sha256,
            ) {
                (Some(t), None, None, None) => {
                    tokens.insert(digest(t, &who).map_err(invalid)?, rights);
                }
                (None, Some(u), Some(hash), None) => {
                    let password = StoredPassword::parse(hash).map_err(|e| {
                        invalid(format!(
                            "{who} (user {u:?}): password_hash: {e}; {HOW_TO_HASH}"
                        ))
                    })?;
                    users.insert(u.clone(), User { password, rights });
                }
                (None, Some(u), _, Some(_)) => {
                    return Err(invalid(format!(
                        "{who} (user {u:?}): password_sha256 (an unsalted SHA-256 digest) is no \
                         longer accepted; {HOW_TO_HASH}"
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "{who}: give either token_sha256, or username and password_hash"
                    )));
                }
            }
        }
        let decoy = if users.is_empty() {
            None
        } else {
            let mut random = [0u8; 32];
            getrandom::fill(&mut random).map_err(|e| Error::Randomness(e.to_string()))?;
            let text = password::hash(&random).map_err(|e| invalid(e.to_string()))?;
            Some(StoredPassword::parse(&text).map_err(invalid)?)
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Auth {
            tokens,
            users,
            anonymous: file.anonymous.as_deref().map(Rights::from_list),
            logins: LoginCache::new().map_err(|e| Error::Randomness(e.to_string()))?,
            checking: Semaphore::new(cores),
            decoy,
        })
    }

    /// Principals from JSON text.
    pub fn from_json(text: &str) -> Result<Auth, Error> {
        Auth::from_json_named(text, "(inline)")
    }

    pub fn from_file(path: &Path) -> Result<Auth, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::AuthRead {
            path: path.display().to_string(),
            source,
        })?;
        Auth::from_json_named(&text, &path.display().to_string())
    }

    /// What a caller without credentials may read; `None`: nothing (401).
    pub fn anonymous_rights(&self) -> Option<&Rights> {
        self.anonymous.as_ref()
    }

    /// The rights of a request, from its `Authorization` header.
    pub async fn authenticate(
        self: &Arc<Self>,
        authorization: Option<&str>,
    ) -> Result<Rights, ApiError> {
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
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(bad());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = text.split_once(':').ok_or_else(bad)?;
        let key = self.logins.key_of(user, password);
        if let Some(rights) = self.logins.get(&key) {
            return Ok(rights);
        }
        let verified = {
            // The semaphore is never closed, so acquiring fails only if it were.
            let _permit = self.checking.acquire().await.map_err(|_| bad())?;
            let (auth, user, password) = (Arc::clone(self), user.to_owned(), password.to_owned());
            tokio::task::spawn_blocking(move || auth.check(&user, password.as_bytes()))
                .await
                .map_err(|e| ApiError::Internal(format!("password check: {e}")))?
        };
        let rights = verified.ok_or_else(bad)?;
        self.logins.insert(key, rights.clone());
        Ok(rights)
    }

    /// The argon2 check of one login: the user's rights if the password is right.
    fn check(&self, user: &str, password: &[u8]) -> Option<Rights> {
        match self.users.get(user) {
            Some(u) => u.password.verify(password).then(|| u.rights.clone()),
            None => {
                if let Some(decoy) = &self.decoy {
                    decoy.verify(password);
                }
                None
            }
        }
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
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match auth.authenticate(header.as_deref()).await {
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
                {{"name":"alice","username":"alice","password_hash":"{}","collections":["a"]}}]}}"#,
            hex::encode(sha256(b"tok")),
            password::hash(b"pw").unwrap()
        )
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[tokio::test]
    async fn tokens_passwords_and_anonymous_get_their_rights() {
        let auth = Arc::new(Auth::from_json(&file()).unwrap());
        assert_eq!(
            auth.authenticate(Some("Bearer tok")).await.unwrap(),
            Rights::All
        );
        let alice = auth.authenticate(Some(&basic("alice:pw"))).await.unwrap();
        assert!(alice.can_read("a") && !alice.can_read("pub"));
        let anon = auth.authenticate(None).await.unwrap();
        assert!(anon.can_read("pub") && !anon.can_read("a"));
    }

    #[tokio::test]
    async fn wrong_credentials_are_refused_and_never_remembered() {
        let auth = Arc::new(Auth::from_json(&file()).unwrap());
        let wrong = basic("alice:nope");
        let unknown = basic("mallory:pw");
        for _ in 0..2 {
            for header in ["Bearer nope", &wrong, &unknown, "Digest x", "garbage"] {
                assert!(
                    matches!(
                        auth.authenticate(Some(header)).await,
                        Err(ApiError::Unauthorized(_))
                    ),
                    "{header}"
                );
            }
        }
        assert_eq!(auth.logins.get(&auth.logins.key_of("alice", "nope")), None);
        assert_eq!(auth.logins.get(&auth.logins.key_of("mallory", "pw")), None);
        // A right password is remembered, under its own key only.
        auth.authenticate(Some(&basic("alice:pw"))).await.unwrap();
        assert!(
            auth.logins
                .get(&auth.logins.key_of("alice", "pw"))
                .is_some()
        );
        assert!(matches!(
            auth.authenticate(Some(&wrong)).await,
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn principals_need_exactly_one_kind_of_secret() {
        let err = Auth::from_json(r#"{"principals":[{"name":"x","collections":[]}]}"#);
        assert!(err.is_err());
    }

    #[test]
    fn legacy_sha256_passwords_are_refused_with_the_way_out() {
        let text = format!(
            r#"{{"principals":[{{"name":"reader","username":"bob","password_sha256":"{}","collections":["*"]}}]}}"#,
            hex::encode(sha256(b"pw"))
        );
        let message = Auth::from_json_named(&text, "/etc/taxiway/auth.json")
            .unwrap_err()
            .to_string();
        for part in [
            "/etc/taxiway/auth.json",
            "\"bob\"",
            "password_sha256",
            "api hash-password",
        ] {
            assert!(message.contains(part), "{part} in {message}");
        }
    }
}
