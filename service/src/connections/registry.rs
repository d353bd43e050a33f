//! The schema-registry connection: its settings, the two calls Taxiway makes (register a schema under a subject, look a schema up by id), and the runtime objects ingest and the readers build from them.
//!
//! Written on reqwest rather than a registry client crate: the Rust clients (e.g.
//! `schema_registry_converter`) bring their own Avro codec and encode values themselves, while
//! Taxiway writes and reads its records with `schemas`' codecs and needs only these two calls of
//! the Confluent API (which Confluent, Apicurio's `ccompat` API, Karapace and Redpanda share).

use std::path::PathBuf;
use std::time::Duration;

use schemas::codec::{self, Framing};
use schemas::registry::{self, SchemaIds};

use super::read_password;
use crate::{Error, Secret};

/// The media type of the Confluent schema-registry API.
const REGISTRY_JSON: &str = "application/vnd.schemaregistry.v1+json";

/// How long one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How many times a registration that lost a race is tried, and the first wait between tries
/// (doubling): 5 tries span about 1.5 s.
const REGISTER_ATTEMPTS: u32 = 5;
const REGISTER_RETRY_WAIT: Duration = Duration::from_millis(100);

/// Where the schema registry is, if messages are framed for one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// A Confluent-compatible schema registry's base URL (e.g. http://registry:8081, or
    /// Apicurio's http://registry:8080/apis/ccompat/v7). Set, ingest registers the event
    /// schemas there (subjects `<topic>-<record full name>`) and writes the registry wire format;
    /// readers look the ids they meet up there. Unset, messages use Avro single-object framing.
    /// Readers decode both framings either way.
    #[arg(
        id = "schema_registry",
        long = "schema-registry",
        env = "TAXIWAY_SCHEMA_REGISTRY_URL",
        global = true
    )]
    pub url: Option<String>,
    /// The registry's user name (HTTP basic authentication; an API key on Confluent Cloud).
    #[arg(
        id = "schema_registry_username",
        long = "schema-registry-username",
        env = "TAXIWAY_SCHEMA_REGISTRY_USERNAME",
        requires = "schema_registry",
        global = true
    )]
    pub username: Option<String>,
    /// The registry's password (an API secret on Confluent Cloud); prefer the environment or
    /// the file.
    #[arg(
        id = "schema_registry_password",
        long = "schema-registry-password",
        env = "TAXIWAY_SCHEMA_REGISTRY_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<Secret>,
    /// A file holding the registry's password (one line).
    #[arg(
        id = "schema_registry_password_file",
        long = "schema-registry-password-file",
        env = "TAXIWAY_SCHEMA_REGISTRY_PASSWORD_FILE",
        conflicts_with = "schema_registry_password",
        global = true
    )]
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the registry's certificate; unset, the system's.
    #[arg(
        id = "schema_registry_ca",
        long = "schema-registry-ca",
        env = "TAXIWAY_SCHEMA_REGISTRY_CA",
        global = true
    )]
    pub ca: Option<PathBuf>,
}

impl RegistryArgs {
    /// The registry client, or `None` when no registry is configured.
    pub fn client(&self) -> Result<Option<SchemaRegistry>, Error> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("taxiway/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).map_err(|e| Error::registry(url, ca_error(ca, e)))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::registry(url, ca_error(ca, e)))?;
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let password = match (&self.password, &self.password_file) {
            (Some(password), _) => Some(password.clone()),
            (None, Some(file)) => Some(read_password(file)?),
            (None, None) => None,
        };
        let auth = match (&self.username, password) {
            (Some(user), password) => Some((user.clone(), password)),
            (None, Some(_)) => {
                return Err(Error::registry(
                    url,
                    "a password is set but no --schema-registry-username",
                ));
            }
            (None, None) => None,
        };
        Ok(Some(SchemaRegistry {
            http: http
                .build()
                .map_err(|e| Error::registry(url, format!("building the HTTP client: {e}")))?,
            base: url.trim_end_matches('/').to_owned(),
            auth,
        }))
    }
}

fn ca_error(ca: &std::path::Path, cause: impl std::fmt::Display) -> String {
    format!("CA file {}: {cause}", ca.display())
}

/// A Confluent-compatible schema registry.
#[derive(Clone)]
pub struct SchemaRegistry {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, Option<Secret>)>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize)]
struct SchemaBody<'a> {
    schema: &'a str,
}

