//! One module per `containix` command.

pub mod assemble;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod image;
pub mod man;
pub mod node;
pub mod policy;
pub mod prefetch;
pub mod resolve;
pub mod run;
pub mod sbom;
pub mod spec;
pub mod status;
