//! Command-line and environment configuration of `api`, and the settings handlers read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use service::Secret;
use service::{CqlArgs, LogArgs, parse_bytes, parse_duration};

/// The defaults are attack-taxii.mitre.org's texts, so that existing clients see the same
/// documents: `DEFAULT_API_ROOT_TITLE` and `DEFAULT_API_ROOT_DESCRIPTION` of MITRE's server
/// (mitre-attack/attack-workbench-taxii-server, `src/config/defaults.ts`; the same texts in its
/// user guide `docs/USAGE.md`, "Discovery" and "Get API Root Information"), and the suffixes its
/// `discovery.service.ts` gives pinned roots. There is no default contact: a mirror must not
/// hand out MITRE's address.
pub const DEFAULT_TITLE: &str = "MITRE ATT&CK TAXII 2.1";
pub const DEFAULT_DESCRIPTION: &str =
    "This API Root contains TAXII 2.1 REST API endpoints that serve MITRE ATT&CK STIX 2.1 data";
pub const DEFAULT_PINNED_TITLE_SUFFIX: &str = " (ATT&CK v{label})";
pub const DEFAULT_PINNED_DESCRIPTION_SUFFIX: &str =
    " This API Root is pinned to ATT&CK release {label}.";
/// The history root is ours, not MITRE's: its text says what it serves.
pub const DEFAULT_HISTORY_DESCRIPTION_SUFFIX: &str = " This API Root serves every version of every \
     object ever published; date_added is when this server added the version.";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "api",
    version,
    about = "Read-only TAXII 2.1 server over the Taxiway projections"
)]
pub struct Config {
    /// Without a command: serve.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "TAXIWAY_API_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub cql: CqlArgs,
    #[command(flatten)]
    pub server: ServerConfig,
    /// JSON file of principals and their read rights; authentication is off without it.
    #[arg(long, env = "TAXIWAY_API_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// What `api` can do besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the argon2id hash of a password for the auth file's `password_hash` (asks on the
    /// terminal without echo, or reads one line of stdin).
    HashPassword,
}

/// What the HTTP side needs; also built directly by tests.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Path prefix of the default root; pinned and history roots live under it.
    #[arg(long, env = "TAXIWAY_API_PREFIX", default_value = "/api/v21")]
    pub prefix: String,
    /// Name of the root that serves every version ever published.
    #[arg(long, env = "TAXIWAY_API_HISTORY_ROOT", default_value = "history")]
    pub history_root: String,
    /// Prefix of the per-release roots: <prefix>/<pinned-prefix><label>.
    #[arg(long, env = "TAXIWAY_API_PINNED_PREFIX", default_value = "attack-")]
    pub pinned_prefix: String,
    /// Title of the discovery document and the default root.
    #[arg(long, env = "TAXIWAY_API_TITLE", default_value = DEFAULT_TITLE)]
    pub title: String,
    /// Description of the discovery document and the roots.
    #[arg(long, env = "TAXIWAY_API_DESCRIPTION", default_value = DEFAULT_DESCRIPTION)]
    pub description: String,
    /// Contact in the discovery document; absent unless set.
    #[arg(long, env = "TAXIWAY_API_CONTACT")]
    pub contact: Option<String>,
    /// Appended to the title of a pinned root; `{label}` is replaced by the release label.
    #[arg(long, env = "TAXIWAY_API_PINNED_TITLE_SUFFIX", default_value = DEFAULT_PINNED_TITLE_SUFFIX)]
    pub pinned_title_suffix: String,
    /// Appended to the description of a pinned root; `{label}` is replaced by the release label.
    #[arg(long, env = "TAXIWAY_API_PINNED_DESCRIPTION_SUFFIX", default_value = DEFAULT_PINNED_DESCRIPTION_SUFFIX)]
    pub pinned_description_suffix: String,
    /// Appended to the title of the history root.
    #[arg(
        long,
        env = "TAXIWAY_API_HISTORY_TITLE_SUFFIX",
        default_value = " (all versions)"
    )]
    pub history_title_suffix: String,
    /// Appended to the description of the history root.
    #[arg(long, env = "TAXIWAY_API_HISTORY_DESCRIPTION_SUFFIX", default_value = DEFAULT_HISTORY_DESCRIPTION_SUFFIX)]
    pub history_description_suffix: String,
    /// max_content_length announced by every root. TAXII 2.1 §4.2.1 requires a positive
    /// integer; nothing can be posted here, so a small value is honest (1000, as in MITRE's
    /// guide to its server).
    #[arg(long, env = "TAXIWAY_API_MAX_CONTENT_LENGTH", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_content_length: u64,
    /// The largest `limit` honoured; larger values are capped.
    #[arg(long, env = "TAXIWAY_API_MAX_PAGE_SIZE", default_value_t = 10_000)]
    pub max_page_size: usize,
    /// How often to poll collection revisions and the active generation.
    #[arg(long, env = "TAXIWAY_API_POLL", default_value = "500ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Filter results kept for paging (per collection revision, view and filter).
    #[arg(long, env = "TAXIWAY_API_RESULT_CACHE", default_value_t = 512)]
    pub result_cache_entries: usize,
    /// Memory for whole-collection responses kept compressed (per ETag and encoding; 0 = off):
    /// fetching a collection without `limit` then costs a copy, not a compression.
    #[arg(long, env = "TAXIWAY_API_COMPRESSED_CACHE_BYTES", default_value = "256MiB", value_parser = parse_bytes::<usize>)]
    pub compressed_cache_bytes: usize,
    /// Memory bound of collection snapshots: collections whose object JSON does not fit are served
    /// lean, fetching the JSON of each response from CQL (docs/api.md, "Memory bound").
    #[arg(long, env = "TAXIWAY_API_MAX_SNAPSHOT_BYTES", default_value = "4GiB", value_parser = parse_bytes::<usize>)]
    pub max_snapshot_bytes: usize,
    /// HMAC key of `next` cursors; replicas behind one load balancer must share it. Without it
    /// each process signs with a random key, and its cursors fail on any other replica.
    #[arg(long, env = "TAXIWAY_API_CURSOR_KEY", hide_env_values = true)]
    pub cursor_key: Option<Secret>,
    /// Origins whose pages may read the TAXII routes from a browser (CORS), e.g.
    /// `https://mitre-attack.github.io` for the ATT&CK Navigator: repeat the flag or separate
    /// with commas; `*` lets any site read (a public server). CORS is off without it.
    #[arg(
        long = "cors-origin",
        env = "TAXIWAY_API_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// The URL clients reach this server at (`https://taxii.example.org`), for the links and
    /// snippets of the home page; without it they are built from the request's `Host`.
    #[arg(long, env = "TAXIWAY_API_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub limits: Limits,
}

