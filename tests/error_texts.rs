//! Errors say each cause once and end with what to do where that is known.
//!
//! - Every `#[error("...")]` template in the crates says each phrase once.
//! - Every error type of containix-core, built from representative values (parsers fed bad
//!   input, composite errors wrapping the errors they wrap in practice), says each phrase once;
//!   a new error type fails the test until it gets samples here.
//! - The CLI's printed errors (a failing invocation per kind of mistake) say each phrase once,
//!   start with `containix: `, and end with the fix for a daemon that cannot be reached, a flake
//!   ref the policy refuses and an unknown annotation.
//!
//! A phrase is a run of [`REPEAT_WORDS`] words ([`repeated_phrase`]). Run `cargo build -p
//! containix-cli` first.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use containix_core::assemble::bundle::BundleError;
use containix_core::assemble::closure_mount::ClosureMountError;
use containix_core::assemble::container_step::StepError;
use containix_core::assemble::plan::PlanError;
use containix_core::assemble::program::ProgramError;
use containix_core::assemble::rootfs::RootfsError;
use containix_core::assemble::view::ViewError;
use containix_core::image::oci_image::{OciImageBuilder, OciImageError};
use containix_core::node::containerd_config::edit::EditError;
use containix_core::node::install::NodeInstallError;
use containix_core::node::prefetch::PrefetchError;
use containix_core::request::annotations::PodAnnotations;
use containix_core::request::container_request::{Entrypoint, PackageName};
use containix_core::request::duration::parse_duration;
use containix_core::request::flake_ref::{AttrPath, FlakeInstallable, FlakeRef};
use containix_core::request::policy::{FlakeRule, NodePolicy};
use containix_core::request::volume_attributes::VolumeAttributes;
use containix_core::resolve::error::ResolveError;
use containix_core::resolve::flake_eval::EvalError;
use containix_core::resolve::step::Step;
use containix_core::store::closure::ClosureError;
use containix_core::store::closure_query::ClosureQueryError;
use containix_core::store::daemon::build_result::BuildStatus;
use containix_core::store::daemon::derived_path::DerivedPath;
use containix_core::store::daemon::error::DaemonError;
use containix_core::store::gc_roots::GcRootError;
use containix_core::store::nix32;
use containix_core::store::store_path::StorePath;
use containix_testkit::fixtures::repo_root;
use containix_testkit::nix_daemon::NixDaemon;
use containix_tests::{REPEAT_WORDS, containix_bin, repeated_phrase};

const HELLO: &str = "/nix/store/9g2fzih3a8bygwkczjip4h7ya8yvq1aj-hello-1.0";
const DRV: &str = "/nix/store/ar25pqwqc1pfzvpw69sln376hqy1bn07-hello-1.0.drv";
const SOCKET: &str = "/nix/var/nix/daemon-socket/socket";

fn store_path(text: &str) -> StorePath {
    StorePath::parse(text).unwrap()
}

fn io_error(kind: io::ErrorKind) -> io::Error {
    io::Error::from(kind)
}

/// The literal text of every `#[error("...")]` in `source`, placeholders replaced by numbered
/// markers so two different values never read as one phrase.
fn error_templates(source: &str) -> Vec<String> {
    let mut templates = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("#[error(") {
        rest = &rest[start + "#[error(".len()..];
        let trimmed = rest.trim_start();
        let Some(body) = trimmed.strip_prefix('"') else {
            continue; // #[error(transparent)]
        };
        let mut literal = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    // A line continuation drops the newline and the next line's indentation.
                    Some('\n') => {
                        while chars.peek().is_some_and(|c| c.is_whitespace()) {
                            chars.next();
                        }
                    }
                    Some(other) => literal.push(other),
                    None => break,
                },
                other => literal.push(other),
            }
        }
        let mut text = String::new();
        let mut depth = 0;
        let mut placeholder = 0;
        for c in literal.chars() {
            match c {
                '{' => {
                    depth += 1;
                    if depth == 1 {
                        placeholder += 1;
                        text.push_str(&format!(" value{placeholder} "));
                    }
                }
                '}' => depth -= 1,
                c if depth == 0 => text.push(c),
                _ => {}
            }
        }
        templates.push(text);
    }
    templates
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn repeated_phrases_are_found() {
    assert_eq!(
        repeated_phrase(&format!(
            "connecting to the Nix daemon at {SOCKET}: cannot connect to the Nix daemon at \
             {SOCKET}: Connection refused"
        ))
        .as_deref(),
        Some("to the nix daemon")
    );
    assert_eq!(
        repeated_phrase("annotation `k`: duration \"0s\" is zero: duration \"0s\" is zero"),
        Some("duration 0s is zero".to_owned())
    );
    assert_eq!(repeated_phrase("reading /etc/x: not found"), None);
}

