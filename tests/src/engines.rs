//! Private Kafka and Cassandra instances for fault tests, started with `dev/services` on a run folder and ports of their own, killed and restarted at will, stopped and removed when dropped.
//!
//! The other suites share one Kafka and one Cassandra while a fault test runs; killing those
//! would fail them. So a fault test starts its own engine with the project's script, on the
//! shared jar cache (`TAXIWAY_CACHE_DIR`, as `dev/test` exports it, else `<repo>/.cache`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{fixtures, unique_name};

/// How long `dev/services start` may wait for an engine to answer: a cold Cassandra on the loaded
/// 2-core CI box takes well over the script's default of 120 s.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a SIGKILLed engine may take to disappear from the process table.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Small heaps: these instances hold one test's data, beside the shared engines.
const KAFKA_HEAP: &str = "256m:512m";
const CASSANDRA_HEAP: &str = "256m:512m";

/// The role a secure Cassandra accepts: its built-in superuser, as `dev/services` documents.
pub const SECURE_CQL_USER: &str = "cassandra";
pub const SECURE_CQL_PASSWORD: &str = "cassandra";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Kafka,
    Cassandra,
}

impl Engine {
    /// The name `dev/services` uses (pid file, log file, `TAXIWAY_SERVICES`).
    fn name(self) -> &'static str {
        match self {
            Engine::Kafka => "kafka",
            Engine::Cassandra => "cassandra",
        }
    }
}

/// Engines of one test, stopped (and their run folder removed, logs kept under
/// `target/e2e-logs/`) when dropped, also when the test fails.
pub struct Engines {
    name: String,
    run_dir: PathBuf,
    env: Vec<(&'static str, String)>,
    kafka_port: u16,
    controller_port: u16,
    cql_port: u16,
    storage_port: u16,
    secure_port: Option<u16>,
}

/// The SCRAM-SHA-512 user and password of a secure private Kafka (dev values, never reused).
pub const KAFKA_SCRAM_USER: &str = "taxiway";
pub const KAFKA_SCRAM_PASSWORD: &str = "taxiway-test-secret";

impl Engines {
    /// Starts `engines` on free ports and returns once they answer. `flush_schema` makes
    /// Cassandra flush schema changes as production does (`TAXIWAY_CASSANDRA_FLUSH_SCHEMA=1`),
    /// so its keyspaces survive a SIGKILL.
    pub async fn start(engines: &[Engine], flush_schema: bool) -> anyhow::Result<Engines> {
        Self::start_with(engines, flush_schema, false, Vec::new()).await
    }

    /// Starts a Cassandra in `dev/services`' secure mode (`TAXIWAY_CASSANDRA_SECURE=1`): password
    /// authentication ([`SECURE_CQL_USER`], [`SECURE_CQL_PASSWORD`]) and TLS required on the
    /// CQL port, its certificate signed by the throwaway CA at [`Engines::cql_tls_ca`].
    pub async fn start_secure_cassandra() -> anyhow::Result<Engines> {
        let secure = vec![("TAXIWAY_CASSANDRA_SECURE", "1".to_owned())];
        Self::start_with(&[Engine::Cassandra], false, false, secure).await
    }

    /// Starts a private Kafka in `dev/services`' secure mode: a SASL_SSL listener
    /// (SCRAM-SHA-512, [`KAFKA_SCRAM_USER`]) with a throwaway CA beside the PLAINTEXT one.
    pub async fn start_secure_kafka() -> anyhow::Result<Engines> {
        Self::start_with(&[Engine::Kafka], false, true, Vec::new()).await
    }

    /// Starts a private Kafka and Cassandra, both in `dev/services`' secure modes: what
    /// [`Engines::start_secure_kafka`] and [`Engines::start_secure_cassandra`] start, at once.
    pub async fn start_secure() -> anyhow::Result<Engines> {
        let secure = vec![("TAXIWAY_CASSANDRA_SECURE", "1".to_owned())];
        Self::start_with(&[Engine::Kafka, Engine::Cassandra], false, true, secure).await
    }

