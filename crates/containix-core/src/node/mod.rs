//! The **node** as a whole: setting it up (containerd's config and the `containix` runtime
//! handler in it, [`containerd_config`]; installing or removing containix on a node that is not
//! NixOS, [`install`]), warming it before pods land ([`prefetch`]), reporting what it does
//! for pods ([`node_status`]), and keeping its long-lived processes' heaps small
//! ([`process_heap`]).

pub mod containerd_config;
pub mod install;
pub mod node_status;
pub mod prefetch;
pub mod process_heap;
