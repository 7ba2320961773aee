//! `containerd-shim-containix-v1`: the containerd shim (task API v2 and v3) for containix pods.
//!
//! It behaves like containerd's runc shim for every container; the one difference is the
//! [`containix_step::ContainixStep`] hook that may prepare a bundle before `runc create`.

mod bootstrap;
mod container;
mod containix_step;
mod error;
mod events;
mod io;
mod logging;
mod logrus_format;
mod oom;
mod process;
mod reaper;
mod resolve_worker;
mod runtime_options;
mod runtime_stdio;
mod service;
mod shim_socket;
mod signals;
mod spawner;
mod start_protocol;
mod stats;
mod task;
mod task_services;
#[cfg(test)]
mod tests;
mod usage;

/// The runtime name containerd knows this shim by.
const RUNTIME_ID: &str = containix_core::node::containerd_config::RUNTIME_TYPE;

// One thread serves the shim's single pod: every Task call is short or awaits runc, and the
// work that blocks (container stdio, filling a store view) runs on tokio's blocking threads.
fn main() {
    containix_core::node::process_heap::use_one_arena();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run());
}

async fn run() {
    if usage::asks_for_help(std::env::args().skip(1)) {
        print!("{}", usage::USAGE);
        return;
    }
    if std::env::args()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-v" | "-version" | "--version"))
    {
        println!("containerd-shim-containix-v1 {}", containix_core::VERSION);
        return;
    }
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(resolve_worker::WORKER_ACTION) {
        let key = args.next().unwrap_or_default();
        std::process::exit(resolve_worker::run(&key).await);
    }
    let code = bootstrap::run(RUNTIME_ID).await;
    if code != 0 {
        std::process::exit(code);
    }
}
