//! Tests of whole plans: hand-made closures and stores, containerd-like base specs.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder, Spec};
use proptest::prelude::*;

use super::fixtures::{base_mount, containerd_spec, example, info, store_path};
use super::*;
use crate::assemble::store_facts::MemoryStore;
use crate::resolve::resolved::Resolved;
use crate::store::closure::Closure;
use crate::store::store_path::StorePath;

const STATE_DIR: &str = "/run/containix/c1";

fn input<'a>(
    resolved: &'a Resolved,
    base: &'a Spec,
    entrypoint: Option<&'a str>,
    image: ImageKind,
) -> PlanInput<'a> {
    PlanInput::for_resolved(resolved, base, entrypoint, image, Path::new(STATE_DIR))
}

/// The spec survives oci-spec's own checks: a JSON round trip (which validates the process) and
/// rebuilding every mount with its builder (which validates id mappings).
fn assert_valid(spec: &Spec) {
    let json = serde_json::to_string(spec).unwrap();
    let parsed: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(&parsed, spec);
    for mount in spec.mounts().as_deref().unwrap_or_default() {
        let mut builder = MountBuilder::default().destination(mount.destination().clone());
        if let Some(typ) = mount.typ() {
            builder = builder.typ(typ.clone());
        }
        if let Some(source) = mount.source() {
            builder = builder.source(source.clone());
        }
        if let Some(options) = mount.options() {
            builder = builder.options(options.clone());
        }
        assert_eq!(&builder.build().unwrap(), mount);
    }
}

fn env_of(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().env().clone().unwrap()
}

fn args_of(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().args().clone().unwrap()
}

fn err(input: &PlanInput<'_>, view: &MemoryStore) -> String {
    plan(input, view).unwrap_err().to_string()
}

#[test]
fn pure_nix_rootfs_gets_closure_users_and_tmp() {
    let ex = example();
    let base = containerd_spec(&[], &["HOME=/"], 1000, true);
    let plan = plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();

    let mut members: Vec<_> = [&ex.app, &ex.lib, &ex.cacert, &ex.data].to_vec();
    members.sort();
    let binds: Vec<&Mount> = plan.mounts.iter().take(4).collect();
    for (mount, member) in binds.iter().zip(&members) {
        assert_eq!(mount.destination(), member.as_path());
        assert_eq!(mount.source().as_deref(), Some(member.as_path()));
        assert_eq!(mount.typ().as_deref(), Some("bind"));
        assert_eq!(
            mount.options().as_deref().unwrap(),
            ["rbind", "ro", "nosuid", "nodev"]
        );
    }
    let rest: Vec<_> = plan.mounts[4..]
        .iter()
        .map(|m| (m.destination().clone(), m.source().clone().unwrap()))
        .collect();
    assert_eq!(
        rest,
        [
            (
                "/etc/passwd".into(),
                PathBuf::from(STATE_DIR).join("passwd")
            ),
            ("/etc/group".into(), PathBuf::from(STATE_DIR).join("group")),
            ("/tmp".into(), "tmpfs".into()),
        ]
    );
    assert_eq!(plan.args, [format!("{}/bin/app", ex.app)]);
    let ca = format!("{}/etc/ssl/certs/ca-bundle.crt", ex.cacert);
    assert_eq!(
        plan.env,
        [
            EnvEdit::PrependPath(vec![format!("{}/bin", ex.app)]),
            EnvEdit::SetDefault {
                name: "SSL_CERT_FILE".into(),
                value: ca.clone()
            },
            EnvEdit::SetDefault {
                name: "NIX_SSL_CERT_FILE".into(),
                value: ca.clone()
            },
        ]
    );
    assert_eq!(plan.files.len(), 2);
    assert!(plan.files[0].contents.contains("containix:x:1000:1000:"));
    assert!(plan.skipped.is_empty());

    let spec = apply(&plan, base.clone());
    assert_valid(&spec);
    let base_mounts = base.mounts().clone().unwrap();
    let mounts = spec.mounts().clone().unwrap();
    assert_eq!(mounts[..base_mounts.len()], base_mounts[..]);
    assert_eq!(mounts.len(), base_mounts.len() + plan.mounts.len());
    assert_eq!(
        env_of(&spec),
        [
            "HOME=/".to_string(),
            format!("PATH={}/bin", ex.app),
            format!("SSL_CERT_FILE={ca}"),
            format!("NIX_SSL_CERT_FILE={ca}"),
        ]
    );
    assert_eq!(apply(&plan, spec.clone()), spec);
    assert_eq!(spec.root(), base.root());
    assert_eq!(spec.linux(), base.linux());
}

