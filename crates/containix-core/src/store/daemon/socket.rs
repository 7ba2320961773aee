//! Where the daemon's socket is: the default path and the environment override.

use std::ffi::OsString;
use std::path::PathBuf;

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/nix/var/nix/daemon-socket/socket";

/// Environment variable that overrides the socket path, as Nix itself honours it.
pub const SOCKET_PATH_ENV: &str = "NIX_DAEMON_SOCKET_PATH";

/// The daemon socket to use: `$NIX_DAEMON_SOCKET_PATH` if set and non-empty, else
/// [`DEFAULT_SOCKET_PATH`].
pub fn socket_path() -> PathBuf {
    socket_path_from(std::env::var_os(SOCKET_PATH_ENV))
}

/// [`socket_path`] with the environment value passed in.
pub fn socket_path_from(env_value: Option<OsString>) -> PathBuf {
    match env_value {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_SOCKET_PATH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_honours_the_environment_value() {
        assert_eq!(socket_path_from(None), PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(
            socket_path_from(Some(OsString::new())),
            PathBuf::from(DEFAULT_SOCKET_PATH)
        );
        assert_eq!(
            socket_path_from(Some("/run/nix.sock".into())),
            PathBuf::from("/run/nix.sock")
        );
    }
}
