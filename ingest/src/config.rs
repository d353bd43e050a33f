//! Command-line and environment settings of `ingest`, and the runtime objects they build.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use service::parse_duration;
pub use service::{KafkaArgs, LogArgs, Secret};

pub use crate::producer::TopicArgs;

use schemas::Timestamp;

use crate::attack_domain::DomainChoice;
use crate::attack_index::{AttackIndex, IndexClient};
use crate::error::Error;
use crate::import::Import;
use crate::plan::CollectionInfo;
use crate::workbench::{Auth, Schedule, Workbench, WorkbenchClient};

/// A bundle file larger than this is refused unless told otherwise (Enterprise is about 45 MB).
const DEFAULT_MAX_BUNDLE_BYTES: u64 = 1 << 30;

#[derive(Debug, Parser)]
#[command(
    name = "ingest",
    version,
    about = "Publish STIX bundles and ATT&CK Workbench collections as Avro events on Kafka"
)]
pub struct Settings {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9101).
    #[arg(long, env = "TAXIWAY_INGEST_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
    #[command(subcommand)]
    pub command: Command,
    /// Publish to this embedded log instead of Kafka (set by `taxiway serve`, which runs ingest
    /// in its own process; no flag: another process's appends would go unnoticed by it).
    #[arg(skip)]
    pub embedded: Option<eventlog::EmbeddedLog>,
    /// Count into these metrics instead of a registry of its own (set by `taxiway serve`, which
    /// serves them at its API's `/metrics`).
    #[arg(skip)]
    pub metrics: Option<crate::Metrics>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import STIX 2.0/2.1 bundle files (.json, .json.gz, .json.zst) or directories of them.
    Import(ImportConfig),
    /// Mirror an ATT&CK Workbench REST API: every collection version becomes a release.
    Workbench(WorkbenchConfig),
    /// Mirror MITRE's published ATT&CK data from its collection index (index.json): every
    /// release of every collection, in release order.
    AttackIndex(AttackIndexConfig),
}

#[derive(Debug, Clone, Args)]
// What names bundles without an x-mitre-collection object: one or the other, not both.
#[command(group(ArgGroup::new("naming").args(["collection", "attack_domain"])))]
pub struct ImportConfig {
    /// Bundle files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The TAXII collection of bundles without an x-mitre-collection object.
    #[arg(long, env = "TAXIWAY_IMPORT_COLLECTION")]
    pub collection: Option<String>,
    /// Title of that collection.
    #[arg(long, env = "TAXIWAY_IMPORT_TITLE", requires = "collection")]
    pub title: Option<String>,
    /// Description of that collection.
    #[arg(long, env = "TAXIWAY_IMPORT_DESCRIPTION", requires = "collection")]
    pub description: Option<String>,
    /// Name bundles without an x-mitre-collection object after the one ATT&CK domain their
    /// objects carry (x_mitre_domains): MITRE's collection id, title and description, and the
    /// release from --release or the file name (enterprise-attack-18.1.json → 18.1). `auto`
    /// takes whichever domain that is; enterprise-attack, mobile-attack or ics-attack insists.
    #[arg(long, env = "TAXIWAY_IMPORT_ATTACK_DOMAIN")]
    pub attack_domain: Option<DomainChoice>,
    /// Declare each bundle a release with this label (served at /api/v21/attack-<label>).
    #[arg(long, env = "TAXIWAY_IMPORT_RELEASE", requires = "naming")]
    pub release: Option<String>,
    /// Timestamp of that release (RFC 3339); default: the newest version in the bundle.
    #[arg(long, env = "TAXIWAY_IMPORT_RELEASE_TIMESTAMP", requires = "release")]
    pub release_timestamp: Option<String>,
    /// Refuse bundles whose JSON is larger than this many bytes.
    #[arg(long, env = "TAXIWAY_MAX_BUNDLE_BYTES", default_value_t = DEFAULT_MAX_BUNDLE_BYTES)]
    pub max_bundle_bytes: u64,
}

