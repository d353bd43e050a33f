//! The ATT&CK Workbench REST API client: the collections list, collection bundles and the
//! attack-object lists, with Basic or challenge-apikey service authentication
//! (`../shared/design/workbench-api.md`).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use tokio::sync::Mutex;

use crate::error::Error;

/// How the service account authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: Basic base64(name:apikey)` on every request.
    Basic {
        service_name: String,
        apikey: String,
    },
    /// Challenge → HMAC-SHA256(apikey, challenge) → bearer token, renewed before it expires.
    Challenge {
        service_name: String,
        apikey: String,
    },
}

/// Which collection versions the list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    Latest,
    All,
}

/// One collection version as the collections list describes it: only the `stix` fields a
/// mirror needs (the list also carries `x_mitre_contents`, which we leave unparsed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CollectionVersion {
    pub id: String,
    pub modified: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub x_mitre_version: Option<String>,
}

#[derive(Deserialize)]
struct CollectionDocument {
    stix: CollectionVersion,
}

/// One attack object (or relationship) version as `attack-objects` and `recent-activity` list
/// it: the STIX object kept as the exact text received, and the collections the Workbench
/// records it in.
#[derive(Debug, Deserialize)]
pub struct ObjectDocument {
    pub stix: Box<RawValue>,
    #[serde(default)]
    pub workspace: ObjectWorkspace,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectWorkspace {
    #[serde(default)]
    pub collections: Vec<CollectionRef>,
}

/// `workspace.collections[]`: a collection version the object version was imported or added with.
#[derive(Debug, Clone, Deserialize)]
pub struct CollectionRef {
    pub collection_ref: String,
}

/// Which attack-object list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectList {
    /// `GET /api/attack-objects?versions=latest&includeRevoked=true&includeDeprecated=true`:
    /// the latest version of every object, relationships appended.
    Latest,
    /// `GET /api/recent-activity?limit=N&includeRevoked=true&includeDeprecated=true`: the N
    /// versions with the newest `modified`, objects and relationships together.
    Recent { limit: usize },
}

impl ObjectList {
    /// The request label of metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            ObjectList::Latest => "attack_objects",
            ObjectList::Recent { .. } => "recent_activity",
        }
    }
}

/// The `includePagination=true` shape; never asked for, accepted in case a proxy adds it.
#[derive(Deserialize)]
struct PaginatedList {
    data: Vec<ObjectDocument>,
}

/// Parses an attack-object list. CPU-bound for a whole Workbench (tens of MB): call it off the
/// async workers.
pub fn parse_object_list(url: &str, body: &[u8]) -> Result<Vec<ObjectDocument>, Error> {
    // Not an untagged enum: serde buffers those, and a RawValue cannot come from a buffer.
    let paginated = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if paginated {
        serde_json::from_slice::<PaginatedList>(body).map(|p| p.data)
    } else {
        serde_json::from_slice::<Vec<ObjectDocument>>(body)
    };
    parsed.map_err(|e| Error::Workbench {
        url: url.to_owned(),
        reason: format!("attack-object list is not the documented JSON array: {e}"),
    })
}

#[derive(Deserialize)]
struct Challenge {
    challenge: String,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct BearerToken {
    value: String,
    renew_after: Instant,
}

/// A Workbench REST API client. Cheap to share behind an `Arc`.
pub struct WorkbenchClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    token: Mutex<Option<BearerToken>>,
}

/// Bytes and wall time of one response, for the poll-cost figures in logs and metrics.
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    pub value: T,
    pub bytes: usize,
    pub elapsed: Duration,
}

