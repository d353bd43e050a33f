//! A headless Chromium for the browser suite: Debian's package, started here with a fresh
//! profile and the DevTools protocol on a loopback port, and driven by playwright-core under
//! node (`tests/browser/visit.cjs`); `dev/chromium` installs both.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::python::repo;

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// No first-run work, no background traffic, no QUIC, no proxy: the browser talks to the
/// test's loopback servers and nothing else.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
];

/// One page to load and what to do there.
#[derive(Debug, Clone, Serialize)]
pub struct Visit {
    pub name: String,
    pub url: String,
    /// A CSS selector to wait for after `load` (script-rendered content).
    pub wait_for: Option<String>,
    /// A JavaScript expression evaluated in the page; its JSON value is reported.
    pub evaluate: Option<String>,
    pub screenshot: Option<PathBuf>,
    pub full_page: bool,
}

/// What one visit showed.
#[derive(Debug, Clone, Deserialize)]
pub struct Seen {
    pub name: String,
    pub url: String,
    pub title: Option<String>,
    pub value: serde_json::Value,
    pub console: Vec<ConsoleMessage>,
    pub page_errors: Vec<String>,
    pub failed_requests: Vec<FailedRequest>,
    /// Navigation, waiting or evaluation failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleMessage {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FailedRequest {
    pub url: String,
    pub failure: String,
}

impl Seen {
    /// Console messages of type `error`.
    pub fn console_errors(&self) -> Vec<&str> {
        self.console
            .iter()
            .filter(|m| m.kind == "error")
            .map(|m| m.text.as_str())
            .collect()
    }
}

#[derive(Deserialize)]
struct Report {
    pages: Vec<Seen>,
}

/// A running Chromium; killed when dropped, its profile directory removed.
pub struct Browser {
    child: Child,
    endpoint: String,
    profile: PathBuf,
}

impl Browser {
    /// Starts Chromium with a new profile; its stderr goes to `log`. Fails, saying how to
    /// install it, if Debian's package is not there: the suite never passes without a browser.
    pub async fn start(log: PathBuf) -> anyhow::Result<Browser> {
        anyhow::ensure!(
            std::path::Path::new(CHROMIUM).is_file(),
            "Chromium is not installed ({CHROMIUM} is missing): run dev/chromium, which installs \
             Debian's package (dev/test runs it); this suite cannot run without a browser"
        );
        let profile = std::env::temp_dir().join(crate::unique_name("chromium_profile"));
        std::fs::create_dir_all(&profile)?;
        let mut child = Command::new(CHROMIUM)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--remote-debugging-address=127.0.0.1")
            .arg("--remote-debugging-port=0")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr pipe"))?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = tokio::fs::File::create(&log).await?;
        let mut lines = BufReader::new(stderr).lines();
        // Chromium prints the DevTools address on stderr once it listens.
        let endpoint = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                file.write_all(format!("{line}\n").as_bytes()).await?;
                if let Some(ws) = line.strip_prefix("DevTools listening on ") {
                    return Ok(ws.trim().to_owned());
                }
            }
            anyhow::bail!("Chromium exited before listening; see {}", log.display())
        })
        .await
        .map_err(|_| anyhow::anyhow!("Chromium did not listen within 60 s"))??;
        // Keep draining stderr into the log, or a full pipe would stall the browser.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if file
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Browser {
            child,
            endpoint,
            profile,
        })
    }

    /// Visits `pages` in order, in tabs of this browser, within `timeout`.
    pub async fn visit(&self, pages: &[Visit], timeout: Duration) -> anyhow::Result<Vec<Seen>> {
        let node_modules = std::env::var_os("TAXIWAY_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".cache"));
        let node_modules = repo().join(node_modules).join("browser/node_modules");
        anyhow::ensure!(
            node_modules.join("playwright-core").is_dir(),
            "{}: no playwright-core — run dev/chromium (dev/test does it)",
            node_modules.display()
        );
        let plan = serde_json::json!({ "endpoint": self.endpoint, "pages": pages });
        let mut child = Command::new("node")
            .arg(repo().join("tests/browser/visit.cjs"))
            .env("NODE_PATH", &node_modules)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin pipe"))?;
        stdin.write_all(plan.to_string().as_bytes()).await?;
        drop(stdin);
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow::anyhow!("visit.cjs did not finish within {timeout:?}"))??;
        anyhow::ensure!(
            output.status.success(),
            "visit.cjs failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Report = serde_json::from_slice(&output.stdout).map_err(|e| {
            anyhow::anyhow!(
                "visit.cjs printed no report ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?;
        Ok(report.pages)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // kill_on_drop sends SIGKILL; the profile goes with it.
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