#[derive(Debug, Clone, Args)]
pub struct WorkbenchConfig {
    /// Base URL of the Workbench REST API (the part before /api).
    #[arg(long, env = "TAXIWAY_WORKBENCH_URL")]
    pub url: String,
    /// How to authenticate: none, basic (service name + apikey) or challenge (apikey challenge → token).
    #[arg(long, env = "TAXIWAY_WORKBENCH_AUTH", value_enum, default_value_t = AuthMode::Basic)]
    pub auth: AuthMode,
    /// Service account name configured in the Workbench.
    #[arg(
        long,
        env = "TAXIWAY_WORKBENCH_SERVICE",
        default_value = "taxii-server"
    )]
    pub service_name: String,
    /// Service account apikey.
    #[arg(long, env = "TAXIWAY_WORKBENCH_APIKEY", hide_env_values = true)]
    pub apikey: Option<Secret>,
    /// How often to ask for the latest version of each collection.
    #[arg(long, env = "TAXIWAY_WORKBENCH_POLL", default_value = "5s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How often to list every version of every collection (catches older versions added late).
    #[arg(long, env = "TAXIWAY_WORKBENCH_FULL_SYNC", default_value = "10m", value_parser = parse_duration)]
    pub full_sync_interval: Duration,
    /// Also publish object versions edited in the Workbench between collection releases: to the
    /// history root only, as versions of the collections holding the object (no release).
    #[arg(long, env = "TAXIWAY_WORKBENCH_INCLUDE_UNRELEASED")]
    pub include_unreleased: bool,
    /// With --include-unreleased: how often to read the most recently modified object versions
    /// (`recent-activity`, a few hundred KB). After a failed scan the wait doubles, up to
    /// --unreleased-full-scan-interval, until a scan works again.
    #[arg(long, env = "TAXIWAY_WORKBENCH_UNRELEASED_POLL", default_value = "30s", value_parser = parse_duration)]
    pub unreleased_poll_interval: Duration,
    /// With --include-unreleased: how often to read the latest version of every object
    /// (`attack-objects`, tens of MB for a whole Workbench); also at start.
    #[arg(long, env = "TAXIWAY_WORKBENCH_UNRELEASED_FULL_SCAN", default_value = "1h", value_parser = parse_duration)]
    pub unreleased_full_scan_interval: Duration,
    /// Timeout of one HTTP request (bundles can be ~45 MB).
    #[arg(long, env = "TAXIWAY_WORKBENCH_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Sync once and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AttackIndexConfig {
    /// URL of the index, e.g.
    /// https://raw.githubusercontent.com/mitre-attack/attack-stix-data/master/index.json
    #[arg(env = "TAXIWAY_ATTACK_INDEX_URL")]
    pub url: String,
    /// How often to read the index again (MITRE publishes a few releases a year).
    #[arg(long, env = "TAXIWAY_ATTACK_INDEX_POLL", default_value = "1h", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Timeout of one HTTP request (an Enterprise release is about 45 MB).
    #[arg(long, env = "TAXIWAY_ATTACK_INDEX_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Refuse release files whose JSON is larger than this many bytes.
    #[arg(long, env = "TAXIWAY_MAX_BUNDLE_BYTES", default_value_t = 1 << 30)]
    pub max_bundle_bytes: u64,
    /// Import what the index lists once and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    None,
    Basic,
    Challenge,
}

impl Settings {
    /// `command` with every other setting at its default (the dev broker on loopback): settings
    /// built in code, as tests and benchmarks do, rather than parsed.
    pub fn new(command: impl Into<Command>) -> Self {
        Settings {
            kafka: KafkaArgs::default(),
            topics: TopicArgs::default(),
            log: LogArgs::default(),
            metrics_addr: None,
            command: command.into(),
            embedded: None,
            metrics: None,
        }
    }
}

impl AttackIndexConfig {
    /// A mirror of the index at `url` with the flags' defaults; `once` as `--once`.
    pub fn new(url: &str, once: bool) -> Self {
        AttackIndexConfig {
            url: url.to_owned(),
            poll_interval: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(300),
            max_bundle_bytes: 1 << 30,
            once,
        }
    }
}

impl From<AttackIndexConfig> for Command {
    fn from(config: AttackIndexConfig) -> Self {
        Command::AttackIndex(config)
    }
}

impl From<ImportConfig> for Command {
    fn from(config: ImportConfig) -> Self {
        Command::Import(config)
    }
}

impl From<WorkbenchConfig> for Command {
    fn from(config: WorkbenchConfig) -> Self {
        Command::Workbench(config)
    }
}

