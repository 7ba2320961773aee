//! Records seed inputs for the fuzz targets from the real test node: the bytes the real
//! nix-daemon sends for a handshake and for the replies containix decodes (path info, roots,
//! missing paths, build results with their activity and log messages), and the `config.json`
//! containerd writes for a containix pod's containers (and the shim's edit of it).
//!
//! Ignored: it rewrites `fuzz/corpus/`. Run it after a change to what the daemon or
//! containerd send: `cargo test -p containix-tests --test fuzz_corpus -- --ignored`.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_core::store::daemon::{BuildMode, DaemonClient, DerivedPath};
use containix_core::store::store_path::StorePath;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{self, Fixture};
use containix_testkit::nix_cli::NixCommand;
use containix_testkit::nix_daemon::NixDaemon;
use containix_testkit::pod::CriPod;
use containix_tests::{LIMIT, stop_cleanly};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// A stream that keeps a copy of every byte read from it.
struct Recording {
    inner: UnixStream,
    received: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        self.received.lock().unwrap().extend(new);
        polled
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A daemon connection whose replies are recorded, one transcript per call.
struct Recorder {
    client: DaemonClient<Recording>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    /// Connects; returns the recorder and the bytes of the handshake.
    async fn connect(socket: &Path) -> (Recorder, Vec<u8>) {
        let received = Arc::new(Mutex::new(Vec::new()));
        let stream = Recording {
            inner: UnixStream::connect(socket).await.unwrap(),
            received: received.clone(),
        };
        let client = DaemonClient::from_stream(stream).await.unwrap();
        let handshake = std::mem::take(&mut *received.lock().unwrap());
        (Recorder { client, received }, handshake)
    }