impl WorkbenchClient {
    pub fn new(base_url: &str, auth: Auth, request_timeout: Duration) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("taxiway-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Workbench {
                url: base_url.to_owned(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(WorkbenchClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            auth,
            token: Mutex::new(None),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /api/collections/?versions=…`: every collection version (or the latest of each).
    pub async fn collections(
        &self,
        versions: Versions,
    ) -> Result<Fetched<Vec<CollectionVersion>>, Error> {
        let versions = match versions {
            Versions::Latest => "latest",
            Versions::All => "all",
        };
        let url = format!("{}/api/collections/", self.base);
        let fetched = self.get(&url, &[("versions", versions)]).await?;
        let docs: Vec<CollectionDocument> =
            serde_json::from_slice(&fetched.value).map_err(|e| Error::Workbench {
                url: url.clone(),
                reason: format!("collections list is not the documented JSON array: {e}"),
            })?;
        Ok(Fetched {
            value: docs.into_iter().map(|d| d.stix).collect(),
            bytes: fetched.bytes,
            elapsed: fetched.elapsed,
        })
    }

    /// `GET /api/collection-bundles?collectionId=…&collectionModified=…&previewOnly=true`:
    /// one collection version as a STIX bundle. `previewOnly` keeps the mirror from adding
    /// an export record to the collection on every fetch.
    pub async fn collection_bundle(
        &self,
        collection_id: &str,
        modified: &str,
    ) -> Result<Fetched<Vec<u8>>, Error> {
        let url = format!("{}/api/collection-bundles", self.base);
        self.get(
            &url,
            &[
                ("collectionId", collection_id),
                ("collectionModified", modified),
                ("previewOnly", "true"),
            ],
        )
        .await
    }

    /// One attack-object list, as raw bytes (parse it with [`parse_object_list`]); only documented
    /// query parameters, since the Workbench answers 400 to any other. Revoked and deprecated
    /// objects are asked for because revoking or deprecating is itself an edit.
    pub async fn object_list(&self, list: ObjectList) -> Result<Fetched<Vec<u8>>, Error> {
        match list {
            ObjectList::Latest => {
                let url = format!("{}/api/attack-objects", self.base);
                self.get(
                    &url,
                    &[
                        ("versions", "latest"),
                        ("includeRevoked", "true"),
                        ("includeDeprecated", "true"),
                    ],
                )
                .await
            }
            ObjectList::Recent { limit } => {
                let url = format!("{}/api/recent-activity", self.base);
                let limit = limit.to_string();
                self.get(
                    &url,
                    &[
                        ("limit", limit.as_str()),
                        ("includeRevoked", "true"),
                        ("includeDeprecated", "true"),
                    ],
                )
                .await
            }
        }
    }

    /// The URL an object list is read from, for the `source` of the events it yields.
    pub fn object_list_url(&self, list: ObjectList) -> String {
        match list {
            ObjectList::Latest => format!("{}/api/attack-objects", self.base),
            ObjectList::Recent { .. } => format!("{}/api/recent-activity", self.base),
        }
    }

    /// A GET with authentication; a bearer token refused as expired is renewed once.
    async fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<Fetched<Vec<u8>>, Error> {
        let started = Instant::now();
        let mut renewed = false;
        loop {
            let mut request = self.http.get(url).query(query);
            request = match &self.auth {
                Auth::None => request,
                Auth::Basic {
                    service_name,
                    apikey,
                } => request.basic_auth(service_name, Some(apikey)),
                Auth::Challenge { .. } => request.bearer_auth(self.bearer(renewed).await?),
            };
            let response = request.send().await.map_err(|e| self.transport(url, e))?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED
                && matches!(self.auth, Auth::Challenge { .. })
                && !renewed
            {
                renewed = true;
                continue;
            }
            let body = response.bytes().await.map_err(|e| self.transport(url, e))?;
            if !status.is_success() {
                return Err(Error::Workbench {
                    url: url.to_owned(),
                    reason: format!("HTTP {status}: {}", snippet(&body)),
                });
            }
            return Ok(Fetched {
                bytes: body.len(),
                value: body.to_vec(),
                elapsed: started.elapsed(),
            });
        }
    }

    /// The current bearer token, fetched through the challenge flow when missing, near
    /// expiry, or when `force` says the server refused the one we had.
    async fn bearer(&self, force: bool) -> Result<String, Error> {
        let Auth::Challenge {
            service_name,
            apikey,
        } = &self.auth
        else {
            return Err(Error::Workbench {
                url: self.base.clone(),
                reason: "bearer token requested without challenge authentication".to_owned(),
            });
        };
        let mut token = self.token.lock().await;
        if let Some(t) = token.as_ref()
            && !force
            && Instant::now() < t.renew_after
        {
            return Ok(t.value.clone());
        }
        let challenge_url = format!("{}/api/authn/service/apikey-challenge", self.base);
        let body = self.plain_get(&challenge_url, service_name, None).await?;
        let challenge: Challenge = serde_json::from_slice(&body).map_err(|e| Error::Workbench {
            url: challenge_url.clone(),
            reason: format!("unexpected challenge answer: {e}"),
        })?;
        let hash = challenge_hash(apikey, &challenge.challenge)?;
        let token_url = format!("{}/api/authn/service/apikey-token", self.base);
        let body = self
            .plain_get(&token_url, service_name, Some(format!("Apikey {hash}")))
            .await?;
        let new: Token = serde_json::from_slice(&body).map_err(|e| Error::Workbench {
            url: token_url.clone(),
            reason: format!("unexpected token answer: {e}"),
        })?;
        // Renew a little before the server's expiry so a long fetch does not start with a
        // token that dies half-way.
        let lifetime = Duration::from_secs(new.expires_in.unwrap_or(300));
        let renew_after = Instant::now() + lifetime.mul_f64(0.8);
        let value = new.access_token.clone();
        *token = Some(BearerToken {
            value: new.access_token,
            renew_after,
        });
        Ok(value)
    }

    async fn plain_get(
        &self,
        url: &str,
        service_name: &str,
        authorization: Option<String>,
    ) -> Result<Vec<u8>, Error> {
        let mut request = self.http.get(url).query(&[("serviceName", service_name)]);
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| self.transport(url, e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(url, e))?;
        if !status.is_success() {
            return Err(Error::Workbench {
                url: url.to_owned(),
                reason: format!("authentication failed, HTTP {status}: {}", snippet(&body)),
            });
        }
        Ok(body.to_vec())
    }

    fn transport(&self, url: &str, e: reqwest::Error) -> Error {
        Error::Workbench {
            url: url.to_owned(),
            reason: if e.is_timeout() {
                format!("timed out: {e}")
            } else {
                e.to_string()
            },
        }
    }
}

/// `lowercase hex of HMAC-SHA256(key = apikey, message = challenge)`, as the Workbench expects.
pub fn challenge_hash(apikey: &str, challenge: &str) -> Result<String, Error> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(apikey.as_bytes()).map_err(|e| Error::Workbench {
            url: String::new(),
            reason: format!("unusable apikey: {e}"),
        })?;
    mac.update(challenge.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// The start of an error body, for messages: Workbench errors are short plain strings.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_hash_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            challenge_hash("Jefe", "what do ya want for nothing?").unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn collection_documents_keep_only_the_stix_fields_a_mirror_needs() {
        let list = r#"[{"_id":"1","workspace":{"workflow":{"state":"reviewed"}},
            "stix":{"type":"x-mitre-collection","id":"x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09",
                    "modified":"2025-11-13T14:00:00.188Z","name":"ICS ATT&CK","x_mitre_version":"18.1",
                    "x_mitre_contents":[{"object_ref":"attack-pattern--1","object_modified":"2025-04-15T19:58:01.218Z"}]}},
            {"stix":{"id":"x-mitre-collection--2","modified":"2025-01-01T00:00:00.000Z"}}]"#;
        let docs: Vec<CollectionDocument> = serde_json::from_str(list).unwrap();
        assert_eq!(docs[0].stix.x_mitre_version.as_deref(), Some("18.1"));
        assert_eq!(docs[0].stix.name.as_deref(), Some("ICS ATT&CK"));
        assert_eq!(docs[1].stix.x_mitre_version, None);
    }

    #[test]
    fn object_lists_keep_the_stix_text_and_the_collection_refs_in_either_shape() {
        let doc = r#"{"workspace":{"workflow":{"state":"reviewed"},"attack_id":"T0800",
            "collections":[{"collection_ref":"x-mitre-collection--1","collection_modified":"2025-11-13T14:00:00.188Z"}]},
            "stix":{"type":"attack-pattern", "id":"attack-pattern--1"},"__t":"Technique"}"#;
        let plain = format!("[{doc},{{\"stix\":{{\"type\":\"relationship\"}}}}]");
        let docs = parse_object_list("u", plain.as_bytes()).unwrap();
        assert_eq!(
            docs[0].stix.get(),
            r#"{"type":"attack-pattern", "id":"attack-pattern--1"}"#
        );
        assert_eq!(
            docs[0].workspace.collections[0].collection_ref,
            "x-mitre-collection--1"
        );
        assert!(docs[1].workspace.collections.is_empty());
        let paginated =
            format!(r#"{{"pagination":{{"total":1,"offset":0,"limit":0}},"data":[{doc}]}}"#);
        assert_eq!(
            parse_object_list("u", paginated.as_bytes()).unwrap().len(),
            1
        );
        assert!(parse_object_list("u", b"Not authorized").is_err());
    }

    #[test]
    fn error_snippets_are_bounded() {
        let long = "e".repeat(1000);
        assert!(snippet(long.as_bytes()).chars().count() <= 201);
        assert_eq!(snippet(b"  Not authorized\n"), "Not authorized");
    }
}