impl ImportConfig {
    /// An import of `paths` with the flags' defaults: each bundle names its own collection.
    pub fn new<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        ImportConfig {
            paths: paths.into_iter().map(Into::into).collect(),
            collection: None,
            title: None,
            description: None,
            release: None,
            release_timestamp: None,
            attack_domain: None,
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
        }
    }

    /// As `--collection ID --title TITLE`: the collection of bundles that do not name one.
    pub fn collection(mut self, id: &str, title: &str) -> Self {
        self.collection = Some(id.to_owned());
        self.title = Some(title.to_owned());
        self
    }

    /// As `--attack-domain CHOICE`: bundles without an `x-mitre-collection` are named after
    /// their ATT&CK domain.
    pub fn attack_domain(mut self, choice: DomainChoice) -> Self {
        self.attack_domain = Some(choice);
        self
    }

    /// As `--release LABEL`: each bundle is a release with this label.
    pub fn release(mut self, label: &str) -> Self {
        self.release = Some(label.to_owned());
        self
    }

    /// The import these settings describe; a release timestamp that does not parse is refused
    /// before anything is read.
    pub(crate) fn build(&self) -> Result<Import, Error> {
        let release_timestamp = self
            .release_timestamp
            .as_deref()
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| Error::Config(format!("--release-timestamp: {e}")))?;
        Ok(Import {
            paths: self.paths.clone(),
            collection: self.collection.as_ref().map(|id| CollectionInfo {
                id: id.clone(),
                title: self.title.clone().unwrap_or_else(|| id.clone()),
                description: self.description.clone(),
            }),
            release_label: self.release.clone(),
            release_timestamp,
            max_bundle_bytes: self.max_bundle_bytes,
            attack_domain: self.attack_domain,
        })
    }
}

impl WorkbenchConfig {
    /// A mirror of the Workbench at `url` with the flags' defaults (basic authentication, which
    /// needs an `apikey`; polling until shut down).
    pub fn new(url: &str) -> Self {
        WorkbenchConfig {
            url: url.to_owned(),
            auth: AuthMode::Basic,
            service_name: "taxii-server".to_owned(),
            apikey: None,
            poll_interval: Duration::from_secs(5),
            full_sync_interval: Duration::from_secs(10 * 60),
            include_unreleased: false,
            unreleased_poll_interval: Duration::from_secs(30),
            unreleased_full_scan_interval: Duration::from_secs(60 * 60),
            request_timeout: Duration::from_secs(120),
            once: false,
        }
    }

    /// The mirror these settings describe, with its client authenticating as configured.
    pub(crate) fn build(&self) -> Result<Workbench, Error> {
        let service_name = self.service_name.clone();
        let auth = match (self.auth, self.apikey.as_ref().map(|s| s.0.clone())) {
            (AuthMode::None, _) => Auth::None,
            (AuthMode::Basic, Some(apikey)) => Auth::Basic {
                service_name,
                apikey,
            },
            (AuthMode::Challenge, Some(apikey)) => Auth::Challenge {
                service_name,
                apikey,
            },
            (_, None) => {
                return Err(Error::Config(
                    "--apikey (TAXIWAY_WORKBENCH_APIKEY) is required unless --auth none".to_owned(),
                ));
            }
        };
        Ok(Workbench {
            client: Arc::new(WorkbenchClient::new(&self.url, auth, self.request_timeout)?),
            poll_interval: self.poll_interval,
            full_sync_interval: self.full_sync_interval,
            unreleased: self.include_unreleased.then_some(Schedule {
                poll_interval: self.unreleased_poll_interval,
                full_scan_interval: self.unreleased_full_scan_interval,
            }),
            once: self.once,
        })
    }
}

