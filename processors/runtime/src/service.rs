//! What every service binary shares: logging set-up and signal handling.

use tokio_util::sync::CancellationToken;

/// Environment variable that switches service logs to one JSON object per line (`json`).
pub const LOG_FORMAT_ENV: &str = "ZENVELOPE_LOG_FORMAT";

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); `ZENVELOPE_LOG_FORMAT=json`
/// switches to one JSON object per line.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::env::var(LOG_FORMAT_ENV).as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Cancels `shutdown` on SIGINT or SIGTERM (a second signal exits at once).
pub fn cancel_on_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "Cannot listen for SIGTERM.");
                    return;
                }
            };
        for _ in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if shutdown.is_cancelled() {
                tracing::warn!("Second signal: exiting now.");
                std::process::exit(130);
            }
            tracing::info!("Shutting down: finishing the work in flight.");
            shutdown.cancel();
        }
    });
}

/// Logs what a service's consume loop did, once it has stopped.
pub fn log_stopped(summary: &crate::RunSummary) {
    tracing::info!(
        processed = summary.processed,
        dead_lettered = summary.dead_lettered,
        abandoned = summary.abandoned,
        "Stopped."
    );
}

/// The exit status of a service's `main`: success, or the error and its causes, each
/// once, on standard error and status 1.
pub fn exit_code<E>(result: Result<(), E>) -> std::process::ExitCode
where
    E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
{
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", crate::error_report(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
