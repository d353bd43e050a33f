//! `taxiway serve`: the event log in the data folder, the projector rebuilding the projection
//! from it, the API over that projection and, when asked, ingest appending new data, as tasks
//! of one process that all stop with `shutdown`.

use std::sync::Arc;

use eventlog::EmbeddedLog;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ServeConfig;
use crate::error::Error;
use crate::project::project;
use crate::projection::Projection;

/// Serves until `shutdown` (or until a task fails; then the others are stopped too).
pub async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let path = config.data.log_path();
    std::fs::create_dir_all(&config.data.data).map_err(|source| Error::Io {
        context: format!("creating the data folder {}", config.data.data.display()),
        source,
    })?;
    let log = EmbeddedLog::open(&path)?;
    // Compacted by key at every start, as Kafka compacts the objects topic: what a later record
    // of the same key supersedes goes, so the rebuild reads each key's latest record only.
    let compacting = log.clone();
    let compaction =
        tokio::task::spawn_blocking(move || compacting.compact(schemas::OBJECTS_TOPIC))
            .await
            .map_err(|e| Error::Task(format!("compacting the log: {e}")))??;
    tracing::info!(
        log = %path.display(),
        records = compaction.kept,
        compacted_away = compaction.removed,
        "event log open"
    );

    let auth = config
        .auth_file
        .as_deref()
        .map(api::Auth::from_file)
        .transpose()?;
    let mut server = config.server;
    if server.cursor_key.is_none() {
        server.cursor_key = Some(cursor_key(&config.data.data)?);
    }
    let state = api::AppState::new(server, auth)?;
    // One /metrics for the node: the API's, then the projector's and ingest's, each under its
    // own prefix as the distributed services serve them.
    let projector_metrics = projector::metrics::Metrics::new()?;
    state.metrics.serve_also(projector_metrics.registry.clone());
    let ingest_metrics = ingest::Metrics::new()?;
    state.metrics.serve_also(ingest_metrics.registry.clone());
    let projection = Projection::new();
    let (progress, _) = watch::channel(0);
    let projecting = tokio::spawn(project(
        log.clone(),
        projection.clone(),
        projector_metrics,
        progress,
        shutdown.clone(),
    ));
    tokio::spawn(crate::memory::trim_when_quiet(
        projection.activity().clone(),
        shutdown.clone(),
    ));
    let serving = tokio::spawn(api::serve(
        state,
        Arc::new(projection),
        listener,
        shutdown.clone(),
    ));

    if let Some(source) = config.source {
        let settings = ingest::Settings {
            embedded: Some(log.clone()),
            metrics: Some(ingest_metrics),
            ..ingest::Settings::new(source)
        };
        match ingest::run(settings, shutdown.clone()).await {
            // An import ends; the node goes on serving what it imported, unless that is nothing.
            Ok(summary) => {
                tracing::info!(%summary, "ingest finished");
                if summary.outcome() == ingest::Outcome::InputsFailed
                    && log.high_water(schemas::OBJECTS_TOPIC)? == 0
                {
                    shutdown.cancel();
                    return Err(Error::NothingToServe(summary.to_string()));
                }
            }
            Err(e) => {
                shutdown.cancel();
                return Err(e.into());
            }
        }
    }

    let served = serving
        .await
        .map_err(|e| Error::Task(format!("the API task: {e}")));
    shutdown.cancel();
    let projected = projecting
        .await
        .map_err(|e| Error::Task(format!("the projector task: {e}")));
    served??;
    projected??;
    Ok(())
}

/// The key `next` cursors are signed with when none is configured: made once per data folder
/// and kept in it, so that cursors a client holds stay valid across restarts of the node.
fn cursor_key(data: &std::path::Path) -> Result<service::Secret, Error> {
    let path = data.join("cursor-key");
    let io = |context: &str, source| Error::Io {
        context: format!("{context} {}", path.display()),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => return Ok(service::Secret(key.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading", e)),
    }
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| io("creating", e))?;
    std::io::Write::write_all(&mut file, key.as_bytes()).map_err(|e| io("writing", e))?;
    Ok(service::Secret(key))
}
