//! The node policy: the file format, the allow-list as Nix would fetch, namespaces, and where
//! the policy comes from. Local paths are real temporary directories.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use crate::request::flake_ref::FlakeRef;

use super::host_paths::{HostPaths, lexically_normal};
use super::node_policy::{NodePolicy, Realise, host_system};
use super::policy_file::{DOCUMENTED_DEFAULTS, PolicyError};
use super::policy_location::{FileOrigin, PolicyLocation, PolicyPaths, locate_policy};
use super::policy_report::ValueOrigin;
use super::policy_scope::RefNotAllowed;
use super::rule_match::Verdict;

const POLICY: &str = "/etc/containix/policy.toml";

fn parse(text: &str) -> Result<NodePolicy, PolicyError> {
    NodePolicy::from_toml(text, Path::new(POLICY))
}

fn flake(text: &str) -> FlakeRef {
    FlakeRef::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The policy's verdict on `text` for the node-wide settings.
fn check(policy: &NodePolicy, text: &str) -> Result<String, RefNotAllowed> {
    policy
        .check_flake_ref(&flake(text))
        .map(|allowed| allowed.evaluated.to_string())
}

fn refusal(policy: &NodePolicy, text: &str) -> String {
    match check(policy, text) {
        Ok(evaluated) => panic!("{text} was allowed (evaluated as {evaluated})"),
        Err(err) => err.to_string(),
    }
}

/// A scratch node: `<root>/srv/flakes/app` (a flake folder), `<root>/srv/other` and
/// `<root>/srv/flakesX` beside it.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for folder in ["srv/flakes/app", "srv/other", "srv/flakesX"] {
            std::fs::create_dir_all(root.join(folder)).unwrap();
            std::fs::write(root.join(folder).join("flake.nix"), "{ outputs = _: {}; }").unwrap();
        }
        Node { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn at(&self, relative: &str) -> String {
        format!("{}/{relative}", self.root().display())
    }

    /// The issue's policy, with `/srv/flakes` inside this node.
    fn policy(&self) -> NodePolicy {
        parse(&format!(
            "allowed-flake-prefixes = [\"github:myorg/\", \"path:{}\"]",
            self.at("srv/flakes")
        ))
        .unwrap()
    }
}

#[test]
fn defaults_allow_remote_sources_at_their_usual_hosts_only() {
    let policy = parse("").unwrap();
    assert_eq!(policy.realise, Realise::Substitute);
    for allowed in [
        "github:org/app",
        "gitlab:group%2Fsub/app",
        "sourcehut:~user/app",
        "git+https://example.com/app",
        "https://example.com/app.tar.gz",
        "tarball+https://example.com/app",
        "github:org/app?host=GitHub.com",
    ] {
        assert!(check(&policy, allowed).is_ok(), "{allowed}");
    }
    for refused in [
        "github:org/app?host=evil.example",
        "gitlab:org/app?host=gitlab.evil.example",
        "path:/etc",
        "git+file:///root/app",
        "file:///etc/shadow",
        "git+ssh://git@github.com/org/app",
        "git+http://example.com/app",
        "http://example.com/app.tar.gz",
        "file+https://example.com/flake.nix",
        "flake:nixpkgs",
        "nixpkgs",
    ] {
        let err = refusal(&policy, refused);
        assert!(err.contains("not allowed on this node"), "{err}");
        assert!(err.contains("github:, gitlab:"), "{err}");
        assert!(
            err.ends_with("add a rule to `allowed-flake-prefixes` in /etc/containix/policy.toml"),
            "{err}"
        );
    }
    assert_eq!(policy.effective_timeout(None), Duration::from_secs(120));
    assert_eq!(
        policy.effective_timeout(Some(Duration::from_secs(3600))),
        Duration::from_secs(600)
    );
    assert_eq!(policy.system, host_system());
    assert_eq!(NodePolicy::workstation().realise, Realise::Build);
}

