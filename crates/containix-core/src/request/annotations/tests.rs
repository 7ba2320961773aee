use proptest::prelude::*;

use super::*;

const APP: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-app";
const LIB: &str = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-lib-1.0";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn request(pairs: &[(&str, &str)], container: &str) -> Option<Request> {
    let parsed = PodAnnotations::parse(&map(pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
    parsed.request_for(container).unwrap()
}

fn flake(text: &str) -> Source {
    Source::Flake(FlakeInstallable::parse(text).unwrap())
}

fn packages(names: &[&str]) -> Source {
    Source::Packages(
        names
            .iter()
            .map(|n| PackageName::parse(n).unwrap())
            .collect(),
    )
}

/// The expected source, entry point and timeout in seconds.
type Expected = (Source, Option<Entrypoint>, Option<u64>);
/// Annotations, the container asked about, and what it should get.
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<Expected>);

#[test]
fn valid_annotations_give_the_expected_requests() {
    let store = |paths: &[&str]| {
        Source::StorePaths(paths.iter().map(|p| StorePath::parse(p).unwrap()).collect())
    };
    let program = |p: &str| Some(Entrypoint::Program(p.to_owned()));
    let path = |p: &str| Some(Entrypoint::Path(p.to_owned()));
    let app_lib_app = format!("{APP}, {LIB}\n{APP}");
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (vec![], "app", None),
        (vec![("app.kubernetes.io/name", "x"), ("containix.dev", "ignored"), ("containix.devx/y", "z")], "app", None),
        (vec![("containix.dev/flake", "github:org/app#default")], "app", Some((flake("github:org/app#default"), None, None))),
        (vec![("containix.dev/flake", "  github:org/app\n")], "app", Some((flake("github:org/app"), None, None))),
        (vec![("containix.dev/store-paths", &app_lib_app)], "app", Some((store(&[APP, LIB]), None, None))),
        (vec![("containix.dev/packages", "curl jq,bash curl")], "app", Some((packages(&["curl", "jq", "bash"]), None, None))),
        (vec![("containix.dev/packages", "python3Packages.numpy")], "app", Some((packages(&["python3Packages.numpy"]), None, None))),
        (vec![("containix.dev/flake", "nixpkgs#hello"), ("containix.dev/entrypoint", "hello"), ("containix.dev/timeout", "1m30s")], "app", Some((flake("nixpkgs#hello"), program("hello"), Some(90)))),
        (vec![("containix.dev/flake", ".#x"), ("containix.dev/entrypoint", "/bin/server")], "app", Some((flake(".#x"), path("/bin/server"), None))),
        // Per-container source replaces the pod-level one; entry points fall back to the pod's.
        (vec![("containix.dev/flake", "github:org/app"), ("containix.dev/packages.debug", "busybox"), ("containix.dev/entrypoint", "app")], "debug", Some((packages(&["busybox"]), program("app"), None))),
        (vec![("containix.dev/flake", "github:org/app"), ("containix.dev/packages.debug", "busybox"), ("containix.dev/entrypoint", "app")], "web", Some((flake("github:org/app"), program("app"), None))),
        (vec![("containix.dev/flake", "github:org/app"), ("containix.dev/entrypoint.web", "/bin/web")], "web", Some((flake("github:org/app"), path("/bin/web"), None))),
        // Only some containers have a source: the others run untouched.
        (vec![("containix.dev/flake.web", "github:org/app")], "web", Some((flake("github:org/app"), None, None))),
        (vec![("containix.dev/flake.web", "github:org/app")], "sidecar", None),
        (vec![("containix.dev/flake", "github:org/app"), ("containix.dev/passthrough", "envoy, istio-proxy")], "envoy", None),
        (vec![("containix.dev/flake", "github:org/app"), ("containix.dev/passthrough", "envoy, istio-proxy")], "istio-proxy", None),
        (vec![("containix.dev/flake", "github:org/app"), ("containix.dev/passthrough", "envoy")], "app", Some((flake("github:org/app"), None, None))),
        (vec![("containix.dev/timeout", "2m")], "app", None),
    ];
    for (pairs, container, expected) in cases {
        let expected = expected.map(|(source, entrypoint, timeout)| Request {
            container: container.to_owned(),
            source,
            entrypoint,
            timeout: timeout.map(Duration::from_secs),
            namespace: None,
        });
        assert_eq!(
            request(&pairs, container),
            expected,
            "{pairs:?} for {container}"
        );
    }
}

