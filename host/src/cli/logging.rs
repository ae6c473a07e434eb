//! The server's own log on stderr: its level, and its format, lines for people (`text`) or
//! one JSON object per line for a log pipeline (`json`).
//!
//! A JSON line has the same events as a text one, with stable keys: `timestamp` (RFC 3339,
//! UTC), `level` (`ERROR`, `WARN`, `INFO`, `DEBUG`), `target` (the module that logged),
//! `message`, then the event's own fields at the top level (`docs/deploy.md` lists them).
//! No span data is written: the server's events carry what they mean in their own fields.
//! What may be logged at all is the same in both formats: never a credential, a token, a
//! password or a query string (`ARCHITECTURE.md`, invariants).

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event, for people (colored on a terminal).
    Text,
    /// One JSON object per line, for a log pipeline.
    Json,
}

/// Logs go to stderr, at `level`, in `format`; `AGENT_VAULT_LOG`, a full filter, overrides
/// the level.
pub fn init(level: &str, format: LogFormat) {
    // At debug, the libraries underneath (hyper, h2, rustls) stay at info: their debug
    // lines are about connection internals, not about what the server does.
    let level = match level {
        "debug" => "info,agent_vault=debug",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENT_VAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
