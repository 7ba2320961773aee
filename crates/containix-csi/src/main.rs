//! `containix-csi`: CSI node plugin publishing Nix closures as ephemeral volumes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use containix_core::request::policy::NodePolicy;
use containix_csi::server::{PluginConfig, serve, socket_path};
use tracing_subscriber::EnvFilter;

/// CSI node plugin that offers a Nix closure as an ephemeral inline volume.
#[derive(Parser)]
#[command(name = "containix-csi", version = containix_core::VERSION)]
struct Args {
    /// The CSI endpoint to listen on.
    #[arg(long, default_value = "unix:///csi/csi.sock")]
    endpoint: String,
    /// The node id reported to the CO; defaults to the host name.
    #[arg(long)]
    node_id: Option<String>,
    /// Where published volumes are recorded; defaults to `<policy state-dir>/csi`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The node policy file; defaults to $CONTAINIX_CONFIG, else /etc/containix/policy.toml
    /// (else the old /etc/containix/config.toml, with a warning).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log level on stderr: error, warn, info, debug or trace, or `RUST_LOG`-style directives
    /// (`containix::nix=debug,info`). Default: $RUST_LOG, else info.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

/// The log filter: `--log-level`, else `RUST_LOG`, else info. An invalid `--log-level` is a
/// usage error; an invalid `RUST_LOG` is ignored (the second value says why).
fn log_filter(
    log_level: Option<&str>,
    rust_log: Option<&str>,
) -> Result<(EnvFilter, Option<String>), String> {
    let parse = |directives: &str| EnvFilter::builder().with_regex(false).parse(directives);
    if let Some(directives) = log_level {
        return parse(directives)
            .map(|filter| (filter, None))
            .map_err(|err| format!("--log-level {directives:?}: {err}; expected a level such as info or directives such as containix::nix=debug,info"));
    }
    let info = || EnvFilter::new("info");
    Ok(
        match rust_log.map(str::trim).filter(|value| !value.is_empty()) {
            None => (info(), None),
            Some(directives) => match parse(directives) {
                Ok(filter) => (filter, None),
                Err(err) => (
                    info(),
                    Some(format!("ignoring RUST_LOG={directives:?}: {err}")),
                ),
            },
        },
    )
}

fn main() -> ExitCode {
    containix_core::node::process_heap::use_one_arena();
    let args = Args::parse();
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let (filter, ignored) = match log_filter(args.log_level.as_deref(), rust_log.as_deref()) {
        Ok(chosen) => chosen,
        Err(message) => {
            eprintln!("containix-csi: {message}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some(reason) = ignored {
        tracing::warn!("{reason}");
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("containix-csi: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let socket = socket_path(&args.endpoint)?;
    let policy = match &args.config {
        Some(path) => NodePolicy::from_file(path)?,
        None => NodePolicy::load()?,
    };
    let node_id = match args.node_id.filter(|id| !id.is_empty()) {
        Some(id) => id,
        None => nix::unistd::gethostname()?
            .into_string()
            .map_err(|name| format!("the host name {name:?} is not UTF-8; pass --node-id"))?,
    };
    let state_dir = args
        .state_dir
        .unwrap_or_else(|| policy.state_dir.join("csi"));
    let config = PluginConfig {
        socket,
        node_id,
        state_dir,
        policy,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, shutdown_signal()))?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::filter::LevelFilter;

    use super::log_filter;

    #[test]
    fn log_level_then_rust_log_then_info() {
        let hint = |level, rust_log| log_filter(level, rust_log).unwrap().0.max_level_hint();
        assert_eq!(hint(None, None), Some(LevelFilter::INFO));
        assert_eq!(hint(None, Some("warn")), Some(LevelFilter::WARN));
        assert_eq!(hint(Some("debug"), Some("warn")), Some(LevelFilter::DEBUG));
        assert_eq!(
            hint(Some("containix::nix=trace,warn"), None),
            Some(LevelFilter::TRACE)
        );
        let (filter, ignored) = log_filter(None, Some("=nonsense==")).unwrap();
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::INFO));
        assert!(ignored.unwrap().contains("RUST_LOG"));
        let err = log_filter(Some("=nonsense=="), None).unwrap_err();
        assert!(err.starts_with("--log-level"), "{err}");
    }
}
