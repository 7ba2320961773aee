//! One run of the shim binary, as containerd starts it: `-info`, `start` (spawn or join the
//! pod's shim and tell containerd where it serves), `delete` (clean up after a dead shim), or
//! serving the task API on `-socket` until the last container is gone.
//!
//! The containerd-shim crate's own `run` serves task API v3 only and answers `start` in the
//! form containerd 2.x reads; this one serves both task API names ([`crate::task_services`])
//! and answers each containerd in its own form ([`crate::start_protocol`]), reusing the crate's
//! flags, `spawn`, event publisher and exit monitor.

use std::{
    io::{IsTerminal, Read},
    sync::Arc,
};

use containerd_shim::{
    Error, Flags, Result,
    protos::{
        protobuf::{Message, well_known_types::any::Any},
        ttrpc::r#async::Server,
        types::introspection::{RuntimeInfo, RuntimeVersion},
    },
    publisher::RemotePublisher,
    util::{read_file_to_str, write_str_to_file},
};
use tokio::io::AsyncWriteExt;
use tracing::info;

use crate::{
    service::ShimService,
    shim_socket,
    signals::Signals,
    start_protocol::{self, LegacyEnv},
    task_services::{TASK_V2, TASK_V3, task_services},
};

/// The environment variable holding containerd's ttrpc address, where events are published.
const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";
/// The environment variable holding containerd's gRPC address (containerd 1.7 and later).
const GRPC_ADDRESS: &str = "GRPC_ADDRESS";
/// The file in the bundle that holds the address the pod's shim serves on. containerd 1.6 and
/// 1.7 read it to reconnect after a restart; the serving shim removes that socket on exit.
const ADDRESS_FILE: &str = "address";
/// The most containerd writes on stdin (its own limit for bootstrap parameters).
const MAX_STDIN: u64 = 10 << 20;

/// Runs the action containerd asked for, returning the process's exit code. Errors go to
/// stderr, where containerd reads them for `start` and `delete`.
pub async fn run(runtime_id: &str) -> i32 {
    match dispatch(runtime_id).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{runtime_id}: {e}");
            1
        }
    }
}

async fn dispatch(runtime_id: &str) -> Result<()> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let flags = containerd_shim::parse(&args)?;
    if flags.info {
        return write_stdout(&runtime_info(runtime_id, read_stdin()?)?).await;
    }
    // Handlers first, so that no child's exit goes unseen, then become the subreaper.
    let signals = Signals::install().map_err(|err| Error::IoError {
        context: "installing signal handlers".into(),
        err,
    })?;
    nix::sys::prctl::set_child_subreaper(true)?;
    let mut shim = ShimService::new(runtime_id, &flags);
    match flags.action.as_str() {
        "start" => {
            let env = LegacyEnv {
                ttrpc_address: std::env::var(TTRPC_ADDRESS).unwrap_or_default(),
                grpc_address: std::env::var(GRPC_ADDRESS).unwrap_or_default(),
            };
            let (opts, protocol) = start_protocol::start_options(&read_stdin()?, &flags, env)
                .map_err(Error::InvalidArgument)?;
            let address = shim.start_shim(opts).await?;
            write_stdout(&start_protocol::start_reply(&address, protocol)).await
        }
        "delete" => {
            tokio::spawn(signals.handle());
            let response = shim.delete_shim().await?;
            write_stdout(&response.write_to_bytes()?).await
        }
        _ => serve(&mut shim, &flags, signals).await,
    }
}

/// Serves the task API on `-socket` until the shim is told to exit, unless a live shim serves
/// there already.
async fn serve(shim: &mut ShimService, flags: &Flags, signals: Signals) -> Result<()> {
    if flags.socket.is_empty() {
        return Err(Error::InvalidArgument(
            "-socket is required to serve (containerd runs `start` to spawn the shim)".into(),
        ));
    }
    let ttrpc_address = std::env::var(TTRPC_ADDRESS)?;
    let Some(listener) = shim_socket::listen(&flags.socket).await? else {
        write_str_to_file(ADDRESS_FILE, &flags.socket).await?;
        return release_stdout();
    };
    let publisher = RemotePublisher::new(&ttrpc_address).await?;
    let task = shim.create_task_service(publisher).await;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(task_services(Arc::new(task)));
    server.start().await?;
    release_stdout()?;
    info!("serving {TASK_V2} and {TASK_V3} on {}", flags.socket);
    tokio::spawn(signals.handle());
    shim.wait().await;
    info!("shutting down");
    server.shutdown().await.unwrap_or_default();
    // A shim killed before this point leaves its socket; the next shim on it replaces it.
    if let Ok(address) = read_file_to_str(ADDRESS_FILE).await {
        shim_socket::remove_quietly(&address).await;
    }
    Ok(())
}

/// Points stdout at stderr. `start` reads the serving shim's stdout until it closes, so this
/// tells it the shim is serving (or that another one is).
fn release_stdout() -> Result<()> {
    nix::unistd::dup2_stdout(std::io::stderr())?;
    Ok(())
}

/// What `-info` reports: the runtime's name and version, and the options it was given. No
/// OCI features: containerd then validates nothing against them.
fn runtime_info(runtime_id: &str, options: Vec<u8>) -> Result<Vec<u8>> {
    let options = if options.is_empty() {
        None
    } else {
        Some(Any::parse_from_bytes(&options)?)
    };
    let info = RuntimeInfo {
        name: runtime_id.to_owned(),
        version: Some(RuntimeVersion {
            version: containix_core::VERSION.to_owned(),
            ..Default::default()
        })
        .into(),
        options: options.into(),
        ..Default::default()
    };
    Ok(info.write_to_bytes()?)
}

/// All of stdin, up to [`MAX_STDIN`]; nothing when it is a terminal (a run by hand).
fn read_stdin() -> Result<Vec<u8>> {
    let stdin = std::io::stdin();
    let mut input = Vec::new();
    if !stdin.is_terminal() {
        stdin
            .lock()
            .take(MAX_STDIN)
            .read_to_end(&mut input)
            .map_err(|err| Error::IoError {
                context: "reading stdin".into(),
                err,
            })?;
    }
    Ok(input)
}

async fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = tokio::io::stdout();
    let written = stdout.write_all(bytes).await;
    // containerd may read an empty reply if stdout is not flushed before the process exits.
    written
        .and(stdout.flush().await)
        .map_err(|err| Error::IoError {
            context: "writing the reply to stdout".into(),
            err,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_names_the_runtime_and_echoes_its_options() {
        let options = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: vec![0x1a, 0x01, b'x'],
            ..Default::default()
        };
        let bytes = runtime_info(
            "io.containerd.containix.v1",
            options.write_to_bytes().unwrap(),
        );
        let info = RuntimeInfo::parse_from_bytes(&bytes.unwrap()).unwrap();
        assert_eq!(info.name, "io.containerd.containix.v1");
        assert_eq!(info.version.version, containix_core::VERSION);
        assert_eq!(info.options.unwrap(), options);
        assert!(info.features.is_none());
        let bare = runtime_info("io.containerd.containix.v1", Vec::new()).unwrap();
        assert!(
            RuntimeInfo::parse_from_bytes(&bare)
                .unwrap()
                .options
                .is_none()
        );
    }
}
