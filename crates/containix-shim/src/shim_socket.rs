//! The serving shim's socket: binding it, joining the shim already serving on it (every
//! container of a pod asks for the same socket), and removing it on exit.

use std::{
    os::unix::{fs::FileTypeExt, net::UnixListener},
    path::Path,
    time::Duration,
};

use containerd_shim::{
    Error, Result,
    protos::ttrpc::r#async::{Client, transport::Listener},
};
use tracing::warn;

/// How often, and how many times, to try a socket that is in use before taking it over.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
const PROBE_ATTEMPTS: u32 = 200;

/// The filesystem path of a socket address (`unix:///run/containerd/s/<hash>`). Pure.
pub fn socket_path(address: &str) -> &str {
    address
        .strip_prefix("unix://")
        .or_else(|| address.strip_prefix("vsock://"))
        .unwrap_or(address)
}

/// A listener on `address`, or `None` when a live shim already serves there (another
/// container's start raced this one). A socket nobody answers on is left over from a dead shim
/// and is replaced.
pub async fn listen(address: &str) -> Result<Option<Listener>> {
    match bind(address) {
        Err(Error::IoError { err, .. }) if err.kind() == std::io::ErrorKind::AddrInUse => {
            if answers(address).await {
                return Ok(None);
            }
            remove(address).await?;
            bind(address).map(Some)
        }
        other => other.map(Some),
    }
}

fn bind(address: &str) -> Result<Listener> {
    let path = Path::new(socket_path(address));
    let context = |what: &str| format!("{what} {}", path.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|err| Error::IoError {
            context: context("creating the directory of"),
            err,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|err| Error::IoError {
        context: context("listening on"),
        err,
    })?;
    Listener::try_from(listener).map_err(|err| Error::IoError {
        context: context("serving ttrpc on"),
        err,
    })
}

/// Whether a shim accepts connections on `address`, within about a second.
async fn answers(address: &str) -> bool {
    for _ in 0..PROBE_ATTEMPTS {
        if Client::connect(address).await.is_ok() {
            return true;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    false
}

/// Removes the socket at `address`, if there is one (and nothing else).
pub async fn remove(address: &str) -> Result<()> {
    let path = socket_path(address);
    let is_socket = tokio::fs::symlink_metadata(path)
        .await
        .is_ok_and(|meta| meta.file_type().is_socket());
    if is_socket {
        tokio::fs::remove_file(path)
            .await
            .map_err(|err| Error::IoError {
                context: format!("removing the socket {path}"),
                err,
            })?;
    }
    Ok(())
}

/// [`remove`], logging instead of failing: the shim is exiting anyway.
pub async fn remove_quietly(address: &str) {
    if let Err(e) = remove(address).await {
        warn!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_paths() {
        assert_eq!(
            socket_path("unix:///run/containerd/s/ab"),
            "/run/containerd/s/ab"
        );
        assert_eq!(socket_path("vsock://3:1024"), "3:1024");
        assert_eq!(socket_path("/run/x.sock"), "/run/x.sock");
    }

    #[tokio::test]
    async fn a_live_socket_is_joined_a_dead_one_replaced_and_only_sockets_removed() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}/s/shim", dir.path().display());
        let live = listen(&address)
            .await
            .unwrap()
            .expect("a fresh socket is bound");
        // A listener that is bound but not served still accepts connections (the backlog).
        assert!(listen(&address).await.unwrap().is_none());
        drop(live);
        // The file remains after its listener is gone: nobody answers, so it is replaced.
        assert!(listen(&address).await.unwrap().is_some());
        remove(&address).await.unwrap();
        assert!(!Path::new(socket_path(&address)).exists());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        remove(file.to_str().unwrap()).await.unwrap();
        assert!(file.exists());
    }
}
