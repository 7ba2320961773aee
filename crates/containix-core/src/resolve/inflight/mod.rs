//! Resolutions detached from the request that asked for them: node work keyed by what is
//! resolved, so that a Task.Create the kubelet cancels leaves its build running, and the next
//! attempt (the same pod's retry, or another pod on the node) attaches to it.
//!
//! A shim posts the request on the node's [`board`] (a directory per key in the state dir)
//! and registers its pod as a waiter; if no worker holds the key it starts one (a process of
//! its own running [`worker::run_worker`]); then it waits as long as its caller's deadline
//! allows, and answers with the result, the failure, or the progress so far ([`status`]).
//! What is shared is keyed by the [`work_request`].

pub mod board;
pub mod status;
pub mod work_request;
pub mod worker;

pub use board::{InflightBoard, WaitOutcome};
pub use status::InflightStatus;
pub use work_request::WorkRequest;