#[test]
fn every_error_template_says_each_phrase_once() {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(repo_root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut checked = 0;
    let mut repeats = Vec::new();
    for file in &files {
        for template in error_templates(&std::fs::read_to_string(file).unwrap()) {
            checked += 1;
            if let Some(phrase) = repeated_phrase(&template) {
                repeats.push(format!(
                    "{}: {template:?} repeats {phrase:?}",
                    file.display()
                ));
            }
        }
    }
    assert!(
        checked > 150,
        "only {checked} templates found; is the scan broken?"
    );
    assert_eq!(repeats, Vec::<String>::new());
}

/// Representative errors of every error type of containix-core, by type name.
fn core_samples() -> BTreeMap<&'static str, Vec<String>> {
    let mut samples: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut add = |name: &'static str, message: String| {
        samples.entry(name).or_default().push(message);
    };
    let hello = store_path(HELLO);
    let drv = store_path(DRV);

    // Parsers fed bad input.
    for text in [
        "",
        "-x",
        "github:",
        "github:a",
        "github:a/b?rev=xyz",
        "github:a/b?ref=x&rev=1111111111111111111111111111111111111111",
        "github:a/b?dir=../x",
        "github:a/b?host=a b",
        "github:a/b?narHash=x",
        "github:a/b?x=%zz",
        "github:a/b?ref=a&ref=b",
        "github:a/b?&",
        "github:a/b/c/d",
        "git+ssh://",
        "app",
        "path:",
        "https://host/a/../b",
        "https://host/a%2Fb",
    ] {
        if let Err(err) = FlakeRef::parse(text) {
            add("FlakeRefError", err.to_string());
            add("FlakeRefErrorKind", err.to_string());
        }
    }
    for text in ["", "a..b", "\"a", "\"a\"b", "-a", "a.-b", "a b"] {
        if let Err(err) = AttrPath::parse(text) {
            add("AttrPathError", err.to_string());
            add("AttrPathErrorKind", err.to_string());
        }
    }
    for text in [
        "github:a/b#",
        "github:a/b#a..b",
        "-x#y",
        "https://host/a/../b#x",
    ] {
        if let Err(err) = FlakeInstallable::parse(text) {
            add("InstallableError", err.to_string());
            add("LocationError", err.to_string());
        }
    }
    for text in [
        "",
        "/nix/store/x",
        "/tmp/x",
        "/nix/store/00000000000000000000000000000000-",
        "/nix/store/0000000000000000000000000000000e-x",
        "/nix/store/00000000000000000000000000000000-.x",
        "/nix/store/00000000000000000000000000000000-a b",
    ] {
        if let Err(err) = StorePath::parse(text) {
            add("StorePathError", err.to_string());
        }
    }
    for (text, bytes) in [
        ("abc", 20),
        ("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", 20),
        ("zzzz", 2),
    ] {
        if let Err(err) = nix32::decode(text, bytes) {
            add("Nix32Error", err.to_string());
        }
    }
    for text in ["", "5", "5x", "0s", "99999999999999999h", "1s2m"] {
        if let Err(err) = parse_duration(text) {
            add("DurationError", err.to_string());
        }
    }
    for text in [
        "",
        "bin/app",
        "/bin/../app",
        "/bin//app",
        "-x",
        &"a".repeat(5000),
    ] {
        if let Err(err) = Entrypoint::parse(text) {
            add("EntrypointError", err.to_string());
        }
    }
    for text in ["", "a b", "-x"] {
        if let Err(err) = PackageName::parse(text) {
            add("PackageNameError", err.to_string());
        }
    }
    for text in [
        "",
        "github:a/b#c",
        "-x",
        "nonsense:",
        "github:a/../b",
        "https://a b/",
    ] {
        if let Err(err) = FlakeRule::parse(text) {
            add("RuleError", err.to_string());
        }
    }
    let annotation_sets: [&[(&str, &str)]; 10] = [
        &[("containix.dev/flak", "github:a/b")],
        &[("containix.dev/flake", "")],
        &[("containix.dev/flake", "-x")],
        &[("containix.dev/store-paths", "/nix/store/x")],
        &[("containix.dev/packages", "a b -c")],
        &[("containix.dev/timeout", "0s")],
        &[("containix.dev/entrypoint", "bin/x")],
        &[
            ("containix.dev/flake", "github:a/b"),
            ("containix.dev/packages", "x"),
        ],
        &[
            ("containix.dev/passthrough", "app"),
            ("containix.dev/flake.app", "github:a/b"),
        ],
        &[("containix.dev/namespace", "x")],
    ];
    for set in annotation_sets {
        let map = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Err(err) = PodAnnotations::parse(&map) {
            add("AnnotationError", err.to_string());
        }
    }
    let attribute_sets: [&[(&str, &str)]; 7] = [
        &[],
        &[("flakeRef", "github:a/b"), ("storePaths", HELLO)],
        &[("flakeRef", "")],
        &[("flakeRef", "-x")],
        &[("storePaths", "/nix/store/x")],
        &[("flakeRef", "github:a/b"), ("timeout", "0s")],
        &[("flakeRef", "github:a/b"), ("colour", "red")],
    ];
    for set in attribute_sets {
        let map = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Err(err) = VolumeAttributes::parse(&map) {
            add("VolumeAttributeError", err.to_string());
        }
    }
    let policy_path = Path::new("/etc/containix/policy.toml");
    for text in [
        "realise = \"bld\"",
        "foo = 1",
        "max-timeout = \"0s\"",
        "default-timeout = \"5m\"\nmax-timeout = \"1m\"",
        "allowed-flake-prefixes = [\"-x\"]",
        "[namespaces.a]\nfoo = 1",
    ] {
        if let Err(err) = NodePolicy::from_toml(text, policy_path) {
            add("PolicyError", err.to_string());
        }
    }
    add(
        "PolicyError",
        containix_core::request::policy::PolicyError::Read {
            path: policy_path.into(),
            source: io_error(io::ErrorKind::PermissionDenied),
        }
        .to_string(),
    );
    let default = NodePolicy::default();
    for text in [
        "git+ssh://git@host/r",
        "github:a/b?host=evil.example",
        "path:/srv/x",
    ] {
        let flake = FlakeRef::parse(text).unwrap();
        if let Err(err) = default.check_flake_ref(&flake) {
            add("RefNotAllowed", err.to_string());
        }
    }
    for text in [
        "not toml [",
        "version = \"x\"",
        "version = 9",
        "version = 2\nplugins = 1",
    ] {
        if let Err(err) = containix_core::node::containerd_config::add_handler(text, 2) {
            add("EditError", err.to_string());
        }
    }
    add(
        "EditError",
        EditError::TemplateAction {
            line: 3,
            text: "{{ if .x }}".into(),
        }
        .to_string(),
    );
    for reference in ["", "UPPER/x", "a:b:c"] {
        if let Err(err) = OciImageBuilder::new(reference) {
            add("OciImageError", err.to_string());
        }
    }
    add(
        "OciImageError",
        OciImageError::Write {
            what: "layer",
            source: io_error(io::ErrorKind::StorageFull),
        }
        .to_string(),
    );
    add(
        "GcRootError",
        GcRootError::InvalidConsumer("a b".into()).to_string(),
    );
    for result in [
        DerivedPath::all_outputs(hello.clone()),
        DerivedPath::built(drv.clone(), ["o u t"]),
    ] {
        if let Err(err) = result {
            add("DerivedPathError", err.to_string());
        }
    }

    // Composite errors, wrapping what they wrap in practice.
    let connect = || DaemonError::Connect {
        path: SOCKET.into(),
        source: io_error(io::ErrorKind::ConnectionRefused),
    };
    let reported = || DaemonError::Daemon {
        message: format!("path '{HELLO}' is not valid"),
        log_tail: vec!["warning: cannot reach cache".into()],
        status: 1,
        traces: vec![],
        closed_connection: false,
    };
    for error in [
        connect(),
        DaemonError::Connect {
            path: SOCKET.into(),
            source: io_error(io::ErrorKind::PermissionDenied),
        },
        DaemonError::Io(io_error(io::ErrorKind::BrokenPipe)),
        DaemonError::UnexpectedEof {
            what: "a path info",
        },
        reported(),
        DaemonError::InvalidRequest("an empty path list".into()),
        DaemonError::Broken,
    ] {
        add("DaemonError", error.to_string());
    }
    let installable = "github:a/b#packages.x86_64-linux.default".to_owned();
    let evals = || {
        vec![
            EvalError::Spawn {
                installable: installable.clone(),
                program: "nix".into(),
                source: io_error(io::ErrorKind::NotFound),
            },
            EvalError::Failed {
                installable: installable.clone(),
                message: "error: flake 'github:a/b' does not provide attribute 'x'".into(),
            },
            EvalError::Timeout {
                installable: installable.clone(),
                after: Duration::from_secs(120),
            },
            EvalError::Output {
                installable: installable.clone(),
                message: "expected a JSON object".into(),
            },
        ]
    };
    for error in evals() {
        add("EvalError", error.to_string());
    }
    let container = || "app".to_owned();
    let refused = default
        .check_flake_ref(&FlakeRef::parse("git+ssh://git@host/r").unwrap())
        .unwrap_err();
    let mut resolve_errors = vec![
        ResolveError::NotAllowed {
            container: container(),
            source: Box::new(refused),
        },
        ResolveError::NoPackageSet {
            container: container(),
            policy: "the built-in defaults".into(),
        },
        ResolveError::Empty {
            container: container(),
        },
        ResolveError::Timeout {
            container: container(),
            step: Step::Connecting(SOCKET.into()),
            after: Duration::from_secs(120),
        },
        ResolveError::Substitute {
            container: container(),
            path: hello.clone(),
            message: format!("path '{HELLO}' does not exist and cannot be created"),
            log: vec![],
        },
        ResolveError::Build {
            container: container(),
            drv: drv.clone(),
            status: BuildStatus::PermanentFailure,
            message: "builder for '/nix/store/x.drv' failed with exit code 1".into(),
        },
        ResolveError::Closure {
            container: container(),
            root: hello.clone(),
            source: Box::new(ClosureQueryError::InvalidRoot(hello.clone())),
        },
        ResolveError::Closure {
            container: container(),
            root: hello.clone(),
            source: Box::new(ClosureQueryError::Daemon(connect())),
        },
        ResolveError::Daemon {
            container: container(),
            step: Step::Connecting(SOCKET.into()),
            source: Box::new(connect()),
        },
        ResolveError::Daemon {
            container: container(),
            step: Step::Substituting(hello.clone()),
            source: Box::new(reported()),
        },
        ResolveError::Daemon {
            container: container(),
            step: Step::Protecting(hello.clone()),
            source: Box::new(DaemonError::Broken),
        },
        ResolveError::State {
            container: container(),
            action: "locking",
            path: "/var/lib/containix/locks/x".into(),
            source: io_error(io::ErrorKind::PermissionDenied),
        },
    ];
    resolve_errors.extend(evals().into_iter().map(|source| ResolveError::Eval {
        container: container(),
        source,
    }));
    if let Err(source) = FlakeRef::parse("github:") {
        resolve_errors.push(ResolveError::BadPackageSet {
            container: container(),
            source,
        });
    }
    for error in &resolve_errors {
        add("ResolveError", error.to_string());
    }
    for error in [
        ResolveError::Empty {
            container: "prefetch".to_owned(),
        },
        ResolveError::Timeout {
            container: "prefetch".to_owned(),
            step: Step::Connecting(SOCKET.into()),
            after: Duration::from_secs(120),
        },
    ] {
        add(
            "PrefetchError",
            PrefetchError::Resolve(Box::new(error)).to_string(),
        );
    }
    for error in [
        ClosureError::MissingRoot(hello.clone()),
        ClosureError::MissingReference {
            referrer: hello.clone(),
            missing: drv.clone(),
        },
    ] {
        add("ClosureError", error.to_string());
        add(
            "ClosureQueryError",
            ClosureQueryError::Closure(error).to_string(),
        );
    }
    add(
        "ClosureQueryError",
        ClosureQueryError::InvalidReference {
            referrer: hello.clone(),
            missing: drv.clone(),
        }
        .to_string(),
    );
    let gc_io = || GcRootError::Io {
        action: "creating",
        path: "/var/lib/containix/gcroots/x".into(),
        source: io_error(io::ErrorKind::PermissionDenied),
    };
    for error in [
        gc_io(),
        GcRootError::RelativeDir("gcroots".into()),
        GcRootError::Daemon {
            link: "/var/lib/containix/gcroots/x".into(),
            source: connect(),
        },
    ] {
        add("GcRootError", error.to_string());
    }
    let program_errors = || {
        vec![
            ProgramError::NotFound {
                what: "entrypoint",
                program: "nope".into(),
                searched: vec![format!("{HELLO}/bin").into()],
            },
            ProgramError::NotExecutable {
                what: "entrypoint",
                path: format!("{HELLO}/share").into(),
                found: "a directory",
            },
            ProgramError::OutsideClosure {
                what: "command",
                path: format!("{HELLO}/bin/sh").into(),
                outside: "/bin/sh".into(),
            },
        ]
    };
    for error in program_errors() {
        add("ProgramError", error.to_string());
    }
    let plan_errors = || {
        let mut errors = vec![
            PlanError::NoRoot,
            PlanError::MissingFromStore {
                path: hello.clone(),
            },
            PlanError::MountConflict {
                destination: format!("{HELLO}/etc").into(),
                member: hello.clone(),
            },
            PlanError::Store {
                path: HELLO.into(),
                source: io_error(io::ErrorKind::NotFound),
            },
        ];
        errors.extend(program_errors().into_iter().map(PlanError::Program));
        errors
    };
    for error in plan_errors() {
        add("PlanError", error.to_string());
    }
    let bundle_errors = || {
        let mut errors = vec![
            BundleError::Read {
                path: "/run/x/config.json".into(),
                source: io_error(io::ErrorKind::NotFound),
            },
            BundleError::Write {
                action: "writing",
                path: "/run/x/config.json".into(),
                source: io_error(io::ErrorKind::StorageFull),
            },
        ];
        errors.extend(plan_errors().into_iter().map(BundleError::Plan));
        errors
    };
    for error in bundle_errors() {
        add("BundleError", error.to_string());
    }
    let rootfs_errors = || {
        vec![
            RootfsError::Io {
                action: "creating",
                path: "/run/x/rootfs/nix".into(),
                source: io_error(io::ErrorKind::PermissionDenied),
            },
            RootfsError::Hardlink {
                path: HELLO.into(),
                source: io_error(io::ErrorKind::CrossesDevices),
            },
            RootfsError::Mount {
                path: HELLO.into(),
                source: io_error(io::ErrorKind::PermissionDenied),
            },
        ]
    };
    for error in rootfs_errors() {
        add("RootfsError", error.to_string());
    }
    let view_errors = || {
        let mut errors = vec![
            ViewError::Consumer {
                consumer: "a b".into(),
                source: Box::new(GcRootError::InvalidConsumer("a b".into())),
            },
            ViewError::Io {
                action: "creating",
                path: "/var/lib/containix/views/x".into(),
                source: io_error(io::ErrorKind::StorageFull),
            },
            ViewError::Locked {
                id: "x".into(),
                waited_secs: 30,
            },
            ViewError::GcRoot {
                id: "x".into(),
                source: Box::new(gc_io()),
            },
        ];
        errors.extend(
            rootfs_errors()
                .into_iter()
                .map(|source| ViewError::Assemble {
                    id: "x".into(),
                    source: Box::new(source),
                }),
        );
        errors
    };
    for error in view_errors() {
        add("ViewError", error.to_string());
    }
    for error in view_errors() {
        add(
            "PrefetchError",
            PrefetchError::View(Box::new(error)).to_string(),
        );
    }
    for error in [
        ClosureMountError::MissingFromStore {
            path: hello.clone(),
        },
        ClosureMountError::Store {
            path: HELLO.into(),
            source: io_error(io::ErrorKind::NotFound),
        },
        ClosureMountError::Prepare {
            path: "/var/lib/containix/csi/x".into(),
            source: io_error(io::ErrorKind::PermissionDenied),
        },
        ClosureMountError::Unmount {
            target: "/var/lib/kubelet/pods/x".into(),
            source: io_error(io::ErrorKind::ResourceBusy),
        },
    ] {
        add("ClosureMountError", error.to_string());
    }
    let mut step_errors = vec![
        StepError::Spec {
            path: "/run/x/config.json".into(),
            message: "expected value at line 1 column 1".into(),
        },
        StepError::GcRoot {
            container: container(),
            source: Box::new(gc_io()),
        },
        StepError::StateDir {
            path: "/run/x/containix".into(),
            source: io_error(io::ErrorKind::PermissionDenied),
        },
    ];
    step_errors.extend(
        resolve_errors
            .into_iter()
            .map(|error| StepError::Resolve(Box::new(error))),
    );
    step_errors.extend(
        view_errors()
            .into_iter()
            .map(|error| StepError::View(Box::new(error))),
    );
    step_errors.extend(bundle_errors().into_iter().map(|error| StepError::Bundle {
        container: container(),
        source: Box::new(error),
    }));
    for error in step_errors {
        add("StepError", error.to_string());
    }
    for error in [
        NodeInstallError::Read {
            path: "/etc/containerd/config.toml".into(),
            source: io_error(io::ErrorKind::PermissionDenied),
        },
        NodeInstallError::Write {
            what: "writing",
            path: "/etc/containerd/config.toml".into(),
            source: io_error(io::ErrorKind::ReadOnlyFilesystem),
        },
        NodeInstallError::Config {
            path: "/etc/containerd/config.toml".into(),
            source: EditError::UnsupportedVersion(9),
        },
        NodeInstallError::ShimSource {
            path: "/usr/local/bin/containerd-shim-containix-v1".into(),
            reason: "No such file or directory (os error 2)".into(),
        },
        NodeInstallError::RelativePath("etc/containerd".into()),
    ] {
        add("NodeInstallError", error.to_string());
    }
    samples
}