#[derive(serde::Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(serde::Deserialize)]
struct SchemaAnswer {
    schema: String,
}

impl SchemaRegistry {
    /// The registry's base URL, for messages.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, REGISTRY_JSON);
        match &self.auth {
            Some((user, password)) => {
                request.basic_auth(user, password.as_ref().map(|p| p.0.as_str()))
            }
            None => request,
        }
    }

    /// Registers `avsc` under `subject` (a no-op answering the same id when it is there
    /// already) and returns its id. A schema the subject's compatibility rule refuses is an
    /// error naming the subject.
    ///
    /// Registration is idempotent by the API's contract, so a registry that loses a race with
    /// a concurrent registration (Apicurio's SQL storage answers 500, or 409 "already exists",
    /// when two subjects get the same schema text at once) is asked again a few times.
    pub async fn register(&self, subject: &str, avsc: &str) -> Result<u32, Error> {
        let what = format!("registering {subject}");
        let mut wait = REGISTER_RETRY_WAIT;
        let mut attempt = 1;
        loop {
            let answer = self
                .request(
                    reqwest::Method::POST,
                    &format!("/subjects/{}/versions", encode_path(subject)),
                )
                .header(reqwest::header::CONTENT_TYPE, REGISTRY_JSON)
                .json(&SchemaBody { schema: avsc })
                .send()
                .await
                .map_err(|e| self.unreachable(&what, &e))?;
            let status = answer.status();
            match self.json::<IdAnswer>(&what, answer).await {
                Ok(answer) => return Ok(answer.id),
                Err(e) if attempt < REGISTER_ATTEMPTS && lost_a_race(status, &e) => {
                    tracing::debug!(subject, attempt, error = %e, "registering again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The schema text registered under `id`, or `None` when the registry has no such id.
    pub async fn schema(&self, id: u32) -> Result<Option<String>, Error> {
        let what = format!("looking up schema id {id}");
        let answer = self
            .request(reqwest::Method::GET, &format!("/schemas/ids/{id}"))
            .send()
            .await
            .map_err(|e| self.unreachable(&what, &e))?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer: SchemaAnswer = self.json(&what, answer).await?;
        Ok(Some(answer.schema))
    }

    /// Registers every schema this build writes under its topic's subject and returns the
    /// framing that writes with their ids.
    pub async fn writer_framing(
        &self,
        objects_topic: &str,
        dead_letter_topic: &str,
    ) -> Result<Framing, Error> {
        let mut ids = SchemaIds::default();
        for schema in registry::current_schemas() {
            let topic = if schema.dead_letter {
                dead_letter_topic
            } else {
                objects_topic
            };
            let subject = registry::subject(topic, schema.full_name);
            let id = self.register(&subject, schema.avsc).await?;
            ids.write_with(schema.full_name, id, schema.avsc)
                .map_err(|e| Error::registry(&self.base, format!("{subject}: {e}")))?;
            tracing::info!(subject, id, registry = %self.base, "schema registered");
        }
        Ok(Framing::Registry(ids))
    }

    fn unreachable(&self, what: &str, error: &reqwest::Error) -> Error {
        // reqwest's Display stops at the outermost layer; the cause (refused, DNS, certificate)
        // is further down the chain.
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            cause = format!("{cause}: {inner}");
            source = inner.source();
        }
        Error::Registry {
            url: self.base.clone(),
            detail: format!("{what}: {cause}"),
            retriable: true,
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        answer: reqwest::Response,
    ) -> Result<T, Error> {
        let status = answer.status();
        let body = answer
            .text()
            .await
            .map_err(|e| self.unreachable(what, &e))?;
        if !status.is_success() {
            return Err(Error::Registry {
                url: self.base.clone(),
                detail: format!("{what}: {status}: {}", first_line(&body)),
                // A registry restarting or overloaded answers 5xx; a refusal (4xx) stays one.
                retriable: status.is_server_error(),
            });
        }
        serde_json::from_str(&body).map_err(|e| {
            Error::registry(
                &self.base,
                format!("{what}: unexpected answer ({e}): {}", first_line(&body)),
            )
        })
    }
}

/// Whether a refused registration looks like a race with a concurrent one rather than a
/// verdict on the schema: a server error, or a conflict saying the subject was just created.
/// An incompatible schema's conflict says "incompatible" and is final.
fn lost_a_race(status: reqwest::StatusCode, error: &Error) -> bool {
    status.is_server_error()
        || (status == reqwest::StatusCode::CONFLICT && error.to_string().contains("already exists"))
}

fn first_line(body: &str) -> &str {
    let line = body.lines().next().unwrap_or_default();
    line.get(..300).unwrap_or(line)
}

/// Subjects hold dots and dashes, which are safe in a path; anything else is percent-encoded.
fn encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a reader of the topics needs to decode either framing: the ids met so far, and the
/// registry to ask about new ones.
#[derive(Debug, Clone, Default)]
pub struct SchemaResolver {
    registry: Option<SchemaRegistry>,
    ids: SchemaIds,
}

impl SchemaResolver {
    /// A resolver over `registry` (none: registry-framed messages fail to decode, saying why).
    pub fn new(registry: Option<SchemaRegistry>) -> Self {
        SchemaResolver {
            registry,
            ids: SchemaIds::default(),
        }
    }

    /// The ids resolved so far, for [`schemas::decode_event_with`].
    pub fn ids(&self) -> &SchemaIds {
        &self.ids
    }

    /// The registry ids among `payloads` not looked up yet, each once.
    pub fn pending<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u32> {
        let mut ids: Vec<u32> = payloads
            .into_iter()
            .filter_map(codec::schema_id)
            .filter(|id| !self.ids.is_settled(*id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Looks up `ids` (from [`Self::pending`]). An id the registry does not have, or whose
    /// schema this build cannot read, is remembered as refused (its messages then fail to
    /// decode with that reason); a registry that cannot be reached is an error the caller
    /// retries ([`Error::is_retriable`]).
    pub async fn resolve(&mut self, ids: &[u32]) -> Result<(), Error> {
        for &id in ids {
            if self.ids.is_settled(id) {
                continue;
            }
            let Some(registry) = &self.registry else {
                self.ids.refuse(
                    id,
                    format!(
                        "schema-registry framed message (schema id {id}) but no \
                         --schema-registry is configured"
                    ),
                );
                continue;
            };
            match registry.schema(id).await? {
                None => self.ids.refuse(
                    id,
                    format!("schema id {id} is not in the registry {}", registry.url()),
                ),
                Some(avsc) => {
                    // A refusal is remembered by `learn` itself.
                    if let Err(e) = self.ids.learn(id, &avsc) {
                        tracing::warn!(id, error = %e, "registry schema not readable");
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn no_url_means_no_registry() {
        assert!(RegistryArgs::default().client().unwrap().is_none());
    }

    #[test]
    fn a_password_without_a_user_is_refused() {
        let args = RegistryArgs {
            url: Some("http://127.0.0.1:1".to_owned()),
            password: Some(Secret("s".to_owned())),
            ..RegistryArgs::default()
        };
        let error = args.client().unwrap_err().to_string();
        assert!(error.contains("--schema-registry-username"), "{error}");
    }

    #[test]
    fn subjects_are_safe_in_a_path() {
        assert_eq!(
            encode_path("taxiway.objects-io.taxiway.events.DeadLetter"),
            "taxiway.objects-io.taxiway.events.DeadLetter"
        );
        assert_eq!(encode_path("a b/c"), "a%20b%2Fc");
    }

    #[tokio::test]
    async fn without_a_registry_a_framed_message_is_refused_with_the_reason() {
        let mut resolver = SchemaResolver::new(None);
        let message = [0u8, 0, 0, 0, 42, 1, 2];
        let pending = resolver.pending([&message[..]]);
        assert_eq!(pending, [42]);
        resolver.resolve(&pending).await.unwrap();
        assert!(resolver.pending([&message[..]]).is_empty());
        let error = schemas::decode_event_with(&message, resolver.ids())
            .unwrap_err()
            .to_string();
        assert!(error.contains("no --schema-registry"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_a_retriable_error_naming_it() {
        let args = RegistryArgs {
            url: Some("http://127.0.0.1:9".to_owned()),
            ..RegistryArgs::default()
        };
        let mut resolver = SchemaResolver::new(args.client().unwrap());
        let message = [0u8, 0, 0, 0, 42, 1, 2];
        let pending = resolver.pending([&message[..]]);
        let error = resolver.resolve(&pending).await.unwrap_err();
        assert!(error.is_retriable());
        assert!(error.to_string().contains("127.0.0.1:9"), "{error}");
    }
}
