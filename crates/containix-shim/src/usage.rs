//! What `containerd-shim-containix-v1 --help` prints: the flags containerd passes, as
//! containerd's own shims list them.

/// The help text.
pub const USAGE: &str = "\
containerd-shim-containix-v1: the containerd shim (task API v2 and v3) for containix pods.
containerd starts it for the runtime `io.containerd.containix.v1`; it is not run by hand.

Usage: containerd-shim-containix-v1 [flags] start|delete

Flags:
  -address string
        grpc address back to main containerd
  -bundle string
        path to the bundle if not workdir
  -debug
        enable debug output in logs
  -id string
        id of the task
  -namespace string
        namespace that owns the shim
  -publish-binary string
        path to publish binary (used for publishing events)
  -socket string
        socket path to serve
  -info
        print the runtime info (a protobuf, for containerd) and exit
  -v, -version
        show the shim version and exit
  -h, -help
        show this help and exit

Setup: docs/install.md in containix's source; its logs: docs/troubleshooting.md.
";

/// Whether the arguments ask for help, as Go's flag package reads `-h`, `-help` and their
/// double-dash forms.
pub fn asks_for_help(mut args: impl Iterator<Item = String>) -> bool {
    args.any(|a| matches!(a.as_str(), "-h" | "-help" | "--h" | "--help"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_flags_are_recognised_and_others_are_not() {
        for flag in ["-h", "-help", "--help", "--h"] {
            assert!(asks_for_help([flag.to_owned()].into_iter()), "{flag}");
        }
        let start = ["-namespace", "k8s.io", "-id", "abc", "start"].map(str::to_owned);
        assert!(!asks_for_help(start.into_iter()));
    }
}