#[test]
fn the_three_reported_bypasses_are_refused_naming_the_rule() {
    let node = Node::new();
    let policy = node.policy();
    let rule = format!("path:{}", node.at("srv/flakes"));

    let err = refusal(&policy, "github:myorg/repo?host=evil.example");
    assert!(
        err.contains("rule `github:myorg/` allows host github.com, not evil.example"),
        "{err}"
    );
    let err = refusal(&policy, &format!("path:{}", node.at("srv/flakes/../other")));
    assert!(
        err.contains(&format!("rule `{rule}` resolves outside")),
        "{err}"
    );
    let err = refusal(&policy, &format!("path:{}", node.at("srv/flakesX")));
    assert!(
        err.contains(&format!("rule `{rule}` resolves outside")),
        "{err}"
    );

    // What the rules do allow, and what Nix is then given.
    assert_eq!(
        check(&policy, "github:myorg/repo").unwrap(),
        "github:myorg/repo"
    );
    let app = node.at("srv/flakes/app");
    assert_eq!(
        check(&policy, &format!("path:{app}")).unwrap(),
        format!("path:{app}")
    );
    assert_eq!(
        check(
            &policy,
            &format!("path:{}/../flakes/app", node.at("srv/other"))
        )
        .unwrap(),
        format!("path:{app}"),
        "a `..` that stays inside is evaluated as the folder it names"
    );
    assert_eq!(
        check(&policy, &app).unwrap(),
        format!("path:{app}"),
        "a bare path outside any Git work tree is evaluated as an explicit path:"
    );
}

#[test]
fn symlinks_are_resolved_before_the_folder_is_compared() {
    let node = Node::new();
    let policy = node.policy();
    let root = node.root();
    std::os::unix::fs::symlink(root.join("srv/other"), root.join("srv/flakes/escape")).unwrap();
    std::os::unix::fs::symlink(root.join("srv/flakes/app"), root.join("srv/flakes/alias")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("srv/flakes/app/etc")).unwrap();

    let err = refusal(&policy, &format!("path:{}", node.at("srv/flakes/escape")));
    assert!(err.contains("resolves outside"), "{err}");
    assert!(
        !err.contains(&node.at("srv/other")),
        "the target of a refused link is not disclosed: {err}"
    );
    assert_eq!(
        check(&policy, &format!("path:{}", node.at("srv/flakes/alias"))).unwrap(),
        format!("path:{}", node.at("srv/flakes/app"))
    );
    // `dir` is read inside the folder's copy; a link out of it is refused.
    let err = refusal(
        &policy,
        &format!("path:{}?dir=etc", node.at("srv/flakes/app")),
    );
    assert!(
        err.contains("`dir=etc` leads out of the flake's folder"),
        "{err}"
    );

    // A link to a folder a flake ref cannot name (whitespace) is refused, not mangled.
    std::fs::create_dir(root.join("srv/flakes/with space")).unwrap();
    std::os::unix::fs::symlink(
        root.join("srv/flakes/with space"),
        root.join("srv/flakes/spaced"),
    )
    .unwrap();
    let err = refusal(&policy, &format!("path:{}", node.at("srv/flakes/spaced")));
    assert!(err.contains("cannot be named by a flake ref"), "{err}");

    // A rule whose folder is itself a link compares against the folder it points to.
    std::os::unix::fs::symlink(root.join("srv/flakes"), root.join("flakes-link")).unwrap();
    let linked = parse(&format!(
        "allowed-flake-prefixes = [\"path:{}\"]",
        node.at("flakes-link")
    ))
    .unwrap();
    assert!(check(&linked, &format!("path:{}", node.at("srv/flakes/app"))).is_ok());
    assert!(check(&linked, &format!("path:{}", node.at("srv/other"))).is_err());
}

#[test]
fn a_bare_path_is_checked_as_the_git_work_tree_nix_would_read() {
    let node = Node::new();
    let policy = node.policy();
    let root = node.root();
    // A work tree inside the allowed folder: fetched as Git, still inside.
    std::fs::create_dir_all(root.join("srv/flakes/repo/.git")).unwrap();
    std::fs::create_dir_all(root.join("srv/flakes/repo/sub")).unwrap();
    let repo = node.at("srv/flakes/repo");
    assert_eq!(
        check(&policy, &format!("{repo}/sub")).unwrap(),
        format!("git+file://{repo}?dir=sub")
    );
    let err = refusal(&policy, &format!("{repo}/sub?dir=x"));
    assert!(err.contains("has a `dir` of its own"), "{err}");
    // A work tree around the allowed folder: Nix would copy the whole tree, so it is refused.
    std::fs::create_dir(root.join(".git")).unwrap();
    let err = refusal(&policy, &node.at("srv/flakes/app"));
    assert!(err.contains("resolves outside"), "{err}");
    // An explicit path: ref is never read as Git.
    assert!(check(&policy, &format!("path:{}", node.at("srv/flakes/app"))).is_ok());
}