#[test]
fn entrypoint_comes_before_the_pod_args() {
    let ex = example();
    let base = containerd_spec(&["--port", "80"], &[], 0, false);
    for (entrypoint, expected) in [
        ("/bin/helper", format!("{}/bin/helper", ex.app)),
        ("app", format!("{}/bin/app", ex.app)),
        (
            &*format!("{}/bin/tool", ex.lib),
            format!("{}/bin/tool", ex.lib),
        ),
    ] {
        let plan = plan(
            &input(&ex.resolved, &base, Some(entrypoint), ImageKind::Empty),
            &ex.store,
        )
        .unwrap();
        assert_eq!(
            plan.args,
            [expected.as_str(), "--port", "80"],
            "{entrypoint}"
        );
    }
}

#[test]
fn pod_command_is_found_on_the_closure_path() {
    let ex = example();
    // `tool` lives in lib, which the pod put on its PATH.
    let pod_path = format!("PATH={}/bin:/usr/bin", ex.lib);
    let base = containerd_spec(&["tool", "-v"], &[&pod_path], 0, false);
    let plan = plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    assert_eq!(plan.args, [format!("{}/bin/tool", ex.lib), "-v".into()]);
    let spec = apply(&plan, base);
    assert_eq!(
        env_of(&spec)[0],
        format!("PATH={}/bin:{}/bin:/usr/bin", ex.app, ex.lib)
    );

    let base = containerd_spec(&["helper"], &[], 0, false);
    let plan = super::plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    assert_eq!(plan.args, [format!("{}/bin/helper", ex.app)]);

    let base = containerd_spec(&["/bin/sh", "-c", "x"], &[], 0, false);
    let plan = super::plan(
        &input(&ex.resolved, &base, None, ImageKind::Normal),
        &ex.store,
    )
    .unwrap();
    assert_eq!(plan.args, ["/bin/sh", "-c", "x"]);
}

#[test]
fn programs_missing_from_the_closure_are_named() {
    let ex = example();
    let base = containerd_spec(&["curl", "-v"], &[], 0, false);
    let message = err(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    );
    assert_eq!(
        message,
        format!(
            "command \"curl\" was not found in the closure; looked in {}/bin",
            ex.app
        )
    );
    // A normal image may bring curl itself.
    let plan = plan(
        &input(&ex.resolved, &base, None, ImageKind::Normal),
        &ex.store,
    )
    .unwrap();
    assert_eq!(plan.args, ["curl", "-v"]);

    let outside = format!("{}/bin/x", store_path("elsewhere"));
    let base = containerd_spec(&[&outside], &[], 0, false);
    let message = err(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    );
    assert!(message.contains("which is not in the closure"), "{message}");

    let mut resolved = ex.resolved.clone();
    resolved.main_program = Some("server".into());
    let base = containerd_spec(&[], &[], 0, false);
    let message = err(&input(&resolved, &base, None, ImageKind::Empty), &ex.store);
    assert_eq!(
        message,
        format!(
            "main program \"server\" was not found in the closure; looked in {}/bin",
            ex.app
        )
    );
    resolved.main_program = None;
    let message = err(&input(&resolved, &base, None, ImageKind::Empty), &ex.store);
    assert!(message.starts_with("nothing to run"), "{message}");
}

