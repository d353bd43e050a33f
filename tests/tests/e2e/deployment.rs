//! The deployment files, checked statically (no Docker engine runs here): every environment
//! variable docker-compose.yml sets is one a service reads, every command it runs parses, and the
//! Dockerfile builds the binaries the compose file calls.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde_norway::Value;

/// The workspace version: the tests crate shares it (`version.workspace = true`).
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A path in the repository.
pub(crate) fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A file of the repository, as text.
pub(crate) fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of a file (Kubernetes files hold several, split by `---`).
pub(crate) fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{relative} does not parse: {e}"))
        })
        .collect()
}

/// One YAML document, with its merge keys (`<<: *anchor`, as Compose uses them) applied.
pub(crate) fn yaml(relative: &str) -> Value {
    let mut documents = yaml_documents(relative);
    assert_eq!(documents.len(), 1, "{relative}: one document");
    let mut document = documents.remove(0);
    document
        .apply_merge()
        .unwrap_or_else(|e| panic!("{relative}: merge keys: {e}"));
    document
}

/// Every environment variable any of the three services reads (clap `env = …` on every flag).
pub(crate) fn variables_the_services_read() -> BTreeSet<String> {
    fn collect(command: &clap::Command, into: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                into.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, into);
        }
    }
    let mut names = BTreeSet::new();
    collect(&ingest::Settings::command(), &mut names);
    collect(&projector::config::Settings::command(), &mut names);
    collect(&api::config::Config::command(), &mut names);
    names
}

/// `KEY: value` entries of the compose file's environment blocks whose key is a Taxiway variable.
fn variables_compose_sets(compose: &str) -> BTreeSet<String> {
    compose
        .lines()
        .filter_map(|line| {
            let trimmed = line.trim_start();
            let key = trimmed.split(':').next()?;
            (key.starts_with("TAXIWAY_")
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .then(|| key.to_owned())
        })
        .collect()
}

/// The `command: [...]` arrays of the services built from the Taxiway image.
fn taxiway_commands(compose: &str) -> Vec<Vec<String>> {
    compose
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("command: ["))
        .filter_map(|rest| rest.strip_suffix(']'))
        .map(|list| {
            list.split(',')
                .map(|word| word.trim().trim_matches('"').to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|words| {
            matches!(
                words.first().map(String::as_str),
                Some("ingest" | "projector" | "api")
            )
        })
        .collect()
}

#[test]
fn every_variable_the_compose_file_sets_is_read_by_a_service() {
    let compose = read("docker-compose.yml");
    let set = variables_compose_sets(&compose);
    assert!(set.len() >= 10, "found only {set:?}");
    let read = variables_the_services_read();
    let unknown: Vec<&String> = set.difference(&read).collect();
    assert!(
        unknown.is_empty(),
        "set in docker-compose.yml but read by no service: {unknown:?}"
    );
}

#[test]
fn every_service_command_in_the_compose_file_parses() {
    let compose = read("docker-compose.yml");
    let commands = taxiway_commands(&compose);
    let programs: BTreeSet<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(
        programs,
        ["api", "ingest", "projector"].into_iter().collect()
    );
    for words in &commands {
        let parsed = match words[0].as_str() {
            "ingest" => ingest::Settings::try_parse_from_with_env(words).map(|_| ()),
            "projector" => projector::config::Settings::try_parse_from_with_env(words).map(|_| ()),
            _ => api::config::Config::try_parse_from_with_env(words).map(|_| ()),
        };
        assert!(parsed.is_ok(), "{words:?}: {:?}", parsed.err());
    }
}

/// Parses as the service would, with the variables the compose file sets for it filled in where
/// a flag is required (the Workbench URL, say).
pub(crate) trait ParseWithEnv: Sized {
    fn try_parse_from_with_env(words: &[String]) -> Result<Self, clap::Error>;
}

impl<T: clap::Parser> ParseWithEnv for T {
    fn try_parse_from_with_env(words: &[String]) -> Result<Self, clap::Error> {
        let mut argv: Vec<String> = words.to_vec();
        if words.get(1).map(String::as_str) == Some("workbench") {
            argv.extend(["--url".to_owned(), "http://rest-api:3000".to_owned()]);
        }
        T::try_parse_from(argv)
    }
}

#[test]
fn the_dockerfile_builds_the_binaries_the_compose_file_runs() {
    let dockerfile = read("Dockerfile");
    for binary in ["ingest", "projector", "api"] {
        assert!(
            dockerfile.contains(&format!("target/release/{binary}")),
            "Dockerfile does not copy {binary}"
        );
        let manifest = read(&format!("{binary}/Cargo.toml"));
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{binary}/Cargo.toml names no binary {binary}"
        );
    }
    assert!(
        dockerfile.contains("USER taxiway"),
        "the runtime image runs as a non-root user"
    );
    let compose = read("docker-compose.yml");
    assert!(compose.contains("image: apache/kafka:"), "real Kafka image");
    assert!(
        compose.contains("image: scylladb/scylla:"),
        "real ScyllaDB image"
    );
    assert!(compose.contains("\"8000:8000\""), "the API on port 8000");
}

#[test]
fn docker_compose_config_accepts_the_file_where_docker_compose_exists() {
    // No Docker engine runs on the build machines; `docker compose config` needs only the
    // CLI plugin. Where it is missing, the static checks above are what there is.
    let has_compose = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_compose {
        eprintln!("docker compose is not installed: compose file checked statically only");
        return;
    }
    let output = std::process::Command::new("docker")
        .args([
            "compose",
            "-f",
            "../docker-compose.yml",
            "config",
            "--quiet",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("docker compose runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "docker compose config: {stderr}");
}
