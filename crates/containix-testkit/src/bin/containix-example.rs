//! `containix-example`: the README's main-job command.
//!
//! Stands up the test node (nix-daemon, a private containerd with CRI, runc, and the containix
//! shim as the `containix` runtime handler), builds the example flake in `examples/hello`
//! offline, and runs it the way a kubelet would run this pod:
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     containix.dev/flake: "path:/nix/store/...-source#packages.<system>.default"
//! spec:
//!   runtimeClassName: containix
//!   containers:
//!   - name: hello
//!     image: "containix/empty:1.0.0"
//! ```
//!
//! The shim resolves the flake, bind-mounts its closure read-only and runs its main program.
//! Prints the program's output and tears the node down, leaving nothing behind.

use std::process::ExitCode;
use std::time::Duration;

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::{ContainerLog, ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{self, Built};
use containix_testkit::nix_daemon::NixDaemon;
use containix_testkit::packages;

/// A hang guard for the example program, not a performance bound.
const EXIT_LIMIT: Duration = Duration::from_secs(120);

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("containix-example: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode, BoxError> {
    packages::require_node_packages()?;
    let daemon = NixDaemon::start_or_reuse()?;
    eprintln!(
        "nix-daemon: answering on {}",
        daemon.socket_path().display()
    );

    let built = fixtures::example_hello()?;
    eprintln!(
        "example: {} with a closure of {} store paths:",
        built.out_path.display(),
        built.closure.len()
    );
    for path in &built.closure {
        eprintln!("  {}", path.display());
    }

    let options = ContainerdOptions {
        // The example is a local flake (a `path:` ref to its store copy); a real node's policy
        // allows only remote refs by default.
        containix_policy: "allowed-flake-prefixes = [\"path:/nix/store/\"]\nrealise = \"build\"\n"
            .into(),
        ..ContainerdOptions::default()
    };
    if options.shim_binary.is_none() {
        return Err(
            "containerd-shim-containix-v1 is not built: run `cargo build --workspace --bins`"
                .into(),
        );
    }
    let node = Containerd::start(options).await?;
    eprintln!(
        "containerd: private instance on {}",
        node.socket().display()
    );
    let outcome = run_pod(&node, &built).await;
    let report = node.stop().await?;
    eprintln!(
        "containerd: stopped; {}",
        if report.is_clean() {
            "nothing was left behind".to_owned()
        } else {
            format!("had to force cleanup: {report:?}")
        }
    );
    let (exit_code, log) = outcome?;
    for (text, to_stderr) in [(log.stdout(), false), (log.stderr(), true)] {
        let newline = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        if to_stderr {
            eprint!("{text}{newline}");
        } else {
            print!("{text}{newline}");
        }
    }
    eprintln!("example: the program exited with status {exit_code}");
    Ok(if exit_code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the example as a containix pod: the flake annotation, the `containix` runtime
/// handler, and a container that names only the empty image.
async fn run_pod(node: &Containerd, built: &Built) -> Result<(i32, ContainerLog), BoxError> {
    let cri = node.cri();
    let log_dir = node.create_pod_log_dir("containix-example")?;
    let flake = built.flake_ref();
    eprintln!("pod: containix.dev/flake = {flake}");
    let pod_config = PodSandboxSpec::new("containix-example")
        .log_directory(&log_dir)
        .annotation("containix.dev/flake", &flake)
        .build();
    let pod = cri
        .run_pod_sandbox(&pod_config, CONTAINIX_RUNTIME_HANDLER)
        .await?;
    let container = ContainerSpec::new("hello", EMPTY_IMAGE_NAME);
    let id = cri
        .create_container(&pod, &container.build(), &pod_config)
        .await?;
    cri.start_container(&id).await?;
    let status = cri.wait_for_exit(&id, EXIT_LIMIT).await?;
    let log = ContainerLog::read(&log_dir.join(container.relative_log_path())).await?;
    cri.remove_container(&id).await?;
    cri.stop_pod_sandbox(&pod).await?;
    cri.remove_pod_sandbox(&pod).await?;
    Ok((status.exit_code, log))
}