#[test]
fn local_paths_that_do_not_resolve_tell_nothing_outside_allowed_folders() {
    let node = Node::new();
    let policy = node.policy();
    let inside = refusal(&policy, &format!("path:{}", node.at("srv/flakes/missing")));
    assert!(inside.contains("cannot be resolved: "), "{inside}");
    // Outside every allowed folder, a missing path reads exactly like an existing one.
    let missing = refusal(&policy, "path:/nonexistent/secret");
    let existing = refusal(&policy, "path:/usr");
    assert_eq!(
        missing.replace("/nonexistent/secret", "X"),
        existing.replace("/usr", "X")
    );
    let err = refusal(&policy, "path:./app");
    assert!(err.contains("relative path"), "{err}");
    // Without a local rule, nothing on the node is looked at.
    let remote_only = parse("allowed-flake-prefixes = [\"github:\"]").unwrap();
    let err = refusal(&remote_only, &format!("path:{}", node.at("srv/flakes/app")));
    assert!(err.contains("no rule allows `path:` refs"), "{err}");
}

#[test]
fn forge_and_url_rules_compare_whole_segments_hosts_and_ports() {
    let policy = parse(
        r#"allowed-flake-prefixes = [
            "github:myorg/",
            "github:other/app",
            "gitlab:group/sub/?host=gitlab.example.org",
            "git+https://git.example.com/team/",
            "git+ssh://git@ssh.example.com/team/",
            "https://dl.example.com/releases/",
            "flake:nixpkgs",
        ]"#,
    )
    .unwrap();
    for allowed in [
        "github:myorg/app",
        "github:myorg/app/main?dir=sub",
        "github:other/app",
        "github:myorg/app?host=GitHub.COM",
        "gitlab:group%2Fsub/app?host=gitlab.example.org",
        "gitlab:group%2Fsub%2Fdeeper/app?host=GITLAB.example.org",
        "git+https://git.example.com/team/app",
        "git+https://GIT.example.com:443/team/app?ref=main",
        "git+ssh://git@ssh.example.com/team/app",
        "https://dl.example.com/releases/app.tar.gz",
        "tarball+https://dl.example.com/releases/latest",
        "flake:nixpkgs",
        "nixpkgs/nixos-24.05",
    ] {
        assert!(
            check(&policy, allowed).is_ok(),
            "{allowed}: {:?}",
            check(&policy, allowed)
        );
    }
    for (refused, why) in [
        (
            "github:myorg-evil/app",
            "allows myorg/…, not myorg-evil/app",
        ),
        ("github:MyOrg/app", "allows myorg/…, not MyOrg/app"),
        ("github:other/app2", "allows other/app/…, not other/app2"),
        (
            "github:myorg/app?host=evil.example",
            "allows host github.com, not evil.example",
        ),
        (
            "github:myorg/app?host=github.com:8443",
            "not github.com:8443",
        ),
        (
            "gitlab:group/app?host=gitlab.example.org",
            "allows group/sub/…, not group/app",
        ),
        (
            "gitlab:group%2Fsub/app",
            "allows host gitlab.example.org, not gitlab.com",
        ),
        (
            "git+https://git.example.com/teamX/app",
            "allows paths under /team/",
        ),
        (
            "git+https://git.example.com:8443/team/app",
            "allows git.example.com, not git.example.com:8443",
        ),
        ("git+https://evil.example/team/app", "not evil.example"),
        (
            "git+ssh://root@ssh.example.com/team/app",
            "allows git@ssh.example.com, not root@ssh.example.com",
        ),
        (
            "git+https://git.example.com/team/app?submodules=1",
            "does not allow `submodules=1`",
        ),
        (
            "https://dl.example.com/other/app.tar.gz",
            "allows paths under /releases/",
        ),
        (
            "flake:nixos-hardware",
            "allows registry id nixpkgs, not nixos-hardware",
        ),
        (
            "git+http://git.example.com/team/app",
            "no rule allows `git+http:` refs",
        ),
        (
            "file+https://dl.example.com/releases/flake.nix",
            "no rule allows `file+https:` refs",
        ),
    ] {
        let err = refusal(&policy, refused);
        assert!(err.contains(why), "{refused}: {err}");
    }
    // URL paths a server would read as other paths are refused before any rule.
    for (refused, why) in [
        (
            "git+https://git.example.com/team/../other/app",
            "`..` segment",
        ),
        (
            "git+https://git.example.com/team/%2e%2E/other/app",
            "`..` segment",
        ),
        ("git+https://git.example.com/team/./app", "`.` segment"),
        (
            "git+https://git.example.com/team%2F..%2Fother/app",
            "decodes to a `/`",
        ),
        (
            "git+https://git.example.com/team%5Capp",
            "decodes to a `/` or `\\`",
        ),
        ("git+https://git.example.com/team//app", "empty segment"),
    ] {
        let err = refusal(&policy, refused);
        assert!(err.contains(why), "{refused}: {err}");
    }
    let submodules =
        parse("allowed-flake-prefixes = [\"git+https://git.example.com/team/?submodules=1\"]")
            .unwrap();
    assert!(
        check(
            &submodules,
            "git+https://git.example.com/team/app?submodules=1"
        )
        .is_ok()
    );
}