#[test]
fn bad_entrypoints_are_rejected_with_reasons() {
    let ex = example();
    let store = ex
        .store
        .clone()
        .symlink(format!("{}/bin/evil", ex.app), "/usr/bin/evil");
    let base = containerd_spec(&[], &[], 0, false);
    let cases = [
        (
            "/bin/missing".to_string(),
            format!(
                "entrypoint \"/bin/missing\" was not found in the closure; looked in {}/bin/missing",
                ex.app
            ),
        ),
        ("../x".into(), "contains '..'".into()),
        ("/bin/../../etc/app".into(), "contains '..'".into()),
        ("bin/app".into(), "is a relative path".into()),
        ("".into(), "is empty".into()),
        ("/share/doc".into(), "without execute permission".into()),
        ("/share".into(), "is a directory".into()),
        (
            "/bin/evil".into(),
            "leads to \"/usr/bin/evil\", which is not in the closure".into(),
        ),
        (
            format!("{}/bin/x", store_path("elsewhere")),
            "which is not in the closure".into(),
        ),
    ];
    for (entrypoint, expected) in cases {
        let message = err(
            &input(&ex.resolved, &base, Some(&entrypoint), ImageKind::Empty),
            &store,
        );
        assert!(message.contains(&expected), "{entrypoint:?}: {message}");
    }
}

#[test]
fn base_spec_needs_root_process_and_a_good_state_dir() {
    let ex = example();
    let mut base = containerd_spec(&[], &[], 0, false);
    base.set_root(None);
    let message = err(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    );
    assert!(message.contains("has no `root`"), "{message}");

    let mut base = containerd_spec(&[], &[], 0, false);
    base.set_process(None);
    let message = err(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    );
    assert!(message.contains("has no `process`"), "{message}");

    let base = containerd_spec(&[], &[], 0, false);
    let mut bad = input(&ex.resolved, &base, None, ImageKind::Empty);
    bad.state_dir = Path::new("relative/dir");
    let message = err(&bad, &ex.store);
    assert!(
        message.contains("state directory \"relative/dir\" is relative"),
        "{message}"
    );
}

#[test]
fn normal_image_keeps_its_rootfs() {
    let ex = example();
    let base = containerd_spec(
        &["app"],
        &["PATH=/usr/bin:/bin", "SSL_CERT_FILE=/etc/ca"],
        0,
        false,
    );
    let plan = plan(
        &input(&ex.resolved, &base, None, ImageKind::Normal),
        &ex.store,
    )
    .unwrap();
    assert!(plan.files.is_empty());
    assert_eq!(plan.mounts.len(), 4);
    assert!(
        plan.mounts
            .iter()
            .all(|m| m.destination().starts_with("/nix/store"))
    );
    let spec = apply(&plan, base.clone());
    assert_eq!(spec.root(), base.root());
    assert_eq!(
        env_of(&spec),
        [
            format!("PATH={}/bin:/usr/bin:/bin", ex.app),
            "SSL_CERT_FILE=/etc/ca".into(),
            format!(
                "NIX_SSL_CERT_FILE={}/etc/ssl/certs/ca-bundle.crt",
                ex.cacert
            ),
        ]
    );
    assert_eq!(args_of(&spec), [format!("{}/bin/app", ex.app)]);
}

#[test]
fn places_containerd_already_mounts_are_left_alone() {
    let ex = example();
    let mut base = containerd_spec(&[], &[], 0, true);
    let mut mounts = base.mounts().clone().unwrap();
    mounts.push(base_mount("/etc/passwd", "bind", "/var/lib/pod/passwd"));
    mounts.push(base_mount("/tmp/", "bind", "/var/lib/pod/tmp"));
    base.set_mounts(Some(mounts));
    let plan = plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    let added: Vec<_> = plan.mounts[4..]
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    assert_eq!(added, [PathBuf::from("/etc/group")]);
    assert_eq!(plan.files.len(), 1);
}

#[test]
fn base_mounts_inside_the_closure_conflict() {
    let ex = example();
    let mut base = containerd_spec(&[], &[], 0, false);
    let mut mounts = base.mounts().clone().unwrap();
    mounts.push(base_mount(&format!("{}/share", ex.app), "bind", "/x"));
    base.set_mounts(Some(mounts));
    let message = err(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    );
    assert_eq!(
        message,
        format!(
            "the base spec mounts \"{}/share\", inside closure member {}; the closure is mounted read-only and cannot share that place",
            ex.app, ex.app
        )
    );
}