    async fn start_with(
        engines: &[Engine],
        flush_schema: bool,
        secure: bool,
        extra_env: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Engines> {
        let name = unique_name("engines");
        let run_dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&run_dir)?;
        let repo = fixtures::repo_root();
        // A relative cache dir is the repository's, as dev/services resolves it from there.
        let cache = std::env::var_os("TAXIWAY_CACHE_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| repo.join(".cache"), |d| repo.join(d));
        let [
            kafka_port,
            controller_port,
            cql_port,
            storage_port,
            secure_port,
        ] = free_ports()?;
        let services: Vec<&str> = engines.iter().map(|e| e.name()).collect();
        let mut env = vec![
            ("TAXIWAY_RUN_DIR", run_dir.display().to_string()),
            ("TAXIWAY_CACHE_DIR", cache.display().to_string()),
            ("TAXIWAY_SERVICES", services.join(" ")),
            ("TAXIWAY_KAFKA_PORT", kafka_port.to_string()),
            ("TAXIWAY_KAFKA_CONTROLLER_PORT", controller_port.to_string()),
            ("TAXIWAY_CQL_PORT", cql_port.to_string()),
            ("TAXIWAY_CASSANDRA_STORAGE_PORT", storage_port.to_string()),
            ("TAXIWAY_KAFKA_HEAP", KAFKA_HEAP.to_owned()),
            ("TAXIWAY_CASSANDRA_HEAP", CASSANDRA_HEAP.to_owned()),
            (
                "TAXIWAY_CASSANDRA_FLUSH_SCHEMA",
                if flush_schema { "1" } else { "0" }.to_owned(),
            ),
            ("TAXIWAY_READY_TIMEOUT", READY_TIMEOUT.as_secs().to_string()),
            (
                "TAXIWAY_KAFKA_SECURE",
                if secure { "1" } else { "0" }.to_owned(),
            ),
            ("TAXIWAY_KAFKA_SECURE_PORT", secure_port.to_string()),
            ("TAXIWAY_KAFKA_SCRAM_USER", KAFKA_SCRAM_USER.to_owned()),
            (
                "TAXIWAY_KAFKA_SCRAM_PASSWORD",
                KAFKA_SCRAM_PASSWORD.to_owned(),
            ),
        ];
        env.extend(extra_env);
        // Built before starting, so that a failed start is cleaned up by Drop too.
        let engines = Engines {
            name,
            run_dir,
            env,
            kafka_port,
            controller_port,
            cql_port,
            storage_port,
            secure_port: secure.then_some(secure_port),
        };
        let took = engines.services_start().await?;
        println!(
            "engines: {} started in {took:?} ({})",
            services.join(" and "),
            engines.run_dir.display()
        );
        Ok(engines)
    }

    /// The private broker's bootstrap address.
    pub fn kafka_brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// The secure (SASL_SSL) listener's bootstrap address, when started in secure mode.
    pub fn kafka_secure_brokers(&self) -> Option<String> {
        self.secure_port.map(|port| format!("127.0.0.1:{port}"))
    }

    /// The CA (PEM) that signed the secure listener's certificate.
    pub fn kafka_ca_file(&self) -> PathBuf {
        self.run_dir.join("kafka/tls/ca.pem")
    }

    /// The private Cassandra's contact point.
    pub fn cql_nodes(&self) -> Vec<String> {
        vec![format!("127.0.0.1:{}", self.cql_port)]
    }

    /// The CA (PEM) that signed a secure Cassandra's certificate: what its clients trust.
    pub fn cql_tls_ca(&self) -> PathBuf {
        self.run_dir.join("tls/ca.pem")
    }

    /// The settings an operator would give for the secure Cassandra: user, password, the CA;
    /// a single node, so consistency one.
    pub fn secure_cql_args(&self, keyspace: &str) -> service::CqlArgs {
        service::CqlArgs {
            nodes: self.cql_nodes(),
            keyspace: keyspace.to_owned(),
            user: Some(SECURE_CQL_USER.to_owned()),
            password: Some(service::Secret(SECURE_CQL_PASSWORD.to_owned())),
            tls_ca: Some(self.cql_tls_ca()),
            read_consistency: service::ConsistencyLevel::One,
            ..service::CqlArgs::default()
        }
    }

    /// SIGKILLs `engine`, as a crash or the OOM killer would, and waits until it is gone: its
    /// process has exited and its ports refuse connections (a JVM tearing down a large heap
    /// can hold its sockets a while after its command line has vanished).
    pub async fn kill(&self, engine: Engine) -> anyhow::Result<()> {
        let pid = self.live_pid(engine)?;
        let status = tokio::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill -KILL {pid} failed: {status}");
        let ports = match engine {
            Engine::Kafka => vec![self.kafka_port, self.controller_port]
                .into_iter()
                .chain(self.secure_port)
                .collect::<Vec<_>>(),
            Engine::Cassandra => vec![self.cql_port, self.storage_port],
        };
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while !exited(pid) || ports.iter().any(|&p| accepts(p)) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} (pid {pid}) still runs {EXIT_TIMEOUT:?} after SIGKILL",
                engine.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The command line `engine` runs with, arguments separated by spaces.
    pub fn command_line(&self, engine: Engine) -> anyhow::Result<String> {
        let pid = self.live_pid(engine)?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        Ok(String::from_utf8_lossy(&raw).replace('\0', " "))
    }

    /// `dev/services start` again on the same run folder (what is still running is left alone):
    /// returns how long it took until the engines answered.
    pub async fn restart(&self) -> anyhow::Result<Duration> {
        self.services_start().await
    }

    async fn services_start(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let output = self.run_dir.join("services-start.out");
        let out = std::fs::File::create(&output)?;
        let mut child = tokio::process::Command::new(services_script())
            .arg("start")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        // dev/services bounds its own wait; this only guards against the script hanging.
        let status = tokio::time::timeout(READY_TIMEOUT + Duration::from_secs(60), child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("dev/services start hung"))??;
        let took = started.elapsed();
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        anyhow::ensure!(
            status.success(),
            "dev/services start failed ({status}) for {}:\n{text}",
            self.run_dir.display()
        );
        Ok(took)
    }

    /// The recorded pid of `engine`, if that process is alive and is this run folder's engine
    /// (a reused pid names another command line).
    fn live_pid(&self, engine: Engine) -> anyhow::Result<u32> {
        let file = self.run_dir.join(format!("{}.pid", engine.name()));
        let pid: u32 = std::fs::read_to_string(&file)?.trim().parse()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        anyhow::ensure!(
            !matches!(state, Some('Z' | 'X')),
            "{} (pid {pid}) has exited",
            engine.name()
        );
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let dir = format!("{}/", self.run_dir.display());
        anyhow::ensure!(
            String::from_utf8_lossy(&cmdline).contains(&dir),
            "pid {pid} is not the {} of {dir}",
            engine.name()
        );
        Ok(pid)
    }

    /// Keeps the engines' logs where the other suites keep theirs.
    fn keep_logs(&self) -> std::io::Result<()> {
        let from = self.run_dir.join("logs");
        let to = fixtures::repo_root()
            .join("target/e2e-logs")
            .join(&self.name);
        std::fs::create_dir_all(&to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
        Ok(())
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        // Blocking, on purpose: the engines must be gone before the test (or process) ends.
        let stopped = std::process::Command::new(services_script())
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !stopped.as_ref().is_ok_and(|s| s.success()) {
            eprintln!(
                "engines: dev/services stop failed for {}: {stopped:?}",
                self.run_dir.display()
            );
        }
        if let Err(e) = self.keep_logs() {
            eprintln!(
                "engines: keeping the logs of {}: {e}",
                self.run_dir.display()
            );
        }
        if let Err(e) = std::fs::remove_dir_all(&self.run_dir) {
            eprintln!("engines: removing {}: {e}", self.run_dir.display());
        }
    }
}

/// Whether `pid` has ended: gone from the process table, or a zombie waiting for its parent.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X')
        ),
    }
}