#[test]
fn every_rule_reports_its_verdict() {
    let node = Node::new();
    let policy = node.policy();
    let scope = policy.scope(None);
    let matched = scope.explain_with(
        &flake("github:myorg/repo?host=evil.example"),
        &super::host_paths::HostFilesystem,
    );
    let verdicts: Vec<Verdict> = matched.rules.iter().map(|r| r.verdict).collect();
    assert_eq!(verdicts, [Verdict::Refuses, Verdict::DoesNotApply]);
    assert_eq!(
        matched.origin.unwrap().to_string(),
        "github repository myorg/repo on evil.example"
    );
    let matched = scope.explain_with(
        &flake(&format!("path:{}", node.at("srv/flakes/app"))),
        &super::host_paths::HostFilesystem,
    );
    assert_eq!(
        matched.allowed_by().unwrap().rule,
        format!("path:{}", node.at("srv/flakes"))
    );
}

#[test]
fn namespaces_scope_prefixes_builds_and_deadlines() {
    let policy = parse(
        r#"
        allowed-flake-prefixes = ["github:shared/"]
        default-timeout = "1m"

        [namespaces.team-a]
        allowed-flake-prefixes = ["github:team-a/"]
        realise = "build"
        max-timeout = "30m"
        default-timeout = "5m"

        [namespaces.locked-down]
        allowed-flake-prefixes = []
        "#,
    )
    .unwrap();
    let team = policy.scope(Some("team-a"));
    assert_eq!(team.namespace(), Some("team-a"));
    assert_eq!(team.realise(), Realise::Build);
    assert_eq!(team.effective_timeout(None), Duration::from_secs(300));
    assert_eq!(
        team.effective_timeout(Some(Duration::from_secs(3600))),
        Duration::from_secs(1800)
    );
    assert!(team.check_flake_ref(&flake("github:team-a/app")).is_ok());
    let err = team
        .check_flake_ref(&flake("github:shared/app"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("for namespace `team-a`"), "{err}");
    assert!(err.contains("allowed prefixes: github:team-a/"), "{err}");

    for other in [None, Some("team-b")] {
        let scope = policy.scope(other);
        assert_eq!(scope.namespace(), None);
        assert_eq!(scope.realise(), Realise::Substitute);
        assert_eq!(scope.effective_timeout(None), Duration::from_secs(60));
        assert!(scope.check_flake_ref(&flake("github:shared/app")).is_ok());
        let err = scope
            .check_flake_ref(&flake("github:team-a/app"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("namespace"), "{err}");
    }
    let err = policy
        .scope(Some("locked-down"))
        .check_flake_ref(&flake("github:shared/app"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("allowed prefixes: none"), "{err}");
}

#[test]
fn reads_every_key() {
    let policy = parse(
        r#"
        allowed-flake-prefixes = ["github:my-org/", "path:/srv/flakes/"]
        realise = "build"
        default-timeout = "30s"
        max-timeout = "5m"
        system = "aarch64-linux"
        daemon-socket = "/run/nix/socket"
        state-dir = "/srv/containix"
        nix-command = "/run/current-system/sw/bin/nix"
        package-set = "github:NixOS/nixpkgs/nixos-24.05"
        "#,
    )
    .unwrap();
    assert_eq!(policy.realise, Realise::Build);
    assert_eq!(
        policy.allowed_prefix_texts(),
        ["github:my-org/", "path:/srv/flakes/"]
    );
    assert!(check(&policy, "github:my-org/app").is_ok());
    assert!(check(&policy, "github:other/app").is_err());
    assert_eq!(policy.default_timeout, Duration::from_secs(30));
    assert_eq!(policy.max_timeout, Duration::from_secs(300));
    assert_eq!(policy.system, "aarch64-linux");
    assert_eq!(policy.daemon_socket, Path::new("/run/nix/socket"));
    assert_eq!(policy.state_dir, Path::new("/srv/containix"));
    assert_eq!(
        policy.package_set.as_deref(),
        Some("github:NixOS/nixpkgs/nixos-24.05")
    );
}

/// The policy file surface: hostile and malformed values, each refused naming the key.
#[test]
fn hostile_policy_files_are_refused_naming_the_key() {
    let huge = format!(
        "allowed-flake-prefixes = [\"github:{}/\"]",
        "a".repeat(1 << 20)
    );
    let cases: Vec<(String, &str, &str)> = [
        ("realize = \"build\"", "", "unknown field `realize`"),
        ("realise = \"compile\"", "", "unknown variant `compile`"),
        ("default-timeout = \"soon\"", "`default-timeout`", "duration \"soon\""),
        ("max-timeout = 30", "", "invalid type"),
        ("default-timeout = \"10m\"\nmax-timeout = \"1m\"", "`default-timeout`", "10m exceeds max-timeout 1m"),
        ("allowed-flake-prefixes = [\"--impure\"]", "`allowed-flake-prefixes`", "\"--impure\" is not a flake ref prefix: starts with `-`"),
        ("allowed-flake-prefixes = [\"--option\"]", "`allowed-flake-prefixes`", "starts with `-`"),
        ("allowed-flake-prefixes = [\"-github:\"]", "`allowed-flake-prefixes`", "starts with `-`"),
        ("allowed-flake-prefixes = [\"\"]", "`allowed-flake-prefixes`", "empty"),
        ("allowed-flake-prefixes = [\" github:myorg/\"]", "`allowed-flake-prefixes`", "whitespace"),
        ("allowed-flake-prefixes = [\"github:myorg/ \"]", "`allowed-flake-prefixes`", "whitespace"),
        ("allowed-flake-prefixes = [\"github:my\\u0000org/\"]", "`allowed-flake-prefixes`", "control"),
        ("allowed-flake-prefixes = [\"github:myorg/\\n\"]", "`allowed-flake-prefixes`", "\"github:myorg/\\n\""),
        ("allowed-flake-prefixes = [\"github:myorg/\\u001b[2J\"]", "`allowed-flake-prefixes`", "control"),
        ("allowed-flake-prefixes = [\"GitHub:myorg/\"]", "`allowed-flake-prefixes`", "unknown scheme `GitHub:`"),
        ("allowed-flake-prefixes = [\"GITHUB:\"]", "`allowed-flake-prefixes`", "schemes are lower case"),
        ("allowed-flake-prefixes = [\"Path:/srv/flakes\"]", "`allowed-flake-prefixes`", "unknown scheme `Path:`"),
        ("allowed-flake-prefixes = [\"/srv/flakes\"]", "`allowed-flake-prefixes`", "no scheme"),
        ("allowed-flake-prefixes = [\"path:/srv/flakes/../etc\"]", "`allowed-flake-prefixes`", "without `.`, `..`"),
        ("allowed-flake-prefixes = [\"path:srv\"]", "`allowed-flake-prefixes`", "not an absolute folder"),
        ("allowed-flake-prefixes = [\"github:../x\"]", "`allowed-flake-prefixes`", "`..` segment"),
        ("allowed-flake-prefixes = [\"github:org?dir=../..\"]", "`allowed-flake-prefixes`", "query parameter `dir=../..`"),
        ("allowed-flake-prefixes = [\"github:org/#x\"]", "`allowed-flake-prefixes`", "`#`"),
        ("allowed-flake-prefixes = \"github:\"", "", "invalid type"),
        (&huge, "`allowed-flake-prefixes`", "longer than 4096 bytes"),
        ("system = \"linux\"", "`system`", "\"linux\" is not a Nix system"),
        ("system = \"x86_64-linux --option\"", "`system`", "is not a Nix system"),
        ("state-dir = \"var/lib\"", "`state-dir`", "var/lib is not an absolute path"),
        ("daemon-socket = \"sock\"", "`daemon-socket`", "not an absolute path"),
        ("realise = ", "", "node policy /etc/containix/policy.toml"),
        ("[namespaces.Team-A]\nrealise = \"build\"", "`namespaces`", "\"Team-A\" is not a Kubernetes namespace name"),
        ("[namespaces.\"-x\"]", "`namespaces`", "not a Kubernetes namespace name"),
        ("[namespaces.a]\nsystem = \"x\"", "", "unknown field `system`"),
        ("[namespaces.a]\nallowed-flake-prefixes = [\"--impure\"]", "`namespaces.a.allowed-flake-prefixes`", "starts with `-`"),
        ("[namespaces.a]\ndefault-timeout = \"x\"", "`namespaces.a.default-timeout`", "duration"),
        ("max-timeout = \"1m\"\ndefault-timeout = \"30s\"\n[namespaces.a]\ndefault-timeout = \"5m\"", "`namespaces.a.default-timeout`", "5m exceeds max-timeout 1m"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b, c))
    .collect();
    for (text, key, expected) in &cases {
        let err = parse(text).unwrap_err().to_string();
        let shown: String = text.chars().take(60).collect();
        assert!(
            err.len() < 1000,
            "{shown:?}: the error is {} bytes long",
            err.len()
        );
        assert!(
            err.starts_with("node policy /etc/containix/policy.toml"),
            "{shown:?}: {err}"
        );
        assert!(err.contains(key), "{shown:?}: {err}");
        assert!(err.contains(expected), "{shown:?}: {err}");
    }
}

#[test]
fn the_documented_defaults_parse_to_the_built_in_policy() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/node/policy.toml"
    ));
    let mut policy = NodePolicy::from_file(path).unwrap();
    policy.source = None;
    assert_eq!(policy, NodePolicy::default());
    assert_eq!(std::fs::read_to_string(path).unwrap(), DOCUMENTED_DEFAULTS);
}