    /// The bytes the daemon sent since the last call (the reply to one operation).
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    let dir = fixtures::repo_root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a seed to `fuzz/corpus/<target>/<name>`.
fn seed(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus_dir(target).join(name), bytes).unwrap();
}

/// A seed whose first byte selects the protocol version, as the daemon targets read it.
fn versioned(minor: u8, selector_low: u8, shift: bool, bytes: &[u8]) -> Vec<u8> {
    let version_bits = minor - 21;
    let first = if shift {
        version_bits << 3 | selector_low
    } else {
        version_bits
    };
    let mut out = vec![first];
    out.extend_from_slice(bytes);
    out
}

fn store_path(path: &Path) -> StorePath {
    StorePath::parse(&path.display().to_string()).unwrap()
}

#[tokio::test]
#[ignore = "rewrites fuzz/corpus; run it by hand"]
async fn record_daemon_transcripts() {
    let daemon = NixDaemon::start_or_reuse().unwrap();
    let hello = fixtures::example_hello().unwrap();
    let (mut recorder, handshake) = Recorder::connect(daemon.socket_path()).await;
    let minor = recorder.client.protocol().minor;
    seed(
        "daemon_reply",
        "handshake",
        &versioned(minor, 0, true, &handshake),
    );

    recorder
        .client
        .query_path_info(&store_path(&hello.out_path))
        .await
        .unwrap()
        .unwrap();
    let valid = recorder.take();
    seed(
        "daemon_reply",
        "path-info-valid",
        &versioned(minor, 6, true, &valid),
    );
    seed("path_info", "valid", &versioned(minor, 0, false, &valid));
    let busybox = store_path(hello.closure_member("busybox").unwrap());
    recorder.client.query_path_info(&busybox).await.unwrap();
    seed(
        "path_info",
        "valid-no-refs",
        &versioned(minor, 0, false, &recorder.take()),
    );
    let missing =
        StorePath::parse("/nix/store/ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l-not-there").unwrap();
    assert!(
        recorder
            .client
            .query_path_info(&missing)
            .await
            .unwrap()
            .is_none()
    );
    seed(
        "path_info",
        "invalid",
        &versioned(minor, 0, false, &recorder.take()),
    );

    recorder.client.find_roots().await.unwrap();
    let roots = recorder.take();
    // Keep the seed small: the machine's roots are many; the first kilobytes show the form.
    seed(
        "daemon_reply",
        "roots",
        &versioned(minor, 5, true, &roots[..roots.len().min(4096)]),
    );

    // A build that logs, and one that fails: activities, results and log lines.
    let unbuilt = Fixture::BuildLog.unbuilt_isolated().unwrap();
    for (package, name) in [("default", "build-log"), ("broken", "build-failure")] {
        let drv = NixCommand::nix()
            .args(["eval", "--raw"])
            .arg(format!("{}.drvPath", unbuilt.flake_ref(package)))
            .run()
            .unwrap();
        let drv = DerivedPath::all_outputs(StorePath::parse(drv.trim()).unwrap()).unwrap();
        recorder
            .client
            .query_missing(std::slice::from_ref(&drv))
            .await
            .unwrap();
        seed(
            "daemon_reply",
            &format!("{name}-missing"),
            &versioned(minor, 4, true, &recorder.take()),
        );
        recorder
            .client
            .build_paths_with_results(&[drv], BuildMode::Normal)
            .await
            .unwrap();
        let built = recorder.take();
        seed(
            "daemon_reply",
            &format!("{name}-results"),
            &versioned(minor, 3, true, &built),
        );
        seed("daemon_stderr", name, &versioned(minor, 0, false, &built));
    }
    // A failing operation: the daemon's error message on the stderr channel.
    let (mut refused, _) = Recorder::connect(daemon.socket_path()).await;
    let absent = DerivedPath::all_outputs(
        StorePath::parse("/nix/store/ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l-absent.drv").unwrap(),
    )
    .unwrap();
    assert!(
        refused
            .client
            .build_paths(&[absent], BuildMode::Normal)
            .await
            .is_err()
    );
    seed(
        "daemon_stderr",
        "error",
        &versioned(minor, 0, false, &refused.take()),
    );
}

#[tokio::test]
#[ignore = "rewrites fuzz/corpus; run it by hand"]
async fn record_oci_configs() {
    let hello = fixtures::example_hello().unwrap();
    let node = Containerd::start(ContainerdOptions::default())
        .await
        .unwrap();
    let out = hello.out_path.display().to_string();
    let spec = PodSandboxSpec::new("corpus")
        .annotation("containix.dev/store-paths", &out)
        .annotation("containix.dev/timeout", "1m")
        .annotation("containix.dev/passthrough", "plain");
    let pod = CriPod::run(&node, spec, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap();
    let busybox = hello.closure_member("busybox").unwrap().join("busybox");
    let app = ContainerSpec::new("app", EMPTY_IMAGE_NAME)
        .command([busybox.display().to_string(), "sleep".into(), "100".into()])
        .env("GREETING", "hi")
        .mount("/tmp", "/data", true);
    pod.start(&app).await.unwrap();
    let plain = ContainerSpec::new("plain", node.busybox_image()).command(["sleep", "100"]);
    pod.start(&plain).await.unwrap();

    // containerd's bundles (the containix container's edited by the shim) and the shim's
    // copies of what containerd wrote.
    let mut found = Vec::new();
    collect_named(node.layout().dir(), "config.json", &mut found);
    collect_named(node.layout().dir(), "config.orig.json", &mut found);
    assert!(found.len() >= 4, "{found:?}");
    for (i, path) in found.iter().enumerate() {
        let text = std::fs::read(path).unwrap();
        // Minified: libFuzzer's mutations go further in fewer bytes.
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        seed(
            "oci_config",
            &format!("config-{i}"),
            &serde_json::to_vec(&value).unwrap(),
        );
    }
    pod.remove(LIMIT).await.unwrap();
    stop_cleanly(node).await;
}

fn collect_named(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_named(&path, name, out);
        } else if entry.file_name() == name {
            out.push(path);
        }
    }
}