#[test]
fn conflicts_are_found_however_the_destination_is_written() {
    let ex = example();
    let conflict = |destination: String| {
        let mut base = containerd_spec(&[], &[], 0, false);
        let mut mounts = base.mounts().clone().unwrap();
        mounts.push(base_mount(&destination, "bind", "/x"));
        base.set_mounts(Some(mounts));
        plan(
            &input(&ex.resolved, &base, None, ImageKind::Empty),
            &ex.store,
        )
        .err()
        .map(|err| err.to_string())
    };
    let app = ex.app.as_str();
    for inside in [
        app.to_owned(),
        format!("{app}/share/doc"),
        format!("{}//share/./doc/", app.trim_start_matches('/')),
    ] {
        let message = conflict(inside.clone()).unwrap_or_default();
        assert!(
            message.contains(&format!("inside closure member {app}")),
            "{inside}: {message}"
        );
    }
    // Outside every member: a longer name, another store path, the store itself.
    let other = store_path("not-in-closure");
    for outside in [
        format!("{app}x/share"),
        format!("{other}/share"),
        "/nix/store".into(),
    ] {
        assert_eq!(conflict(outside.clone()), None, "{outside}");
    }
    // The member's own bind, already in the base, is no conflict.
    let own = mounts::bind(
        ex.app.as_path(),
        ex.app.as_path(),
        &mounts::CLOSURE_BIND_OPTIONS,
    )
    .unwrap();
    let mut base = containerd_spec(&[], &[], 0, false);
    let mut base_mounts = base.mounts().clone().unwrap();
    base_mounts.push(own.clone());
    base.set_mounts(Some(base_mounts));
    let planned = plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    let spec = apply(&planned, base);
    let mounts = spec.mounts().clone().unwrap();
    assert_eq!(mounts.iter().filter(|m| **m == own).count(), 1);
}

#[test]
fn apply_appends_each_missing_mount_once_in_plan_order() {
    let a = base_mount("/a", "bind", "/src/a");
    let a_other = base_mount("/a", "bind", "/src/other");
    let b = base_mount("/b", "bind", "/src/b");
    let c = base_mount("/c", "tmpfs", "tmpfs");
    let mut base = containerd_spec(&[], &[], 0, false);
    base.set_mounts(Some(vec![a.clone(), b.clone()]));
    let spec_plan = SpecPlan {
        state_dir: STATE_DIR.into(),
        mounts: vec![b.clone(), a_other.clone(), c.clone(), c.clone(), a.clone()],
        args: vec!["/bin/app".into()],
        env: vec![],
        files: vec![],
        skipped: vec![],
        readonly_root: false,
    };
    let spec = apply(&spec_plan, base);
    assert_eq!(spec.mounts().clone().unwrap(), [a, b, a_other, c]);
    assert_eq!(apply(&spec_plan, spec.clone()), spec);
}

#[test]
fn symlink_members_are_bound_only_inside_the_closure() {
    let target = store_path("target");
    let inner = store_path("inner-link");
    let escape = store_path("escape-link");
    let dangling = store_path("dangling-link");
    let app = store_path("app");
    let closure = Closure::new(
        vec![app.clone()],
        [
            info(&app, &[&inner, &escape, &dangling]),
            info(&inner, &[&target]),
            info(&target, &[]),
            info(&escape, &[]),
            info(&dangling, &[]),
        ],
    )
    .unwrap();
    let store = MemoryStore::new()
        .file(format!("{app}/bin/app"), true)
        .dir(target.as_str())
        .symlink(inner.as_str(), target.as_str())
        .symlink(escape.as_str(), "/etc")
        .symlink(dangling.as_str(), format!("{target}/missing"));
    let resolved = Resolved {
        roots: vec![app.clone()],
        closure,
        main_program: Some("app".into()),
        package_name: None,
        package_version: None,
    };
    let base = containerd_spec(&[], &[], 0, false);
    let plan = plan(&input(&resolved, &base, None, ImageKind::Normal), &store).unwrap();
    let bound: Vec<_> = plan
        .mounts
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    let mut expected = vec![
        app.as_path().to_path_buf(),
        inner.as_path().into(),
        target.as_path().into(),
    ];
    expected.sort();
    assert_eq!(bound, expected);
    let mut skipped: Vec<_> = plan
        .skipped
        .iter()
        .map(|s| (s.path.clone(), s.reason.clone()))
        .collect();
    skipped.sort();
    let mut want = vec![
        (
            escape.clone(),
            "is a symlink leading to /etc, outside the closure".to_string(),
        ),
        (
            dangling.clone(),
            "is a symlink that leads nowhere".to_string(),
        ),
    ];
    want.sort();
    assert_eq!(skipped, want);

    let missing = MemoryStore::new().file(format!("{app}/bin/app"), true);
    let message = err(&input(&resolved, &base, None, ImageKind::Normal), &missing);
    assert!(
        message.contains("is missing from the local store"),
        "{message}"
    );
}