#[test]
fn invalid_annotations_name_the_key_and_what_was_expected() {
    #[rustfmt::skip]
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("containix.dev/flak", "github:o/r")], "unknown annotation `containix.dev/flak`; valid keys are containix.dev/flake"),
        (vec![("containix.dev/Flake", "github:o/r")], "unknown annotation `containix.dev/Flake`"),
        (vec![("containix.dev/timeout.web", "1m")], "unknown annotation `containix.dev/timeout.web`"),
        (vec![("containix.dev/passthrough.web", "x")], "unknown annotation `containix.dev/passthrough.web`"),
        (vec![("containix.dev/", "x")], "unknown annotation `containix.dev/`"),
        (vec![("containix.dev/flake.Web", "github:o/r")], "annotation `containix.dev/flake.Web`: invalid container name \"Web\"; expected a DNS label"),
        (vec![("containix.dev/flake.", "github:o/r")], "invalid container name \"\""),
        (vec![("containix.dev/flake.a.b", "github:o/r")], "invalid container name \"a.b\""),
        (vec![("containix.dev/flake", "")], "annotation `containix.dev/flake`: empty value; expected a flake reference"),
        (vec![("containix.dev/flake", "github:foo")], "annotation `containix.dev/flake`: flake ref `github:foo`: expected `github:<owner>/<repo>[/<ref-or-rev>]`"),
        (vec![("containix.dev/flake", "-x")], "annotation `containix.dev/flake`: flake ref `-x`: starts with `-`"),
        (vec![("containix.dev/flake", "github:o/r#")], "empty attribute path after `#`"),
        (vec![("containix.dev/store-paths", " , ")], "annotation `containix.dev/store-paths`: empty value; expected store paths"),
        (vec![("containix.dev/store-paths", "/usr/bin")], "annotation `containix.dev/store-paths`: store path \"/usr/bin\" is not under /nix/store/"),
        (vec![("containix.dev/packages", "curl 7zip")], "annotation `containix.dev/packages`: invalid package name \"7zip\""),
        (vec![("containix.dev/packages", "")], "annotation `containix.dev/packages`: empty value"),
        (vec![("containix.dev/entrypoint", "bin/app")], "annotation `containix.dev/entrypoint`: entrypoint \"bin/app\" is neither an absolute path nor a bare program name"),
        (vec![("containix.dev/entrypoint", "/bin/../etc/x")], "has an empty, `.` or `..` segment"),
        (vec![("containix.dev/entrypoint", "app --flag")], "contains whitespace"),
        (vec![("containix.dev/timeout", "0s")], "annotation `containix.dev/timeout`: duration \"0s\" is zero"),
        (vec![("containix.dev/timeout", "90")], "annotation `containix.dev/timeout`: duration \"90\" is not of the form"),
        (vec![("containix.dev/timeout", "-5s")], "annotation `containix.dev/timeout`"),
        (vec![("containix.dev/timeout", "")], "annotation `containix.dev/timeout`: empty duration"),
        (vec![("containix.dev/passthrough", "Envoy")], "annotation `containix.dev/passthrough`: invalid container name \"Envoy\""),
        (vec![("containix.dev/passthrough", ",")], "annotation `containix.dev/passthrough`: empty value"),
        (vec![("containix.dev/flake", "github:o/r"), ("containix.dev/packages", "curl")], "annotations `containix.dev/flake` and `containix.dev/packages` both name a source; give exactly one of flake, store-paths or packages"),
        (vec![("containix.dev/flake.web", "github:o/r"), ("containix.dev/store-paths.web", APP)], "annotations `containix.dev/flake.web` and `containix.dev/store-paths.web` both name a source; give exactly one of flake, store-paths or packages for container `web`"),
        (vec![("containix.dev/flake.envoy", "github:o/r"), ("containix.dev/passthrough", "envoy")], "annotation `containix.dev/flake.envoy`: container `envoy` is listed in `containix.dev/passthrough`"),
        (vec![("containix.dev/entrypoint.envoy", "x"), ("containix.dev/flake", "github:o/r"), ("containix.dev/passthrough", "envoy")], "annotation `containix.dev/entrypoint.envoy`: container `envoy` is listed"),
        (vec![("containix.dev/entrypoint.web", "/bin/web")], "annotation `containix.dev/entrypoint.web`: container `web` has no source"),
    ];
    for (pairs, needle) in cases {
        let error = PodAnnotations::parse(&map(&pairs)).expect_err(&format!("{pairs:?}"));
        let message = error.to_string();
        assert!(
            message.contains(needle),
            "{pairs:?} gave `{message}`, expected `{needle}`"
        );
        assert!(
            message.contains("containix.dev/"),
            "names the key: {message}"
        );
        assert!(
            !message.contains('\n'),
            "one line for a pod event: {message:?}"
        );
    }
}

