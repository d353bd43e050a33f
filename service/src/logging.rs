//! Logging to stderr, as text or JSON, filtered by `TAXIWAY_LOG`.

use std::io::IsTerminal;

/// Log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The logging flags every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(long, env = "TAXIWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Starts logging in this format; see [`init_tracing`].
    pub fn init(&self, default_filter: &str) {
        init_tracing(self.log_format, default_filter);
    }
}

/// Logs to stderr, filtered by `TAXIWAY_LOG` (e.g. `debug`, `info,taxiway_api=debug`), else by
/// `default_filter`. Colours only on a terminal, so log files stay plain text.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAXIWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
