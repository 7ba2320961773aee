//! Setting up a **node**: containerd's config file and the `containix` runtime handler in it
//! ([`containerd_config`]), and installing or removing containix on a node that is not NixOS
//! ([`install`]: the shim on containerd's `PATH`, the handler, the node policy).

pub mod containerd_config;
pub mod install;