#[test]
fn request_for_refuses_names_that_are_not_container_names() {
    let parsed = PodAnnotations::parse(&map(&[("containix.dev/flake", "nixpkgs#hello")])).unwrap();
    assert!(parsed.request_for("Bad_Name").is_err());
    assert!(parsed.request_for("").is_err());
}

#[test]
fn canonical_annotations_are_stable() {
    let pairs = [
        ("containix.dev/flake", " nixpkgs#hello "),
        ("containix.dev/packages.debug", "busybox,curl busybox"),
        ("containix.dev/timeout", "90s"),
        ("containix.dev/passthrough", "b,a"),
        ("other/key", "ignored"),
    ];
    let parsed = PodAnnotations::parse(&map(&pairs)).unwrap();
    let canonical = parsed.to_annotations();
    assert_eq!(
        canonical,
        map(&[
            ("containix.dev/flake", "flake:nixpkgs#hello"),
            ("containix.dev/packages.debug", "busybox curl"),
            ("containix.dev/timeout", "1m30s"),
            ("containix.dev/passthrough", "a,b"),
        ])
    );
    assert_eq!(PodAnnotations::parse(&canonical).unwrap(), parsed);
    assert!(
        parsed
            .to_string()
            .contains("containix.dev/timeout: 1m30s\n")
    );
}

// ---- property tests ----

fn container() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?"
}

fn store_path() -> impl Strategy<Value = String> {
    ("[0-9a-df-np-sv-z]{32}", "[a-z][a-z0-9+._?=-]{0,10}")
        .prop_map(|(hash, name)| format!("/nix/store/{hash}-{name}"))
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![" ", ",", ", ", "\n", "\t,"])
}

fn source_pair() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        prop::sample::select(vec![
            "github:org/app",
            "github:NixOS/nixpkgs/nixos-24.05#hello",
            "nixpkgs#legacyPackages.x86_64-linux.\"foo.bar\"",
            "git+https://example.org/r?ref=main#packages.x86_64-linux.default",
            "./deploy#app",
            "https://example.org/src.tar.gz",
        ])
        .prop_map(|f| ("flake", f.to_owned())),
        (prop::collection::vec(store_path(), 1..4), separator())
            .prop_map(|(paths, sep)| ("store-paths", paths.join(sep))),
        (
            prop::collection::vec("[a-zA-Z_][a-zA-Z0-9_'-]{0,6}(\\.[a-z]{1,4})?", 1..4),
            separator()
        )
            .prop_map(|(names, sep)| ("packages", names.join(sep))),
    ]
}

fn entrypoint() -> impl Strategy<Value = String> {
    prop_oneof!["/[a-z]{1,5}(/[a-z.]{1,5}[a-z])?", "[a-z][a-z0-9._-]{0,8}"]
}