#[test]
fn a_named_file_must_exist() {
    let err = NodePolicy::from_file(Path::new("/nonexistent/containix.toml")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/containix.toml"),
        "{err}"
    );
}

#[test]
fn the_policy_file_is_chosen_by_flag_then_environment_then_default_then_old_location() {
    let paths = PolicyPaths {
        default: "/etc/containix/policy.toml".into(),
        legacy: "/etc/containix/config.toml".into(),
    };
    let files = |existing: &'static [&'static str]| {
        move |path: &Path| existing.iter().any(|e| Path::new(e) == path)
    };
    let both = files(&["/etc/containix/policy.toml", "/etc/containix/config.toml"]);
    let located = |flag: Option<&str>, env: Option<&str>, exists: &dyn Fn(&Path) -> bool| {
        locate_policy(flag.map(Path::new), env.map(Into::into), &paths, exists)
    };
    let flag = located(Some("/tmp/p.toml"), Some("/env.toml"), &both);
    assert_eq!(flag.file, Some(("/tmp/p.toml".into(), FileOrigin::Flag)));
    assert!(flag.warnings.is_empty());
    let env = located(None, Some("/env.toml"), &both);
    assert_eq!(
        env.file,
        Some(("/env.toml".into(), FileOrigin::Environment))
    );
    let empty_env = located(None, Some(""), &files(&["/etc/containix/policy.toml"]));
    assert_eq!(
        empty_env,
        PolicyLocation {
            file: Some((paths.default.clone(), FileOrigin::DefaultPath)),
            warnings: vec![],
        }
    );
    let shadowed = located(None, None, &both);
    assert_eq!(
        shadowed.file,
        Some((paths.default.clone(), FileOrigin::DefaultPath))
    );
    assert!(shadowed.warnings[0].contains("/etc/containix/config.toml is ignored"));
    let legacy = located(None, None, &files(&["/etc/containix/config.toml"]));
    assert_eq!(
        legacy.file,
        Some((paths.legacy.clone(), FileOrigin::LegacyPath))
    );
    assert!(legacy.warnings[0].contains("move it to /etc/containix/policy.toml"));
    let none = located(None, None, &files(&[]));
    assert_eq!(none.file, None);
}