impl AttackIndexConfig {
    /// The mirror these settings describe; a URL that does not parse is refused at start.
    pub(crate) fn build(&self) -> Result<AttackIndex, Error> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| Error::Config(format!("attack-index URL {:?}: {e}", self.url)))?;
        Ok(AttackIndex {
            client: IndexClient::new(self.request_timeout)?,
            url,
            poll_interval: self.poll_interval,
            max_bundle_bytes: self.max_bundle_bytes,
            once: self.once,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_the_logged_configuration() {
        let settings = Settings::try_parse_from([
            "ingest",
            "workbench",
            "--url",
            "http://wb:3000",
            "--apikey",
            "secret-squirrel",
        ])
        .unwrap();
        let logged = format!("{settings:?}");
        assert!(!logged.contains("secret-squirrel"), "{logged}");
        assert!(logged.contains("<redacted>"));
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Settings::command().debug_assert();
    }

    /// `argv` parsed without the environment (`dev/test` exports the addresses of the services
    /// it runs): what the flags declare.
    fn declared(argv: &[&str]) -> Settings {
        use clap::{CommandFactory, FromArgMatches};
        fn without_env(command: clap::Command) -> clap::Command {
            command
                .mut_args(|a| a.env(None))
                .mut_subcommands(without_env)
        }
        let matches = without_env(Settings::command()).get_matches_from(argv);
        Settings::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn settings_built_in_code_have_the_defaults_the_flags_declare() {
        assert_eq!(
            format!("{:?}", Settings::new(ImportConfig::new(["x.json"]))),
            format!("{:?}", declared(&["ingest", "import", "x.json"]))
        );
        assert_eq!(
            format!(
                "{:?}",
                Settings::new(WorkbenchConfig::new("http://wb:3000"))
            ),
            format!(
                "{:?}",
                declared(&["ingest", "workbench", "--url", "http://wb:3000"])
            )
        );
        assert_eq!(
            format!(
                "{:?}",
                Settings::new(AttackIndexConfig::new("http://x/index.json", true))
            ),
            format!(
                "{:?}",
                declared(&["ingest", "attack-index", "http://x/index.json", "--once"])
            )
        );
        assert_eq!(
            format!(
                "{:?}",
                Settings::new(ImportConfig::new(["x.json"]).attack_domain(DomainChoice::Auto))
            ),
            format!(
                "{:?}",
                declared(&["ingest", "import", "x.json", "--attack-domain", "auto"])
            )
        );
        let import = ImportConfig::new(["x.json"])
            .collection("c", "C")
            .release("1.0");
        assert_eq!(
            format!("{:?}", Settings::new(import)),
            format!(
                "{:?}",
                declared(&[
                    "ingest",
                    "import",
                    "x.json",
                    "--collection",
                    "c",
                    "--title",
                    "C",
                    "--release",
                    "1.0"
                ])
            )
        );
    }

    #[test]
    fn unreleased_edits_are_off_by_default_and_scanned_less_often_than_releases() {
        use clap::CommandFactory;
        // The declared defaults, not whatever the environment of the test exports.
        let command = Settings::command();
        let workbench = command.find_subcommand("workbench").unwrap();
        let arg = |name: &str| {
            workbench
                .get_arguments()
                .find(|a| a.get_id() == name)
                .unwrap()
        };
        let declared =
            |name: &str| -> String { arg(name).get_default_values()[0].to_string_lossy().into() };
        // A plain switch: absent means off.
        assert!(matches!(
            arg("include_unreleased").get_action(),
            clap::ArgAction::SetTrue
        ));
        let poll = parse_duration(&declared("poll_interval")).unwrap();
        let recent = parse_duration(&declared("unreleased_poll_interval")).unwrap();
        let full = parse_duration(&declared("unreleased_full_scan_interval")).unwrap();
        assert!(
            poll <= recent && recent < full,
            "{poll:?} {recent:?} {full:?}"
        );
    }

    #[test]
    fn release_flags_need_a_collection() {
        let err = Settings::try_parse_from(["ingest", "import", "x.json", "--release", "1.0"]);
        assert!(err.is_err());
        let ok = Settings::try_parse_from([
            "ingest",
            "import",
            "x.json",
            "--collection",
            "c",
            "--title",
            "T",
            "--release",
            "1.0",
        ])
        .unwrap();
        let Command::Import(import) = ok.command else {
            panic!("import expected")
        };
        assert_eq!(
            import.build().unwrap().release_label.as_deref(),
            Some("1.0")
        );
    }

    #[test]
    fn a_release_timestamp_that_does_not_parse_is_refused_before_anything_is_read() {
        let settings = Settings::try_parse_from([
            "ingest",
            "import",
            "x.json",
            "--collection",
            "c",
            "--release",
            "1.0",
            "--release-timestamp",
            "yesterday",
        ])
        .unwrap();
        let Command::Import(import) = settings.command else {
            panic!("import expected")
        };
        let error = import.build().unwrap_err().to_string();
        assert!(error.contains("--release-timestamp"), "{error}");
    }

    #[test]
    fn an_authenticating_workbench_client_needs_an_apikey() {
        let settings = |auth: &str| {
            let settings = Settings::try_parse_from([
                "ingest",
                "workbench",
                "--url",
                "http://wb:3000",
                "--auth",
                auth,
            ])
            .unwrap();
            let Command::Workbench(workbench) = settings.command else {
                panic!("workbench expected")
            };
            workbench
        };
        assert!(settings("none").build().is_ok());
        for auth in ["basic", "challenge"] {
            let error = settings(auth).build().err().unwrap().to_string();
            assert!(error.contains("--apikey"), "{auth}: {error}");
        }
    }
}
