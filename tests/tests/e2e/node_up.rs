//! `dev/up` as a user runs it, on the embedded default: with only a shell, curl and `taxiway` on
//! its PATH (no java, no mvn, no cargo), it serves the shipped releases, or a STIX 2.0 bundle
//! named by `--attack-domain auto`, prints the TAXII URL, and stops `taxiway` when it is stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use taxiway_tests::api::Api;
use taxiway_tests::fixtures::{self, Release};
use taxiway_tests::node_child::{free_addr, log_revisions, wait_import_done};
use taxiway_tests::{Deadline, unique_name};

/// What `dev/up` prints once the first collection is served, before the URL.
const SERVING: &str = "Taxiway serves TAXII 2.1 at ";

/// The programs the embedded `dev/up` may run: the only ones on its PATH in these tests.
const TOOLS: [&str; 9] = [
    "bash", "dirname", "mkdir", "curl", "grep", "awk", "tail", "sleep", "cat",
];

/// `taxiway`'s debug build, built now (a no-op when it is current) into the test binary's own
/// target directory, so the test runs the code it was compiled with.
fn taxiway_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/debug/deps/e2e-…
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let mut cargo = std::process::Command::new(env!("CARGO"));
    // What cargo sets for this test process, never in a shell's: build scripts (ring's, cc's)
    // ask to rerun when they change, which would rebuild them here and again in the next
    // build from a shell.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref())
            || ["CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&name.as_ref())
        {
            cargo.env_remove(name.as_ref());
        }
    }
    let status = cargo
        .args([
            "build",
            "--locked",
            "-p",
            "taxiway-node",
            "--bin",
            "taxiway",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(fixtures::repo_root())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p taxiway-node: {status}");
    target.join("debug/taxiway")
}

/// A folder holding links to [`TOOLS`] alone, for `dev/up`'s PATH.
fn tools_only(dir: &Path) -> PathBuf {
    let bin = dir.join("path");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in TOOLS {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not on PATH"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    bin
}

/// A running `dev/up`; stopped with SIGTERM (what Ctrl-C does to it) when dropped.
struct Up {
    child: tokio::process::Child,
    addr: SocketAddr,
    /// `dev/up`'s own output.
    output: PathBuf,
    /// `TAXIWAY_RUN_DIR`: the data folder (`node/`) and the logs (`logs/`).
    run_dir: tempfile::TempDir,
}

impl Up {
    /// Starts `dev/up ARGS…` with its run folder in a temporary directory and the API on a free
    /// port, and waits until it prints the TAXII URL.
    async fn start(name: &str, args: &[String]) -> Up {
        let run_dir = tempfile::Builder::new()
            .prefix("taxiway-test-")
            .tempdir()
            .unwrap();
        let output = fixtures::repo_root()
            .join("target/e2e-logs")
            .join(format!("{}.log", unique_name(name)));
        std::fs::create_dir_all(output.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&output).unwrap();
        let addr = free_addr().unwrap();
        let child = tokio::process::Command::new(fixtures::repo_root().join("dev/up"))
            .args(args)
            .env_clear()
            .env("PATH", tools_only(run_dir.path()))
            .env("HOME", run_dir.path())
            .env("TAXIWAY_RUN_DIR", run_dir.path())
            .env("TAXIWAY_API_LISTEN", addr.to_string())
            .env("TAXIWAY_UP_BIN", taxiway_bin())
            // A debug build serves the shipped releases in seconds; a failed import fails fast.
            .env("TAXIWAY_UP_TIMEOUT", "120")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut up = Up {
            child,
            addr,
            output,
            run_dir,
        };
        let url = up
            .wait_for_url(Deadline::after(Duration::from_secs(180)))
            .await;
        assert_eq!(url, format!("http://{addr}/taxii2/"));
        up
    }

    async fn wait_for_url(&mut self, deadline: Deadline) -> String {
        loop {
            let text = std::fs::read_to_string(&self.output).unwrap_or_default();
            if let Some(line) = text.lines().find_map(|l| l.trim().strip_prefix(SERVING)) {
                return line.to_owned();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("dev/up exited ({status}) before serving:\n{text}");
            }
            assert!(!deadline.passed(), "dev/up printed no URL:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn data(&self) -> PathBuf {
        self.run_dir.path().join("node")
    }

    fn taxiway_log(&self) -> PathBuf {
        self.run_dir.path().join("logs/taxiway.log")
    }

    /// Waits until the import `dev/up` started has returned and everything it appended to the
    /// log is served; the API of the node.
    async fn all_served(&self) -> Api {
        let deadline = Deadline::after(Duration::from_secs(300));
        wait_import_done(&self.taxiway_log(), 0, deadline)
            .await
            .unwrap();
        let api = Api::remote(self.addr).unwrap();
        api.wait_for_revisions(&log_revisions(&self.data()).unwrap(), deadline)
            .await
            .unwrap();
        api
    }

    fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// Stops `dev/up` as Ctrl-C does and checks that it stopped `taxiway` too: the port is free.
    async fn stop(mut self) {
        self.terminate();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("dev/up stops within a minute")
            .unwrap();
        assert!(!status.success(), "dev/up only ends when stopped: {status}");
        let text = std::fs::read_to_string(&self.output).unwrap();
        assert!(text.contains("dev/up: stopped"), "{text}");
        std::net::TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("{} still taken after dev/up stopped: {e}", self.addr));
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // SIGKILL (kill_on_drop) would leave its taxiway running.
        self.terminate();
    }
}

/// The collections list's `(id, title, description)`.
fn listed(collections: &Value) -> BTreeSet<(String, String, Option<String>)> {
    collections["collections"]
        .as_array()
        .unwrap_or_else(|| panic!("no collections: {collections}"))
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["title"].as_str().unwrap().to_owned(),
                c["description"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The `(id, title, description)` a release file's collection object gives.
fn described(release: &Release) -> (String, String, Option<String>) {
    let collection = release.collection().unwrap();
    (
        release.collection_id(),
        collection["name"].as_str().unwrap().to_owned(),
        collection["description"].as_str().map(str::to_owned),
    )
}

/// The ids a collection's objects listing serves.
async fn served_ids(api: &Api, root: &str, collection: &str) -> BTreeSet<String> {
    api.walk(
        &format!("/api/v21/{root}collections/{collection}/objects/?limit=1000"),
        "objects",
    )
    .await
    .unwrap()
    .iter()
    .flat_map(|p| &p.items)
    .map(fixtures::id_of)
    .collect()
}

#[tokio::test]
async fn dev_up_serves_the_shipped_releases_without_a_jvm_and_stops_taxiway_when_stopped() {
    // Per collection, the newest of the shipped releases (by its collection object's date).
    let mut latest: BTreeMap<String, Release> = BTreeMap::new();
    for name in fixtures::SHIPPED_RELEASES {
        let release = Release::load(name).unwrap();
        let modified = |r: &Release| {
            r.collection().unwrap()["modified"]
                .as_str()
                .map(str::to_owned)
        };
        match latest.get(&release.collection_id()) {
            Some(known) if modified(known) >= modified(&release) => {}
            _ => {
                latest.insert(release.collection_id(), release);
            }
        }
    }
    assert_eq!(latest.len(), 2, "ICS and Mobile");

    let up = Up::start("node_up_shipped", &[]).await;
    assert!(up.data().join("log.sqlite").is_file());
    let api = up.all_served().await;
    let collections = api.get("/api/v21/collections/").await.unwrap().json();
    assert_eq!(
        listed(&collections),
        latest.values().map(described).collect::<BTreeSet<_>>()
    );
    for (id, release) in &latest {
        let expected: BTreeSet<String> = release.objects.iter().map(fixtures::id_of).collect();
        assert_eq!(served_ids(&api, "", id).await, expected, "{}", release.name);
    }
    up.stop().await;
}

#[tokio::test]
async fn dev_up_attack_domain_auto_serves_a_stix_2_0_bundle_without_a_collection_object() {
    // MITRE's STIX 2.0 export of ICS 18.1 as its cti repository has it: no x-mitre-collection.
    let (spec_version, objects) = fixtures::ics_stix_2_0();
    assert_eq!(spec_version.as_deref(), Some("2.0"));
    let objects: Vec<Value> = objects
        .iter()
        .map(|raw| serde_json::from_str::<Value>(raw).unwrap())
        .filter(|o| o["type"] != "x-mitre-collection")
        .collect();
    let dir = tempfile::Builder::new()
        .prefix("taxiway-test-")
        .tempdir()
        .unwrap();
    // The release label comes from the name, as with MITRE's files.
    let file = dir.path().join("ics-attack-18.1.json");
    let bundle = serde_json::json!({
        "type": "bundle",
        "id": "bundle--0e7a0000-0000-4000-8000-000000000020",
        "spec_version": "2.0",
        "objects": objects,
    });
    std::fs::write(&file, serde_json::to_vec(&bundle).unwrap()).unwrap();
    // What MITRE's STIX 2.1 file of the same release says its collection is.
    let same_in_21 = Release::load("ics-attack-18.1.json.zst").unwrap();
    let label = same_in_21.collection().unwrap()["x_mitre_version"]
        .as_str()
        .unwrap()
        .to_owned();

    let args = [
        "--attack-domain".to_owned(),
        "auto".to_owned(),
        file.display().to_string(),
    ];
    let up = Up::start("node_up_stix_2_0", &args).await;
    let api = up.all_served().await;
    let expected_ids: BTreeSet<String> = objects.iter().map(fixtures::id_of).collect();
    for root in ["", &format!("attack-{label}/")] {
        let collections = api
            .get(&format!("/api/v21/{root}collections/"))
            .await
            .unwrap()
            .json();
        assert_eq!(
            listed(&collections),
            BTreeSet::from([described(&same_in_21)]),
            "root /api/v21/{root}"
        );
        assert_eq!(
            served_ids(&api, root, &same_in_21.collection_id()).await,
            expected_ids,
            "root /api/v21/{root}"
        );
    }
    up.stop().await;
}