/// Whether something accepts connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A throwaway CA of its own, made with `openssl` in `dir`, which signed nothing any engine
/// holds: what a client trusting the wrong CA is given.
pub fn other_ca(dir: &Path) -> anyhow::Result<PathBuf> {
    let ca = dir.join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not the cluster's CA", "-keyout"])
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "openssl req failed: {status}");
    Ok(ca)
}

fn services_script() -> PathBuf {
    fixtures::repo_root().join("dev/services")
}

/// Five ports free now, below Linux's ephemeral range (32768 and up), so that no client's
/// outgoing connection takes one between now and the engines' start.
fn free_ports() -> anyhow::Result<[u16; 5]> {
    let mut held = Vec::new();
    let mut ports = [0u16; 5];
    let seed = uuid::Uuid::new_v4().as_u128();
    let mut slot = 0;
    for attempt in 0..2000u128 {
        let port = 20_000 + ((seed.wrapping_add(attempt * 7919)) % 12_000) as u16;
        if ports.contains(&port) {
            continue;
        }
        // Held until all are chosen, so the same one is not picked twice.
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
            ports[slot] = port;
            slot += 1;
            if slot == ports.len() {
                return Ok(ports);
            }
        }
    }
    anyhow::bail!("no five free ports between 20000 and 32000")
}
