//! Running the Python tools of the venv `dev/python-env` makes (pytest, openapi-spec-validator,
//! schemathesis) from tests: where it is, and one bounded run of a command in it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The repository's root.
pub fn repo() -> PathBuf {
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    tests.parent().map_or(tests.clone(), Path::to_path_buf)
}

/// `${TAXIWAY_CACHE_DIR:-<repo>/.cache}/venv/bin/<program>`, as dev/python-env makes it.
pub fn venv_bin(program: &str) -> PathBuf {
    let cache = std::env::var_os("TAXIWAY_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cache"));
    repo().join(cache).join("venv/bin").join(program)
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub status: String,
    /// stdout then stderr.
    pub text: String,
}

/// Runs `program` of the venv with `args` in the repository, with `env` added, loopback
/// excluded from any proxy and no stdin; killed after `timeout`.
pub async fn run(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<Output> {
    let path = venv_bin(program);
    anyhow::ensure!(
        path.exists(),
        "{}: no Python venv — run dev/python-env (dev/test does it)",
        path.display()
    );
    let no_proxy = match std::env::var("NO_PROXY") {
        Ok(v) if !v.is_empty() => format!("{v},127.0.0.1,localhost"),
        _ => "127.0.0.1,localhost".to_owned(),
    };
    let mut command = tokio::process::Command::new(&path);
    command
        .args(args)
        .current_dir(repo())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", &no_proxy)
        .env("no_proxy", &no_proxy)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn()?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("{program} did not finish within {timeout:?} (killed)"))??;
    Ok(Output {
        success: output.status.success(),
        status: output.status.to_string(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}