prop_compose! {
    fn annotation_map()(
        pod_source in prop::option::of(source_pair()),
        pod_entrypoint in prop::option::of(entrypoint()),
        timeout in prop::option::of((0u64..3, 0u64..120, 1u64..200)),
        overrides in prop::collection::btree_map(
            container(),
            (prop::option::of(source_pair()), prop::option::of(entrypoint())),
            0..3,
        ),
        passthrough in prop::collection::btree_set(container(), 0..3),
        noise in prop::collection::btree_map("[a-z.]{1,8}/[a-z-]{1,8}", "[ -~]{0,10}", 0..3),
    ) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> =
            noise.into_iter().filter(|(k, _)| !k.starts_with(PREFIX)).collect();
        if let Some((base, value)) = pod_source {
            out.insert(format!("{PREFIX}{base}"), value);
        }
        if let Some(entrypoint) = pod_entrypoint {
            out.insert(format!("{PREFIX}entrypoint"), entrypoint);
        }
        if let Some((h, m, s)) = timeout {
            out.insert(format!("{PREFIX}timeout"), format!("{h}h{m}m{s}s"));
        }
        for (container, (source, entrypoint)) in overrides {
            if passthrough.contains(&container) {
                continue;
            }
            if let Some((base, value)) = source {
                out.insert(format!("{PREFIX}{base}.{container}"), value);
            }
            if let Some(entrypoint) = entrypoint {
                out.insert(format!("{PREFIX}entrypoint.{container}"), entrypoint);
            }
        }
        if !passthrough.is_empty() {
            let names: Vec<String> = passthrough.into_iter().collect();
            out.insert(format!("{PREFIX}passthrough"), names.join(", "));
        }
        out
    }
}

proptest! {
    #[test]
    fn annotations_round_trip_through_their_canonical_form(annotations in annotation_map()) {
        match PodAnnotations::parse(&annotations) {
            Ok(parsed) => {
                let canonical = parsed.to_annotations();
                let reparsed = PodAnnotations::parse(&canonical)
                    .map_err(|e| TestCaseError::fail(format!("{canonical:?}: {e}")))?;
                prop_assert_eq!(&reparsed, &parsed);
                prop_assert_eq!(reparsed.to_annotations(), canonical);
            }
            // The only refusal the generator can produce: an entry point with no source.
            Err(error) => prop_assert!(
                matches!(error, AnnotationError::EntrypointWithoutSource { .. }),
                "{}", error
            ),
        }
    }

    #[test]
    fn arbitrary_containix_keys_never_panic(
        pairs in prop::collection::btree_map(
            "containix\\.dev/[a-z.-]{0,16}", "[ -~\\n]{0,30}", 0..5,
        ),
    ) {
        if let Ok(parsed) = PodAnnotations::parse(&pairs) {
            let reparsed = PodAnnotations::parse(&parsed.to_annotations()).unwrap();
            prop_assert_eq!(reparsed, parsed);
        }
    }
}

