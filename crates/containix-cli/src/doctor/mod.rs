//! `containix doctor`: whether a node can run containix pods.
//!
//! [`probe`] gathers [`facts::Facts`] (runs commands, reads files, connects sockets; with
//! [`containerd_process`], finds the running containerd to search its `PATH`); everything
//! else is pure: `containix_core::node::containerd_config` reads containerd's config, [`tool_output`] reads what the
//! tools print, and [`verdict`] turns facts into [`check::CheckResult`]s.

pub mod check;
pub mod containerd_process;
pub mod facts;
pub mod probe;
pub mod tool_output;
pub mod verdict;