/// What one client may hold of the server: connections, time and requests in flight
/// (docs/reliability.md, "API limits"). Every value must be positive.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Time a client has to send a complete request head, counted from when the server starts
    /// waiting for it (connection opened, or the previous response sent): a client trickling
    /// header bytes is cut off here. 10 s is ample for any real client on a slow link.
    #[arg(long, env = "TAXIWAY_API_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,
    /// A connection with no request being handled and no byte moving either way for this long is
    /// closed: an idle keep-alive connection, or a client that stopped reading its response.
    /// The header-read timeout also counts the wait for the next request, so an idle connection
    /// is closed after the shorter of the two. 5 s, as Node's default: clients reconnect cheaply,
    /// and idle sockets are what an attacker piles up.
    #[arg(long, env = "TAXIWAY_API_KEEP_ALIVE_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub keep_alive_timeout: Duration,
    /// Time a TAXII request may take until its response head; past it, 504 with a TAXII body.
    /// Held pages answer in well under a millisecond and a lean page waits for CQL (10 s per
    /// request), so 30 s only cuts requests that are stuck. A streamed body is bounded by the
    /// keep-alive timeout instead: it must keep moving.
    #[arg(long, env = "TAXIWAY_API_RESPONSE_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub response_timeout: Duration,
    /// Open connections at once; more are closed as soon as they are accepted. An idle connection
    /// costs a task and ~10 KiB (more while a response streams): 10,000 stay within a few hundred
    /// MiB on a small host. Keep it below the process' open-file limit (`ulimit -n`).
    #[arg(long, env = "TAXIWAY_API_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// TAXII requests handled at once (until their response head); more are answered 503 with
    /// `Retry-After` at once rather than queued. A held page takes well under a millisecond of
    /// CPU, so 512 waiting means the replica is far behind and another replica should answer.
    /// Health and metrics endpoints are not counted.
    #[arg(long, env = "TAXIWAY_API_MAX_IN_FLIGHT", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Live streams (`…/collections/{id}/stream/`) open at once; one more is answered 503 with
    /// `Retry-After`. An idle subscriber costs a task, a connection and a small buffer (measured
    /// in docs/benchmarks.md); a stream holds no request-in-flight slot once its head is sent.
    #[arg(long, env = "TAXIWAY_API_MAX_STREAM_SUBSCRIBERS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_stream_subscribers: u32,
    /// On shutdown, time open responses get to finish after the listener closes; connections
    /// still open then are cut. Within Kubernetes' default 30 s grace period.
    #[arg(long, env = "TAXIWAY_API_DRAIN_TIMEOUT", default_value = "20s", value_parser = positive_duration)]
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_in_flight: 512,
            max_stream_subscribers: 2_000,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// A duration that must not be zero: a zero timeout would cut every connection at once.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: must be longer than zero"));
    }
    Ok(d)
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            prefix: "/api/v21".into(),
            history_root: "history".into(),
            pinned_prefix: "attack-".into(),
            title: DEFAULT_TITLE.into(),
            description: DEFAULT_DESCRIPTION.into(),
            contact: None,
            pinned_title_suffix: DEFAULT_PINNED_TITLE_SUFFIX.into(),
            pinned_description_suffix: DEFAULT_PINNED_DESCRIPTION_SUFFIX.into(),
            history_title_suffix: " (all versions)".into(),
            history_description_suffix: DEFAULT_HISTORY_DESCRIPTION_SUFFIX.into(),
            max_content_length: 1000,
            max_page_size: 10_000,
            poll_interval: Duration::from_millis(500),
            result_cache_entries: 512,
            compressed_cache_bytes: 256 << 20,
            max_snapshot_bytes: 4 << 30,
            cursor_key: None,
            cors_origins: Vec::new(),
            public_url: None,
            limits: Limits::default(),
        }
    }
}

