//! A real, isolated test node for containix tests and benchmarks.

pub mod binary_cache;
pub mod containerd;
pub mod containerd_build;
pub mod containerd_layout;
pub mod cri;
pub mod error;
pub mod faulty_cache;
pub mod fixtures;
pub mod http_server;
pub mod images;
pub mod join_all;
pub mod nix_cli;
pub mod nix_daemon;
pub mod nix_root;
pub mod packages;
pub mod pod;
pub mod private_daemon;
pub mod rendered_config;
pub mod stock_config;
pub mod synthetic_store;
pub mod workspace_binary;

pub use error::{Error, Result};