#[test]
fn loading_reports_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(
        &file,
        "default-timeout = \"1m\"\n[namespaces.team-a]\nrealise = \"build\"\n",
    )
    .unwrap();
    let location = PolicyLocation {
        file: Some((file.clone(), FileOrigin::Environment)),
        warnings: vec![],
    };
    let loaded = NodePolicy::load_from(
        location,
        &NodePolicy::workstation(),
        Some("/run/sock".into()),
    )
    .unwrap();
    assert_eq!(loaded.policy.daemon_socket, Path::new("/run/sock"));
    assert_eq!(
        loaded.policy.realise,
        Realise::Build,
        "absent keys take the built-in value"
    );
    let report = loaded.report(Some("team-a"));
    let origin_of = |key: &str| {
        report
            .values
            .iter()
            .find(|v| v.key == key)
            .unwrap()
            .origin
            .clone()
    };
    assert!(report.namespace_listed);
    assert_eq!(
        origin_of("default-timeout"),
        ValueOrigin::File { path: file.clone() }
    );
    assert_eq!(
        origin_of("realise"),
        ValueOrigin::Namespace {
            namespace: "team-a".into(),
            path: file.clone()
        }
    );
    assert_eq!(origin_of("max-timeout"), ValueOrigin::BuiltIn);
    assert_eq!(
        origin_of("daemon-socket"),
        ValueOrigin::Environment {
            variable: "NIX_DAEMON_SOCKET_PATH".into()
        }
    );
    let elsewhere = loaded.report(Some("team-b"));
    assert!(!elsewhere.namespace_listed);
    assert_eq!(
        elsewhere
            .values
            .iter()
            .find(|v| v.key == "realise")
            .unwrap()
            .origin,
        ValueOrigin::BuiltIn
    );

    let missing = PolicyLocation {
        file: Some((dir.path().join("absent.toml"), FileOrigin::Flag)),
        warnings: vec![],
    };
    let err = NodePolicy::load_from(missing, &NodePolicy::default(), None).unwrap_err();
    assert!(err.to_string().contains("absent.toml"), "{err}");
}