/// What a hostile annotation must lead to.
enum Expect {
    /// Refused by the annotation parser, with this text in the error.
    Refused(&'static str),
    /// Parsed, then refused by the built-in node policy with this text.
    RefusedByPolicy(&'static str),
    /// Harmless: parsed to exactly this source.
    Parses(Box<Source>),
}

/// The pod annotation surface against hostile values (issue: adversarial inputs). Every row is
/// refused with an error naming the key that stays one short line, or proven harmless.
#[test]
fn hostile_annotations_are_refused_naming_the_key_or_are_harmless() {
    use crate::request::policy::node_policy::NodePolicy;
    let mib = "a".repeat(1 << 20);
    let big_flake = format!("github:{mib}/r");
    let big_paths = format!("{APP} ").repeat((1 << 20) / APP.len());
    let long_entrypoint = "a".repeat(5000);
    let long_key = format!("containix.dev/{mib}");
    let dotdot = format!("{APP}/../../../etc");
    let nul_path = format!("{APP}\0");
    let two = format!("{APP}\n{LIB}");
    let store = |paths: &[&str]| {
        Source::StorePaths(paths.iter().map(|p| StorePath::parse(p).unwrap()).collect())
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Expect)> = vec![
        ("containix.dev/flake", "-x", Expect::Refused("starts with `-`")),
        ("containix.dev/flake", "--option", Expect::Refused("starts with `-`")),
        ("containix.dev/flake", "--option substituters http://evil", Expect::Refused("starts with `-`")),
        ("containix.dev/flake", "github:o/r\0", Expect::Refused("character '\\0'")),
        ("containix.dev/flake", "github:o/\nr", Expect::Refused("character '\\n'")),
        ("containix.dev/flake", "github:o/r\u{1b}[2J", Expect::Refused("character '\\u{1b}'")),
        ("containix.dev/flake", "github:o/r\u{7f}", Expect::Refused("is not allowed")),
        ("containix.dev/flake", &big_flake, Expect::Refused("1048585 bytes long; at most 65536")),
        ("containix.dev/flake", "github:o/r?dir=../..", Expect::Refused("invalid dir `../..`")),
        ("containix.dev/flake", "path:/nix/store?dir=../..", Expect::Refused("invalid dir `../..`")),
        ("containix.dev/flake", "github:o/r?dir=%2E%2E/%2E%2E", Expect::Refused("invalid dir `../..`")),
        ("containix.dev/flake", "github:o/r?submodules=1", Expect::Refused("unsupported attribute `submodules`")),
        ("containix.dev/flake", "github:o/r#--option", Expect::Refused("starts with `-`")),
        ("containix.dev/flake", "GITHUB:o/r", Expect::Refused("unknown scheme `GITHUB:`")),
        ("containix.dev/flake", "Github:o/r", Expect::Refused("unknown scheme `Github:`")),
        ("containix.dev/flake", "github:o%2F..%2Fx/r", Expect::Refused("invalid owner")),
        ("containix.dev/flake", "flake:nixpkgs", Expect::RefusedByPolicy("no rule allows `flake:` refs")),
        ("containix.dev/flake", "nixpkgs#hello", Expect::RefusedByPolicy("no rule allows `flake:` refs")),
        ("containix.dev/flake", "github:o/r?host=evil.example", Expect::RefusedByPolicy("rule `github:` allows host github.com, not evil.example")),
        ("containix.dev/flake", "path:/nix/store/../../etc", Expect::RefusedByPolicy("no rule allows `path:` refs")),
        ("containix.dev/flake", "/etc", Expect::RefusedByPolicy("no rule allows `path:` refs")),
        ("containix.dev/flake", "git+https://github.com/o/../../evil/r", Expect::RefusedByPolicy("`..` segment")),
        ("containix.dev/flake", " github:o/r\n", Expect::Parses(Box::new(flake("github:o/r")))),
        ("containix.dev/flake", "\tgithub:o/r ", Expect::Parses(Box::new(flake("github:o/r")))),
        ("containix.dev/store-paths", "/nix/store/../etc", Expect::Refused("store path")),
        ("containix.dev/store-paths", &dotdot, Expect::Refused("names a file inside a store path")),
        ("containix.dev/store-paths", "--option", Expect::Refused("is not under /nix/store/")),
        ("containix.dev/store-paths", "-/nix/store/x", Expect::Refused("is not under /nix/store/")),
        ("containix.dev/store-paths", &nul_path, Expect::Refused("store path")),
        ("containix.dev/store-paths", &big_paths, Expect::Refused("bytes long; at most 65536")),
        ("containix.dev/store-paths", &two, Expect::Parses(Box::new(store(&[APP, LIB])))),
        ("containix.dev/packages", "--option", Expect::Refused("invalid package name \"--option\"")),
        ("containix.dev/packages", "-x", Expect::Refused("invalid package name")),
        ("containix.dev/packages", "curl;rm", Expect::Refused("invalid package name")),
        ("containix.dev/packages", "$(id)", Expect::Refused("invalid package name")),
        ("containix.dev/packages", "curl\0", Expect::Refused("invalid package name")),
        ("containix.dev/packages", "curl\njq", Expect::Parses(Box::new(packages(&["curl", "jq"])))),
        ("containix.dev/entrypoint", "-rf", Expect::Refused("starts with `-`")),
        ("containix.dev/entrypoint", "--option", Expect::Refused("starts with `-`")),
        ("containix.dev/entrypoint", "/bin/../etc/passwd", Expect::Refused("`..` segment")),
        ("containix.dev/entrypoint", "app\0", Expect::Refused("control character")),
        ("containix.dev/entrypoint", "/bin/sh -c id", Expect::Refused("whitespace")),
        ("containix.dev/entrypoint", &long_entrypoint, Expect::Refused("5000 bytes long")),
        ("containix.dev/timeout", "-5s", Expect::Refused("containix.dev/timeout")),
        ("containix.dev/timeout", "1s\0", Expect::Refused("containix.dev/timeout")),
        ("containix.dev/timeout", "99999999999999999999h", Expect::Refused("too long")),
        ("containix.dev/passthrough", "-x", Expect::Refused("invalid container name")),
        ("containix.dev/passthrough", "a\0", Expect::Refused("invalid container name")),
        ("containix.dev/namespace", "kube-system", Expect::Refused("unknown annotation `containix.dev/namespace`")),
        ("containix.dev/flake\0", "github:o/r", Expect::Refused("unknown annotation `containix.dev/flake\\u{0}`")),
        ("containix.dev/flake\n", "github:o/r", Expect::Refused("unknown annotation `containix.dev/flake\\n`")),
        ("containix.dev/flake.-web", "github:o/r", Expect::Refused("invalid container name \"-web\"")),
        ("containix.dev/FLAKE", "github:o/r", Expect::Refused("unknown annotation `containix.dev/FLAKE`")),
        ("containix.dev/ flake", "github:o/r", Expect::Refused("unknown annotation")),
        (&long_key, "x", Expect::Refused("unknown annotation `containix.dev/aaaa")),
    ];
    let policy = NodePolicy::default();
    for (key, value, expect) in rows {
        let shown: String = format!("{key:?}={value:?}").chars().take(80).collect();
        let parsed = PodAnnotations::parse(&map(&[(key, value)]));
        let message = match (&parsed, &expect) {
            (Err(err), Expect::Refused(needle)) => {
                let message = err.to_string();
                assert!(message.contains(needle), "{shown}: {message}");
                let key_start: String = key.chars().take(20).collect();
                let key_shown = key_start.escape_default().to_string();
                assert!(
                    message.contains(&key_shown),
                    "{shown}: names the key: {message}"
                );
                message
            }
            (Ok(parsed), Expect::RefusedByPolicy(needle)) => {
                let request = parsed.request_for("app").unwrap().unwrap();
                let Source::Flake(installable) = &request.source else {
                    panic!("{shown}: {:?}", request.source);
                };
                let err = policy.check_flake_ref(&installable.flake).unwrap_err();
                let message = err.to_string();
                assert!(message.contains(needle), "{shown}: {message}");
                message
            }
            (Ok(parsed), Expect::Parses(source)) => {
                let request = parsed.request_for("app").unwrap().unwrap();
                assert_eq!(&request.source, source.as_ref(), "{shown}");
                assert_eq!(request.namespace, None, "{shown}");
                continue;
            }
            (other, _) => panic!("{shown}: unexpected {other:?}"),
        };
        assert!(message.len() < 1500, "{shown}: {} bytes", message.len());
        assert!(
            !message.chars().any(char::is_control),
            "{shown}: a control character in {message:?}"
        );
    }
    // A value under the limit whose canonical form is over it is refused too, so that whatever
    // parses also parses in canonical form.
    let quotes = format!("path:/{}", "\"".repeat(MAX_VALUE_BYTES / 2));
    let err = PodAnnotations::parse(&map(&[("containix.dev/flake", &quotes)])).unwrap_err();
    assert!(matches!(err, AnnotationError::ValueTooLong { .. }), "{err}");
    // Annotations outside containix.dev/, even the runtime's own keys, are not read.
    let spoof = map(&[
        ("containix.dev/flake", "github:o/r"),
        ("io.kubernetes.cri.sandbox-namespace", "kube-system"),
    ]);
    let request = PodAnnotations::parse(&spoof)
        .unwrap()
        .request_for("app")
        .unwrap()
        .unwrap();
    assert_eq!(request.namespace, None);
}