impl ServerConfig {
    /// The prefix without a trailing slash, starting with one (`/api/v21`).
    pub fn normalized_prefix(&self) -> String {
        let p = self.prefix.trim_end_matches('/');
        if p.starts_with('/') {
            p.to_owned()
        } else {
            format!("/{p}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }

    #[test]
    fn hash_password_is_a_command_and_serving_is_the_default() {
        let c = Config::try_parse_from(["api", "hash-password"]).unwrap();
        assert!(matches!(c.command, Some(Command::HashPassword)));
        assert!(Config::try_parse_from(["api"]).unwrap().command.is_none());
    }

    #[test]
    fn a_max_content_length_of_zero_is_refused() {
        let error = Config::try_parse_from(["api", "--max-content-length", "0"]).unwrap_err();
        assert!(error.to_string().contains("max-content-length"), "{error}");
        let c = Config::try_parse_from(["api", "--max-content-length", "4096"]).unwrap();
        assert_eq!(c.server.max_content_length, 4096);
    }

    #[test]
    fn cors_origins_repeat_or_split_on_commas_and_default_to_none() {
        let c = Config::try_parse_from([
            "api",
            "--cors-origin",
            "https://a.example",
            "--cors-origin",
            "https://b.example,http://c.example:8080",
        ])
        .unwrap();
        assert_eq!(
            c.server.cors_origins,
            [
                "https://a.example",
                "https://b.example",
                "http://c.example:8080"
            ]
        );
        assert!(ServerConfig::default().cors_origins.is_empty());
    }

    #[test]
    fn limits_parse_from_flags_and_refuse_zero() {
        let c = Config::try_parse_from([
            "api",
            "--header-read-timeout",
            "2s",
            "--keep-alive-timeout",
            "500ms",
            "--max-connections",
            "3",
            "--max-in-flight",
            "7",
        ])
        .unwrap();
        assert_eq!(c.server.limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(
            c.server.limits.keep_alive_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(c.server.limits.max_connections, 3);
        assert_eq!(c.server.limits.max_in_flight, 7);
        for flag in [
            "--header-read-timeout",
            "--keep-alive-timeout",
            "--response-timeout",
            "--drain-timeout",
            "--max-connections",
            "--max-in-flight",
        ] {
            let error = Config::try_parse_from(["api", flag, "0"]).unwrap_err();
            assert!(error.to_string().contains(&flag[2..]), "{flag}: {error}");
        }
    }

    #[test]
    fn defaults_match_the_documented_ones_and_secrets_are_redacted() {
        use clap::CommandFactory;
        // Defaults as declared: parsing also reads the environment, where `dev/test` exports
        // the addresses of the services it runs.
        let command = Config::command();
        let default_of = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_default_values().first())
                .map(|v| v.to_string_lossy().into_owned())
        };
        assert_eq!(default_of("listen").as_deref(), Some("0.0.0.0:8000"));
        assert_eq!(default_of("nodes").as_deref(), Some("127.0.0.1:9042"));
        assert_eq!(default_of("keyspace").as_deref(), Some("taxiway"));
        let c = Config::try_parse_from(["api", "--cql-password", "hunter2", "--cursor-key", "k3y"])
            .unwrap();
        let d = ServerConfig::default();
        assert_eq!(c.server.prefix, d.prefix);
        assert_eq!(c.server.pinned_title_suffix, d.pinned_title_suffix);
        assert_eq!(c.server.description, d.description);
        assert_eq!(
            c.server.pinned_description_suffix,
            d.pinned_description_suffix
        );
        assert_eq!(
            c.server.history_description_suffix,
            d.history_description_suffix
        );
        assert_eq!(c.server.poll_interval, d.poll_interval);
        assert_eq!(c.server.max_content_length, d.max_content_length);
        assert!(d.max_content_length > 0);
        let (parsed, declared) = (&c.server.limits, &d.limits);
        assert_eq!(parsed.header_read_timeout, declared.header_read_timeout);
        assert_eq!(parsed.keep_alive_timeout, declared.keep_alive_timeout);
        assert_eq!(parsed.response_timeout, declared.response_timeout);
        assert_eq!(parsed.max_connections, declared.max_connections);
        assert_eq!(parsed.max_in_flight, declared.max_in_flight);
        assert_eq!(parsed.drain_timeout, declared.drain_timeout);
        let logged = format!("{c:?}");
        assert!(
            !logged.contains("hunter2") && !logged.contains("k3y"),
            "{logged}"
        );
    }
}
