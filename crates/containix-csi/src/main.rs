//! `containix-csi`: CSI node plugin publishing Nix closures as ephemeral volumes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use containix_core::request::policy::NodePolicy;
use containix_csi::server::{PluginConfig, serve, socket_path};
use tracing::level_filters::LevelFilter;

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
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: LevelFilter,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .init();
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