/// A filesystem where every absolute path exists and resolves lexically (no links).
struct Lexical;

impl HostPaths for Lexical {
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(lexically_normal(path))
    }

    fn exists(&self, _: &Path) -> bool {
        false
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}"
}

proptest! {
    /// An owner that merely starts with the allowed owner is a different owner.
    #[test]
    fn forge_owners_match_whole_segments(owner in name(), suffix in "[a-z0-9-]{1,4}", repo in name()) {
        let policy = parse(&format!("allowed-flake-prefixes = [\"github:{owner}/\"]")).unwrap();
        let ok = |text: String| policy.check_flake_ref(&flake(&text)).is_ok();
        let exact = format!("github:{owner}/{repo}");
        let longer = format!("github:{owner}{suffix}/{repo}");
        let elsewhere = format!("github:{owner}/{repo}?host=x{suffix}x.example");
        prop_assert!(ok(exact));
        prop_assert!(!ok(longer));
        prop_assert!(!ok(elsewhere));
    }

    /// A local path is allowed exactly when the folder it resolves to is inside the rule's.
    #[test]
    fn local_paths_are_allowed_exactly_inside_the_folder(
        segments in prop::collection::vec(prop_oneof![Just("..".to_owned()), Just(".".to_owned()), name()], 0..6),
        base in prop_oneof![Just("/srv/flakes"), Just("/srv"), Just("/srv/flakesX"), Just("/srv/other")],
    ) {
        let policy = parse("allowed-flake-prefixes = [\"path:/srv/flakes\"]").unwrap();
        let path = segments.iter().fold(PathBuf::from(base), |p, s| p.join(s));
        let text = format!("path:{}", path.display());
        let Ok(parsed) = FlakeRef::parse(&text) else { return Ok(()); };
        let allowed = policy.scope(None).check_flake_ref_with(&parsed, &Lexical);
        let resolved = lexically_normal(&path);
        prop_assert_eq!(allowed.is_ok(), resolved.starts_with("/srv/flakes"), "{}", text);
        if let Ok(allowed) = allowed {
            prop_assert_eq!(allowed.evaluated.to_string(), format!("path:{}", resolved.display()));
        }
    }
}

#[test]
fn rule_lists_keep_their_order_and_text() {
    let policy = parse("allowed-flake-prefixes = [\"path:/b/\", \"github:a\"]").unwrap();
    assert_eq!(policy.allowed_prefix_texts(), ["path:/b/", "github:a"]);
    let namespaces: BTreeMap<_, _> = policy.namespaces.clone();
    assert!(namespaces.is_empty());
}