#[test]
fn plans_are_deterministic() {
    let ex = example();
    let base = containerd_spec(&["--x"], &["PATH=/bin"], 7, true);
    let one = plan(
        &input(&ex.resolved, &base, Some("/bin/app"), ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    let two = plan(
        &input(&ex.resolved, &base, Some("/bin/app"), ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    assert_eq!(one, two);
    let json = serde_json::to_string(&one).unwrap();
    assert_eq!(serde_json::from_str::<SpecPlan>(&json).unwrap(), one);
}

/// Member kinds the property test draws from.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Directory,
    File,
    LinkToRoot,
}

const BASE_DESTINATIONS: [&str; 8] = [
    "/etc/hosts",
    "/etc/resolv.conf",
    "/data",
    "/etc/passwd",
    "/tmp",
    "/nix",
    "relative/dest",
    "/data/../escape",
];

/// One drawn input of the property test.
#[derive(Debug, Clone)]
struct Case {
    members: Vec<(Kind, Vec<usize>)>,
    base_picks: Vec<usize>,
    readonly: bool,
    empty_image: bool,
    uid: u32,
    with_command: bool,
}

fn arb_case() -> impl Strategy<Value = Case> {
    let member = (
        prop_oneof![
            Just(Kind::Directory),
            Just(Kind::File),
            Just(Kind::LinkToRoot)
        ],
        proptest::collection::vec(0usize..40, 0..4),
    );
    (
        proptest::collection::vec(member, 0..40),
        proptest::collection::vec(0..BASE_DESTINATIONS.len(), 0..6),
        any::<bool>(),
        any::<bool>(),
        0u32..70000,
        any::<bool>(),
    )
        .prop_map(
            |(members, base_picks, readonly, empty_image, uid, with_command)| Case {
                members,
                base_picks,
                readonly,
                empty_image,
                uid,
                with_command,
            },
        )
}

proptest! {
    #[test]
    fn plans_mount_every_member_once_and_apply_idempotently(case in arb_case()) {
        let Case { members, base_picks, readonly, empty_image, uid, with_command } = case;
        let root = store_path("root");
        let paths: Vec<StorePath> =
            (0..members.len()).map(|i| store_path(&format!("m{i}"))).collect();
        let mut store = MemoryStore::new().file(format!("{root}/bin/root"), true);
        let mut infos = vec![info(&root, &paths.iter().collect::<Vec<_>>())];
        for (i, (kind, refs)) in members.iter().enumerate() {
            let refs: Vec<&StorePath> = refs.iter().filter_map(|r| paths.get(*r)).collect();
            infos.push(info(&paths[i], &refs));
            store = match kind {
                Kind::Directory => store.dir(paths[i].as_str()),
                Kind::File => store.file(paths[i].as_str(), i % 2 == 0),
                Kind::LinkToRoot => store.symlink(paths[i].as_str(), root.as_str()),
            };
        }
        let closure = Closure::new(vec![root.clone()], infos).unwrap();
        let resolved = Resolved {
            roots: vec![root.clone()],
            closure,
            main_program: Some("root".into()),
            package_name: None,
            package_version: None,
        };
        let args: &[&str] = if with_command { &["root", "--flag"] } else { &[] };
        let mut base = containerd_spec(args, &["PATH=/usr/bin"], uid, readonly);
        let mut mounts = base.mounts().clone().unwrap();
        for pick in &base_picks {
            mounts.push(base_mount(BASE_DESTINATIONS[*pick], "bind", "/var/lib/x"));
        }
        base.set_mounts(Some(mounts));
        let image = if empty_image { ImageKind::Empty } else { ImageKind::Normal };
        let plan = plan(&input(&resolved, &base, None, image), &store).unwrap();

        for member in resolved.closure.paths() {
            let count = plan
                .mounts
                .iter()
                .filter(|m| m.destination() == member.as_path())
                .count();
            prop_assert_eq!(count, 1, "{}", member);
        }
        for mount in &plan.mounts {
            let destination = mount.destination();
            let normal = validate::normalize_destination(destination).map(PathBuf::into_os_string);
            prop_assert_eq!(normal, Ok(destination.as_os_str().to_owned()));
        }
        let spec = apply(&plan, base.clone());
        let base_mounts = base.mounts().clone().unwrap();
        let mounts = spec.mounts().clone().unwrap();
        prop_assert_eq!(&mounts[..base_mounts.len()], &base_mounts[..]);
        prop_assert_eq!(apply(&plan, spec.clone()), spec.clone());
        prop_assert_eq!(&args_of(&spec)[0], &format!("{root}/bin/root"));
        assert_valid(&spec);
    }
}

#[test]
fn the_empty_image_placeholder_means_no_command_from_the_pod() {
    let ex = example();
    let main = format!("{}/bin/app", ex.app);
    // No command, no args: the main program alone.
    let base = containerd_spec(&[EMPTY_IMAGE_ENTRYPOINT], &[], 0, false);
    let plan = plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    assert_eq!(plan.args, [main.as_str()]);
    // Pod args without a command: the main program with those args.
    let base = containerd_spec(&[EMPTY_IMAGE_ENTRYPOINT, "--port", "80"], &[], 0, false);
    let plan = super::plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    assert_eq!(plan.args, [main.as_str(), "--port", "80"]);
    // An entrypoint annotation replaces the placeholder too.
    let plan = super::plan(
        &input(&ex.resolved, &base, Some("/bin/helper"), ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    assert_eq!(
        plan.args,
        [format!("{}/bin/helper", ex.app).as_str(), "--port", "80"]
    );
}

#[test]
fn the_empty_image_gets_a_read_only_root_and_a_tmpfs_tmp() {
    let ex = example();
    let base = containerd_spec(&["app"], &[], 0, false);
    let empty = plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    assert!(empty.readonly_root);
    assert!(
        empty
            .mounts
            .iter()
            .any(|m| m.destination() == Path::new("/tmp"))
    );
    let spec = apply(&empty, base.clone());
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));

    let normal = plan(
        &input(&ex.resolved, &base, None, ImageKind::Normal),
        &ex.store,
    )
    .unwrap();
    assert!(
        !normal.readonly_root,
        "a normal image keeps its writable root"
    );
    let spec = apply(&normal, base);
    assert_ne!(spec.root().as_ref().unwrap().readonly(), Some(true));
}

#[test]
fn planned_mounts_stay_in_bounds() {
    use super::mounts::{CLOSURE_BIND_OPTIONS, bind};
    use super::validate::check_mounts;
    let ex = example();
    let state = Path::new("/run/containix/c1");
    let good = [
        bind(ex.app.as_path(), ex.app.as_path(), &CLOSURE_BIND_OPTIONS).unwrap(),
        bind(&state.join("passwd"), Path::new("/etc/passwd"), &[]).unwrap(),
    ];
    check_mounts(&good, &ex.resolved.closure, state, None).unwrap();
    let outside = format!("{}/bin", ex.app);
    let cases = [
        (
            base_mount("/etc/x", "bind", "/etc/shadow"),
            "outside the closure",
        ),
        (
            base_mount("/etc/x", "bind", &outside),
            "outside the closure",
        ),
        (
            base_mount("/etc/x", "bind", "/run/containix/c1/../../x"),
            "outside the closure",
        ),
        (
            base_mount("/etc/../x", "bind", "/run/containix/c1/a"),
            "'..'",
        ),
        (base_mount("/etc//x", "tmpfs", "tmpfs"), "not normalised"),
    ];
    for (mount, reason) in cases {
        let err = check_mounts(
            std::slice::from_ref(&mount),
            &ex.resolved.closure,
            state,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(reason), "{mount:?}: {err}");
    }
    let twice = [good[0].clone(), good[0].clone()];
    let err = check_mounts(&twice, &ex.resolved.closure, state, None).unwrap_err();
    assert!(err.to_string().contains("planned twice"), "{err}");
}

#[test]
fn a_store_view_is_one_mount_and_the_root_follows_the_spec() {
    let ex = example();
    let view = Path::new("/var/lib/containix/views/0123/root/nix/store");
    for readonly in [false, true] {
        let base = containerd_spec(&[], &["HOME=/"], 1000, readonly);
        let plan = plan(
            &PlanInput {
                store_view: Some(view),
                ..input(&ex.resolved, &base, None, ImageKind::Empty)
            },
            &ex.store,
        )
        .unwrap();
        let store_mounts: Vec<&Mount> = plan
            .mounts
            .iter()
            .filter(|m| m.destination().starts_with(STORE_DIR))
            .collect();
        assert_eq!(store_mounts.len(), 1, "{:?}", plan.mounts);
        assert_eq!(store_mounts[0].destination(), Path::new(STORE_DIR));
        assert_eq!(store_mounts[0].source().as_deref(), Some(view));
        let options = store_mounts[0].options().clone().unwrap();
        assert!(options.contains(&"ro".to_owned()), "{options:?}");
        assert!(options.contains(&"rbind".to_owned()), "{options:?}");
        assert_eq!(plan.readonly_root, readonly);
        assert!(plan.skipped.is_empty());
        let has_tmp = plan
            .mounts
            .iter()
            .any(|m| m.destination() == Path::new("/tmp"));
        assert_eq!(has_tmp, readonly, "a tmpfs /tmp only for a read-only root");
    }
}

#[test]
fn a_base_mount_inside_the_store_conflicts_with_the_view() {
    let ex = example();
    let view = Path::new("/var/lib/containix/views/0123/root/nix/store");
    let mut base = containerd_spec(&[], &[], 0, false);
    let mut mounts = base.mounts().clone().unwrap_or_default();
    mounts.push(base_mount(&format!("{}/etc", ex.app), "bind", "/srv/x"));
    base.set_mounts(Some(mounts));
    let input = PlanInput {
        store_view: Some(view),
        ..input(&ex.resolved, &base, None, ImageKind::Empty)
    };
    let message = err(&input, &ex.store);
    assert!(message.contains("inside /nix/store"), "{message}");
}

#[test]
fn only_the_view_may_be_bound_at_the_store() {
    let ex = example();
    let view = Path::new("/var/lib/containix/views/0123/root/nix/store");
    let mount = mounts::bind(view, Path::new(STORE_DIR), &mounts::VIEW_BIND_OPTIONS).unwrap();
    let state = Path::new(STATE_DIR);
    validate::check_mounts(
        std::slice::from_ref(&mount),
        &ex.resolved.closure,
        state,
        Some(view),
    )
    .unwrap();
    let err = validate::check_mounts(
        std::slice::from_ref(&mount),
        &ex.resolved.closure,
        state,
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("store view"), "{err}");
    let elsewhere = mounts::bind(view, Path::new("/opt"), &mounts::VIEW_BIND_OPTIONS).unwrap();
    assert!(
        validate::check_mounts(&[elsewhere], &ex.resolved.closure, state, Some(view)).is_err(),
        "the view goes at /nix/store only"
    );
}

/// Where a drawn member keeps a CA bundle, if anywhere.
#[derive(Debug, Clone, Copy)]
enum Bundle {
    None,
    /// A regular file at one of the two locations (0 or 1), or at both (2).
    File(usize),
    /// A directory where the bundle would be: not a bundle.
    Directory,
    /// A link to another member's first location (in the closure when that member is).
    LinkTo(usize),
    /// A link to a host file outside the closure.
    LinkOutside,
}

fn arb_bundles() -> impl Strategy<Value = (Vec<Bundle>, Vec<usize>)> {
    let bundle = prop_oneof![
        3 => Just(Bundle::None),
        2 => (0usize..3).prop_map(Bundle::File),
        1 => Just(Bundle::Directory),
        1 => (0usize..12).prop_map(Bundle::LinkTo),
        1 => Just(Bundle::LinkOutside),
    ];
    (
        proptest::collection::vec(bundle, 1..12),
        proptest::collection::vec(0usize..12, 1..4),
    )
}

proptest! {
    /// Choosing from the bundles found once per closure (what a store view records) gives the
    /// bundle a search through the store finds, whatever the roots and their order.
    #[test]
    fn a_recorded_bundle_list_chooses_what_the_search_finds((bundles, root_picks) in arb_bundles()) {
        let paths: Vec<StorePath> =
            (0..bundles.len()).map(|i| store_path(&format!("c{i}"))).collect();
        let mut store = MemoryStore::new();
        let mut infos = Vec::new();
        for (i, bundle) in bundles.iter().enumerate() {
            infos.push(info(&paths[i], &[]));
            store = store.dir(paths[i].as_str());
            let at = |location: usize| format!("{}/{}", paths[i], env::CA_BUNDLE_LOCATIONS[location]);
            store = match *bundle {
                Bundle::None => store,
                Bundle::File(2) => store.file(at(0), false).file(at(1), false),
                Bundle::File(location) => store.file(at(location), false),
                Bundle::Directory => store.dir(at(0)),
                Bundle::LinkTo(other) => match paths.get(other) {
                    Some(other) => store.symlink(
                        at(1),
                        format!("{other}/{}", env::CA_BUNDLE_LOCATIONS[0]),
                    ),
                    None => store,
                },
                Bundle::LinkOutside => store.symlink(at(0), "/etc/ssl/certs/ca-bundle.crt"),
            };
        }
        let mut roots: Vec<StorePath> =
            root_picks.iter().filter_map(|pick| paths.get(*pick).cloned()).collect();
        if roots.is_empty() {
            roots.push(paths[0].clone());
        }
        let closure = Closure::new(roots.clone(), infos).unwrap();
        let found = env::find_ca_bundle(&store, &closure, &roots).unwrap();
        let recorded = env::ca_bundles(&store, &closure).unwrap();
        prop_assert_eq!(env::choose_ca_bundle(&recorded, &roots), found);
    }
}

#[test]
fn a_plan_with_recorded_bundles_looks_for_none() {
    let ex = example();
    let base = containerd_spec(&[], &[], 0, false);
    let searched = plan(
        &input(&ex.resolved, &base, None, ImageKind::Empty),
        &ex.store,
    )
    .unwrap();
    let recorded = env::ca_bundles(&ex.store, &ex.resolved.closure).unwrap();
    assert_eq!(
        recorded,
        [PathBuf::from(format!(
            "{}/etc/ssl/certs/ca-bundle.crt",
            ex.cacert
        ))]
    );
    // An empty store: a plan that searched would find no bundle (nor the program), so the
    // bundle in the plan comes from the record alone.
    let with_record = PlanInput {
        ca_bundles: Some(&recorded),
        ..input(&ex.resolved, &base, None, ImageKind::Empty)
    };
    assert_eq!(plan(&with_record, &ex.store).unwrap(), searched);
    let empty = MemoryStore::new();
    let entrypoint = format!("{}/bin/app", ex.app);
    let base = containerd_spec(&[entrypoint.as_str()], &[], 0, false);
    let searched = plan(
        &PlanInput {
            store_view: Some(Path::new("/v")),
            ..input(&ex.resolved, &base, None, ImageKind::Normal)
        },
        &empty,
    )
    .unwrap();
    let recorded_plan = plan(
        &PlanInput {
            store_view: Some(Path::new("/v")),
            ca_bundles: Some(&recorded),
            ..input(&ex.resolved, &base, None, ImageKind::Normal)
        },
        &empty,
    )
    .unwrap();
    let bundle_vars = |plan: &SpecPlan| {
        plan.env
            .iter()
            .filter(|edit| matches!(edit, EnvEdit::SetDefault { .. }))
            .count()
    };
    assert_eq!(bundle_vars(&searched), 0);
    assert_eq!(bundle_vars(&recorded_plan), 2);
}