/// The names of the error types containix-core declares (`#[derive(... Error ...)]` on a
/// `pub enum` or `pub struct`).
fn core_error_types() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&repo_root().join("crates/containix-core/src"), &mut files);
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (at, line) in lines.iter().enumerate() {
            if !(line.starts_with("#[derive(") && line.contains("Error")) {
                continue;
            }
            // The item the derive is on: the next declaration, past other attributes.
            let declared = lines[at + 1..].iter().find_map(|l| {
                l.strip_prefix("pub enum ")
                    .or_else(|| l.strip_prefix("pub struct "))
            });
            if let Some(rest) = declared {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn every_core_error_says_each_cause_once() {
    let samples = core_samples();
    let declared = core_error_types();
    assert!(
        declared.len() >= 25,
        "only {declared:?}; is the scan broken?"
    );
    let missing: Vec<&String> = declared
        .iter()
        .filter(|name| !samples.contains_key(name.as_str()))
        .collect();
    assert_eq!(
        missing,
        Vec::<&String>::new(),
        "error types without samples in tests/error_texts.rs"
    );
    let mut repeats = Vec::new();
    let mut count = 0;
    for (name, messages) in &samples {
        for message in messages {
            count += 1;
            if let Some(phrase) = repeated_phrase(message) {
                repeats.push(format!("{name}: {message}\n    repeats {phrase:?}"));
            }
        }
    }
    assert!(count > 150, "only {count} samples");
    assert_eq!(repeats, Vec::<String>::new(), "repeated clauses");
}

/// A failing CLI invocation: its arguments, its environment, and the fix its message must end
/// with, if one is known.
type Case<'a> = (Vec<String>, &'a [(&'a str, &'a str)], Option<&'a str>);

/// Runs the CLI with `args` (and `env`) in `dir`; returns its stderr after checking it failed.
fn failing(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(containix_bin());
    command
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("CONTAINIX_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(!output.status.success(), "containix {args:?} succeeded");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn printed_errors_say_each_cause_once_and_end_with_the_fix() {
    NixDaemon::start_or_reuse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("unknown.ann", "containix.dev/flak=github:a/b\n");
    write(
        "two.json",
        r#"{"containix.dev/flake":"github:a/b","containix.dev/store-paths":"/nix/store/x"}"#,
    );
    write("zero.ann", "containix.dev/timeout=0s\n");
    write("bad.ann", "not an annotation\n");
    write("typed.toml", "max-timeout = 5\n");
    write("unknown.toml", "foo = 1\n");
    write("containerd.toml", "not toml [\n");
    let hello = format!("path:{}", repo_root().join("examples/hello").display());
    let missing_path = "/nix/store/00000000000000000000000000000000-missing";
    let unreachable = [("NIX_DAEMON_SOCKET_PATH", "/nonexistent/socket")];
    let cases: Vec<Case> = vec![
        (
            vec!["resolve".into(), "--store-paths".into(), HELLO.into()],
            &unreachable,
            Some("or the node policy's `daemon-socket`"),
        ),
        (
            vec!["resolve".into(), "git+ssh://git@host/r".into()],
            &[],
            Some(
                "to allow it, add a rule to `allowed-flake-prefixes` in /etc/containix/policy.toml",
            ),
        ),
        (
            vec![
                "resolve".into(),
                "--annotations".into(),
                at("unknown.ann"),
                "--container".into(),
                "app".into(),
            ],
            &[],
            Some(
                "and containix.dev/<key>.<container> for flake, store-paths, packages and entrypoint",
            ),
        ),
        (
            vec![
                "resolve".into(),
                "--annotations".into(),
                at("two.json"),
                "--container".into(),
                "app".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "resolve".into(),
                "--annotations".into(),
                at("zero.ann"),
                "--container".into(),
                "app".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "resolve".into(),
                "--annotations".into(),
                at("bad.ann"),
                "--container".into(),
                "app".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "resolve".into(),
                "--annotations".into(),
                at("nofile"),
                "--container".into(),
                "app".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "resolve".into(),
                "--policy".into(),
                at("typed.toml"),
                "github:a/b".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "resolve".into(),
                "--policy".into(),
                at("unknown.toml"),
                "github:a/b".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "resolve".into(),
                "--policy".into(),
                at("nofile.toml"),
                "github:a/b".into(),
            ],
            &[],
            None,
        ),
        (
            vec!["resolve".into(), "github:a/b?rev=xyz".into()],
            &[],
            None,
        ),
        (vec!["resolve".into(), "--".into(), "-x".into()], &[], None),
        (
            vec![
                "resolve".into(),
                "--timeout".into(),
                "5x".into(),
                hello.clone(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "resolve".into(),
                "--store-paths".into(),
                missing_path.into(),
            ],
            &[],
            None,
        ),
        (
            vec!["resolve".into(), "--packages".into(), "curl".into()],
            &[],
            None,
        ),
        (vec!["resolve".into(), format!("{hello}#nope")], &[], None),
        (
            vec!["resolve".into(), "path:/nonexistent/flake".into()],
            &[],
            None,
        ),
        (
            vec![
                "run".into(),
                "--entrypoint".into(),
                "nope".into(),
                hello.clone(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "assemble".into(),
                hello.clone(),
                "--out".into(),
                "/nonexistent/dir".into(),
            ],
            &[],
            None,
        ),
        (
            vec!["assemble".into(), "--remove".into(), at("nobundle")],
            &[],
            None,
        ),
        (
            vec!["sbom".into(), "--store-paths".into(), missing_path.into()],
            &[],
            None,
        ),
        (
            vec![
                "node".into(),
                "install".into(),
                "--dry-run".into(),
                "--containerd-config".into(),
                at("containerd.toml"),
                "--shim".into(),
                "/bin/true".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "policy".into(),
                "check".into(),
                "github:a/b?host=evil.example".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "config".into(),
                "show".into(),
                "--policy".into(),
                at("typed.toml"),
            ],
            &[],
            None,
        ),
        (
            vec![
                "image".into(),
                "empty".into(),
                "--out".into(),
                "/nonexistent/dir/empty.tar".into(),
            ],
            &[],
            None,
        ),
        (
            vec![
                "image".into(),
                "build".into(),
                "--bin-dir".into(),
                "/nonexistent".into(),
                "--out-dir".into(),
                at("images"),
            ],
            &[],
            None,
        ),
    ];
    let mut problems = Vec::new();
    for (args, env, fix) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = failing(dir.path(), &args, env);
        let Some(message) = stderr
            .lines()
            .rev()
            .find(|line| line.starts_with("containix: "))
        else {
            problems.push(format!(
                "containix {args:?}: no `containix: ` line in {stderr:?}"
            ));
            continue;
        };
        if let Some(phrase) = repeated_phrase(message) {
            problems.push(format!(
                "containix {args:?}: {message}\n    repeats {phrase:?}"
            ));
        }
        if let Some(fix) = fix
            && !message.trim_end().ends_with(fix)
        {
            problems.push(format!(
                "containix {args:?}: {message}\n    does not end with {fix:?}"
            ));
        }
    }
    assert_eq!(
        problems,
        Vec::<String>::new(),
        "(phrases of {REPEAT_WORDS} words)"
    );
}
