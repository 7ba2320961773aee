use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const REV: &str = "a3a3dda3bacf61e8a39258a0ed9c924eeca8e293";
const NAR: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

/// One line describing the parsed fields: `<scheme> <location> [key=value ...]`.
fn summary(flake: &FlakeRef) -> String {
    let location = match flake.source() {
        FlakeSource::Forge { owner, repo, .. } => format!("{owner}/{repo}"),
        FlakeSource::Git { url, .. }
        | FlakeSource::Tarball { url, .. }
        | FlakeSource::File { url, .. } => url.clone(),
        FlakeSource::Path { path, bare: true } => format!("bare {path}"),
        FlakeSource::Path { path, bare: false } => path.clone(),
        FlakeSource::Indirect { id } => id.clone(),
    };
    let mut out = format!("{} {location}", flake.scheme());
    let named = [
        ("ref", flake.git_ref()),
        ("rev", flake.rev()),
        ("dir", flake.dir()),
        ("host", flake.host()),
        ("narHash", flake.nar_hash()),
    ];
    for (key, value) in named {
        if let Some(value) = value {
            out.push_str(&format!(" {key}={value}"));
        }
    }
    for (key, value) in flake.attrs() {
        out.push_str(&format!(" {key}={value}"));
    }
    out
}

#[test]
fn real_world_refs_parse_to_the_expected_fields_and_canonical_form() {
    let r = REV;
    let n = NAR;
    #[rustfmt::skip]
    let cases: Vec<(String, String, String)> = [
        // GitHub
        ("github:NixOS/nixpkgs", "github NixOS/nixpkgs", "github:NixOS/nixpkgs"),
        ("github:NixOS/nixpkgs/nixos-24.05", "github NixOS/nixpkgs ref=nixos-24.05", "github:NixOS/nixpkgs/nixos-24.05"),
        (&format!("github:NixOS/nixpkgs/{r}"), &format!("github NixOS/nixpkgs rev={r}"), &format!("github:NixOS/nixpkgs/{r}")),
        (&format!("github:NixOS/nixpkgs/{}", r.to_uppercase()), &format!("github NixOS/nixpkgs rev={r}"), &format!("github:NixOS/nixpkgs/{r}")),
        ("github:NixOS/nixpkgs?ref=nixos-unstable", "github NixOS/nixpkgs ref=nixos-unstable", "github:NixOS/nixpkgs/nixos-unstable"),
        (&format!("github:NixOS/nixpkgs?rev={r}"), &format!("github NixOS/nixpkgs rev={r}"), &format!("github:NixOS/nixpkgs/{r}")),
        ("github:edolstra/nix-warez?dir=blender", "github edolstra/nix-warez dir=blender", "github:edolstra/nix-warez?dir=blender"),
        ("github:org/app/v1.2.3?dir=deploy/k8s", "github org/app ref=v1.2.3 dir=deploy/k8s", "github:org/app/v1.2.3?dir=deploy/k8s"),
        ("github:org/app?ref=feature/x", "github org/app ref=feature/x", "github:org/app?ref=feature/x"),
        ("github:org/app?host=github.example.com", "github org/app host=github.example.com", "github:org/app?host=github.example.com"),
        (&format!("github:numtide/flake-utils/{r}?narHash={n}&lastModified=1700000000"), &format!("github numtide/flake-utils rev={r} narHash={n} lastModified=1700000000"), &format!("github:numtide/flake-utils/{r}?lastModified=1700000000&narHash={n}")),
        ("github:nix-community/home-manager/release-24.05", "github nix-community/home-manager ref=release-24.05", "github:nix-community/home-manager/release-24.05"),
        ("github:user/.github", "github user/.github", "github:user/.github"),
        // GitLab
        ("gitlab:veloren/veloren", "gitlab veloren/veloren", "gitlab:veloren/veloren"),
        ("gitlab:group%2Fsubgroup/repo", "gitlab group/subgroup/repo", "gitlab:group%2Fsubgroup/repo"),
        ("gitlab:group%2fsub%2Fsubsub/repo/main", "gitlab group/sub/subsub/repo ref=main", "gitlab:group%2Fsub%2Fsubsub/repo/main"),
        ("gitlab:org/repo?host=gitlab.example.org:8443", "gitlab org/repo host=gitlab.example.org:8443", "gitlab:org/repo?host=gitlab.example.org:8443"),
        // SourceHut
        ("sourcehut:~misterio/nix-colors", "sourcehut ~misterio/nix-colors", "sourcehut:~misterio/nix-colors"),
        ("sourcehut:~misterio/nix-colors/main", "sourcehut ~misterio/nix-colors ref=main", "sourcehut:~misterio/nix-colors/main"),
        (&format!("sourcehut:~misterio/nix-colors/{r}?host=hg.sr.ht"), &format!("sourcehut ~misterio/nix-colors rev={r} host=hg.sr.ht"), &format!("sourcehut:~misterio/nix-colors/{r}?host=hg.sr.ht")),
        // Git
        ("git+https://github.com/NixOS/patchelf", "git+https https://github.com/NixOS/patchelf", "git+https://github.com/NixOS/patchelf"),
        ("git+https://github.com/NixOS/patchelf?ref=master", "git+https https://github.com/NixOS/patchelf ref=master", "git+https://github.com/NixOS/patchelf?ref=master"),
        (&format!("git+https://github.com/NixOS/patchelf?ref=master&rev={r}"), &format!("git+https https://github.com/NixOS/patchelf ref=master rev={r}"), &format!("git+https://github.com/NixOS/patchelf?ref=master&rev={r}")),
        (&format!("git+https://example.org/my/repo?rev={r}&ref=v1&dir=flake1"), &format!("git+https https://example.org/my/repo ref=v1 rev={r} dir=flake1"), &format!("git+https://example.org/my/repo?dir=flake1&ref=v1&rev={r}")),
        ("git+https://example.org:8443/a%2fb/repo.git?submodules=1&shallow=1", "git+https https://example.org:8443/a%2Fb/repo.git shallow=1 submodules=1", "git+https://example.org:8443/a%2Fb/repo.git?shallow=1&submodules=1"),
        ("git+http://git.internal/team/app?allRefs=1", "git+http http://git.internal/team/app allRefs=1", "git+http://git.internal/team/app?allRefs=1"),
        ("git+ssh://git@github.com/NixOS/nix?ref=v1.2.3", "git+ssh ssh://git@github.com/NixOS/nix ref=v1.2.3", "git+ssh://git@github.com/NixOS/nix?ref=v1.2.3"),
        ("git+ssh://git@[2001:db8::1]:2222/srv/repo", "git+ssh ssh://git@[2001:db8::1]:2222/srv/repo", "git+ssh://git@[2001:db8::1]:2222/srv/repo"),
        ("git+file:///home/my-user/some-repo/some-repo", "git+file file:///home/my-user/some-repo/some-repo", "git+file:///home/my-user/some-repo/some-repo"),
        ("git+file:/srv/repo?revCount=42", "git+file file:///srv/repo revCount=42", "git+file:///srv/repo?revCount=42"),
        // Paths
        ("path:/home/alice/src/patchelf", "path /home/alice/src/patchelf", "path:/home/alice/src/patchelf"),
        (&format!("path:/nix/store/abc-source?narHash={n}&lastModified=0"), &format!("path /nix/store/abc-source narHash={n} lastModified=0"), &format!("path:/nix/store/abc-source?lastModified=0&narHash={n}")),
        ("path:./flake", "path ./flake", "path:./flake"),
        ("path:sub/dir", "path sub/dir", "path:sub/dir"),
        ("path:/a%20b%5Bx%5D", "", ""),
        ("path:/srv/%5Bx%5D", "path /srv/[x]", "path:/srv/%5Bx%5D"),
        (".", "path bare .", "."),
        ("..", "path bare ..", ".."),
        ("./x?dir=sub", "path bare ./x dir=sub", "./x?dir=sub"),
        ("../x", "path bare ../x", "../x"),
        ("/home/alice/src/patchelf", "path bare /home/alice/src/patchelf", "/home/alice/src/patchelf"),
        // Tarballs and files
        ("https://github.com/NixOS/patchelf/archive/master.tar.gz", "tarball+https https://github.com/NixOS/patchelf/archive/master.tar.gz", "https://github.com/NixOS/patchelf/archive/master.tar.gz"),
        (&format!("https://example.org/src.zip?narHash={n}"), &format!("tarball+https https://example.org/src.zip narHash={n}"), &format!("https://example.org/src.zip?narHash={n}")),
        ("http://mirror.local/x.tar.zst?dir=flake", "tarball+http http://mirror.local/x.tar.zst dir=flake", "http://mirror.local/x.tar.zst?dir=flake"),
        ("https://example.org/a.tgz", "tarball+https https://example.org/a.tgz", "https://example.org/a.tgz"),
        ("https://example.org/a.tar.xz", "tarball+https https://example.org/a.tar.xz", "https://example.org/a.tar.xz"),
        ("https://example.org/a.tar.bz2", "tarball+https https://example.org/a.tar.bz2", "https://example.org/a.tar.bz2"),
        ("tarball+https://example.org/download?id=3", "", ""),
        ("tarball+https://example.org/download/latest", "tarball+https https://example.org/download/latest", "tarball+https://example.org/download/latest"),
        ("tarball+https://example.org/x.tar", "tarball+https https://example.org/x.tar", "https://example.org/x.tar"),
        ("tarball+file:///srv/src.tar.gz", "tarball+file file:///srv/src.tar.gz", "file:///srv/src.tar.gz"),
        ("file:///srv/src.tar.gz", "tarball+file file:///srv/src.tar.gz", "file:///srv/src.tar.gz"),
        ("file:/srv/src.tar", "tarball+file file:///srv/src.tar", "file:///srv/src.tar"),
        ("file:///srv/flake.nix", "file+file file:///srv/flake.nix", "file:///srv/flake.nix"),
        ("file+file:///srv/src.tar.gz", "file+file file:///srv/src.tar.gz", "file+file:///srv/src.tar.gz"),
        ("file+https://example.org/data.json", "file+https https://example.org/data.json", "file+https://example.org/data.json"),
        ("file+http://example.org/data", "file+http http://example.org/data", "file+http://example.org/data"),
        // Indirect
        ("nixpkgs", "flake nixpkgs", "flake:nixpkgs"),
        ("flake:nixpkgs", "flake nixpkgs", "flake:nixpkgs"),
        ("nixpkgs/nixos-24.05", "flake nixpkgs ref=nixos-24.05", "flake:nixpkgs/nixos-24.05"),
        (&format!("nixpkgs/{r}"), &format!("flake nixpkgs rev={r}"), &format!("flake:nixpkgs/{r}")),
        (&format!("flake:nixpkgs/nixos-24.05/{r}"), &format!("flake nixpkgs ref=nixos-24.05 rev={r}"), &format!("flake:nixpkgs/nixos-24.05/{r}")),
        ("my_flake-2?dir=sub", "flake my_flake-2 dir=sub", "flake:my_flake-2?dir=sub"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .filter(|(_, fields, _)| !fields.is_empty())
    .collect();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (input, fields, canonical) in &cases {
        let flake = FlakeRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(&summary(&flake), fields, "fields of {input}");
        assert_eq!(&flake.to_string(), canonical, "canonical form of {input}");
        let reparsed = FlakeRef::parse(canonical).unwrap_or_else(|e| panic!("{canonical}: {e}"));
        assert_eq!(reparsed, flake, "re-parse of {canonical}");
        assert_eq!(&reparsed.to_string(), canonical);
        assert!(!flake.to_nix_arg().starts_with('-'));
    }
}

#[test]
fn locked_and_local_classification() {
    let locked = |s: &str| FlakeRef::parse(s).unwrap().is_locked();
    let local = |s: &str| FlakeRef::parse(s).unwrap().is_local();
    assert!(locked(&format!("github:o/r/{REV}")));
    assert!(locked(&format!("https://x.org/a.tar.gz?narHash={NAR}")));
    assert!(!locked("github:o/r/main"));
    assert!(
        !locked(&format!("nixpkgs/{REV}")),
        "the registry decides an indirect ref's source"
    );
    assert!(local("./x") && local("/abs") && local("path:/abs") && local("git+file:///r"));
    assert!(local("file:///x.tar.gz") && local("file:///x"));
    assert!(!local("github:o/r") && !local("nixpkgs") && !local("git+ssh://h/r"));
    assert_eq!(FlakeRef::parse("git+file:///r").unwrap().type_name(), "git");
    assert_eq!(FlakeRef::parse("nixpkgs").unwrap().type_name(), "indirect");
}

#[test]
fn rejections_name_the_problem() {
    let long_input = "a".repeat(300);
    #[rustfmt::skip]
    let cases: Vec<(String, &str)> = [
        ("", "empty flake reference"),
        ("-rf", "could be read as a command-line option"),
        ("--option", "could be read as a command-line option"),
        ("github:o/r ", "character ' ' at byte 10 is not allowed"),
        ("github:o/r\n", "character '\\n' at byte 10"),
        ("github:o/\u{0}r", "character '\\0' at byte 9"),
        ("github:ö/r", "is not allowed"),
        ("github:o/r#pkg", "contains `#`"),
        ("svn:foo", "unknown scheme `svn:`"),
        ("hg+https://x/y", "unknown scheme `hg+https:`"),
        ("git://github.com/a/b", "unknown scheme `git:`"),
        ("github:foo", "flake ref `github:foo`: expected `github:<owner>/<repo>[/<ref-or-rev>]`"),
        ("github:a/b/c/d", "expected `github:<owner>/<repo>[/<ref-or-rev>]`"),
        ("github:/b", "expected `github:<owner>/<repo>"),
        ("github:o/r/", "expected `github:<owner>/<repo>"),
        ("github:o%2Fx/r", "invalid owner `o/x`"),
        ("github:o/r$", "invalid repo `r$`"),
        ("github:../r", "invalid owner `..`"),
        ("sourcehut:misterio/nix-colors", "invalid owner `misterio`: expected `~`"),
        ("gitlab:a%2F%2Fb/r", "invalid owner `a//b`"),
        ("github:o/r/a..b", "invalid ref `a..b`"),
        ("github:o/r?rev=abc", "invalid rev `abc`: expected 40 hexadecimal digits"),
        (&format!("github:o/r?rev={}0", REV), "invalid rev"),
        (&format!("github:o/r/main?rev={REV}"), "has both a ref and a rev"),
        ("github:o/r/main?ref=dev", "`ref` is given twice"),
        ("github:o/r?ref=a&ref=b", "query parameter `ref` appears more than once"),
        ("github:o/r?", "empty query parameter"),
        ("github:o/r?ref=a&", "empty query parameter"),
        ("github:o/r?ref", "query parameter `ref` has no value"),
        ("github:o/r?ref=", "query parameter `ref` has no value"),
        ("github:o/r?dir=%zz", "bad percent-encoding in `%zz`"),
        ("github:o/r?dir=%4", "bad percent-encoding"),
        ("github:o/r?dir=a%20b", "decodes to invalid UTF-8, whitespace or a control character"),
        ("github:o/r?dir=%ff", "decodes to invalid UTF-8"),
        ("github:o/r?dir=../x", "invalid dir `../x`"),
        ("github:o/r?dir=/abs", "invalid dir `/abs`"),
        ("github:o/r?submodules=1", "unsupported attribute `submodules` for `github:` flake refs (supported: dir, host"),
        ("github:o/r?host=exa mple", "character ' '"),
        ("github:o/r?host=-bad.com", "invalid host `-bad.com`"),
        ("github:o/r?narHash=md5-abc", "invalid narHash `md5-abc`"),
        ("github:o/r?narHash=sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=", "invalid narHash"),
        ("github:o/r?lastModified=01", "invalid `lastModified` value `01`"),
        ("git+https://x.org/r?shallow=yes", "invalid `shallow` value `yes`: expected `0` or `1`"),
        ("git+https://x.org/r?foo=bar", "unsupported attribute `foo` for `git+https:`"),
        ("git+https://user:pw@x.org/r", "user names and passwords are not allowed"),
        ("git+ssh://git:pw@x.org/r", "passwords are not allowed"),
        ("git+ssh://git@github.com:NixOS/nix", "scp-like `host:path` is not a URL"),
        ("git+https:x.org/r", "expected `https://<host>/<path>`"),
        ("git+https://x.org", "expected `https://<host>/<path>`"),
        ("git+https://x.org:99999/r", "invalid host `x.org:99999`"),
        ("git+https://x.org/a\"b", "must be percent-encoded"),
        ("git+file://host/srv/r", "`file:` URLs take no host"),
        ("git+file:relative", "expected `file:///<absolute path>`"),
        ("https://example.org/flake", "`https:` URLs must end in an archive extension"),
        ("http://example.org/x.tar.gz?foo=1", "unsupported attribute `foo` for `tarball+http:`"),
        ("file+https://example.org/x?dir=a", "unsupported attribute `dir` for `file+https:`"),
        ("path:", "expected `path:<path>`"),
        (".hidden", "relative paths must start with `./` or `../`"),
        ("nixpkgs/a/b/c", "expected `[flake:]<id>[/<ref-or-rev>[/<rev>]]`"),
        ("1nixpkgs", "invalid flake id `1nixpkgs`"),
        ("flake:nix_pkgs.x", "invalid flake id `nix_pkgs.x`"),
        ("nixpkgs/main/notarev", "invalid rev `notarev`"),
        ("nixpkgs?ref=main", "unsupported attribute `ref` for `flake:`"),
        (&long_input.replace('a', "\u{7f}"), "character '\\u{7f}' at byte 0"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b))
    .collect();
    for (input, needle) in &cases {
        let error = FlakeRef::parse(input).expect_err(input);
        let message = error.to_string();
        assert!(
            message.contains(needle),
            "`{input}` gave `{message}`, expected `{needle}`"
        );
        assert!(message.starts_with("flake ref `"), "{message}");
        assert!(
            !message.contains('\n') && !message.contains('\0'),
            "{message:?}"
        );
    }
    let long = FlakeRef::parse(&format!("{long_input}:x"))
        .unwrap_err()
        .to_string();
    assert!(long.len() < 600, "long input is cut short in messages");
}

#[test]
fn attr_paths_parse_quote_and_print() {
    let cases = [
        ("default", vec!["default"], "default"),
        (
            "packages.x86_64-linux.default",
            vec!["packages", "x86_64-linux", "default"],
            "packages.x86_64-linux.default",
        ),
        (
            "packages.x86_64-linux.\"foo.bar\"",
            vec!["packages", "x86_64-linux", "foo.bar"],
            "packages.x86_64-linux.\"foo.bar\"",
        ),
        ("\"plain\".x", vec!["plain", "x"], "plain.x"),
        (
            "legacyPackages.aarch64-darwin.python3Packages.numpy",
            vec![
                "legacyPackages",
                "aarch64-darwin",
                "python3Packages",
                "numpy",
            ],
            "legacyPackages.aarch64-darwin.python3Packages.numpy",
        ),
        ("a.\"b/c\".d'", vec!["a", "b/c", "d'"], "a.\"b/c\".d'"),
        ("gtk+3", vec!["gtk+3"], "gtk+3"),
    ];
    for (input, segments, printed) in cases {
        let path = AttrPath::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(path.segments(), segments, "{input}");
        assert_eq!(path.to_string(), printed);
        assert_eq!(AttrPath::parse(printed).unwrap(), path);
    }
    assert_eq!(
        AttrPath::from_segments(["a", "b.c"]).unwrap().to_string(),
        "a.\"b.c\""
    );
    let rejected = [
        ("", "empty attribute path"),
        ("a..b", "empty segment at position 1"),
        ("a.", "empty segment at position 1"),
        (".a", "empty segment at position 0"),
        ("a.\"b", "unterminated `\"` in segment 1"),
        ("\"a\"b", "expected `.` after the quoted segment 0"),
        ("a b", "character ' ' at byte 1"),
        (
            "a/b",
            "character '/' in segment 0 must be inside a quoted segment",
        ),
        ("a.\"%41\"", "character '%'"),
        ("out^bin", "character '^'"),
        ("-a", "segment 0 starts with `-`"),
        ("\"\"", "empty segment at position 0"),
    ];
    for (input, needle) in rejected {
        let message = AttrPath::parse(input).expect_err(input).to_string();
        assert!(
            message.contains(needle),
            "`{input}` gave `{message}`, expected `{needle}`"
        );
    }
}

#[test]
fn installables_split_at_the_first_hash() {
    let installable = FlakeInstallable::parse("github:org/app#default").unwrap();
    assert_eq!(installable.flake.to_string(), "github:org/app");
    assert_eq!(installable.attr.as_ref().unwrap().segments(), ["default"]);
    assert_eq!(installable.to_string(), "github:org/app#default");
    let plain = FlakeInstallable::parse("nixpkgs").unwrap();
    assert_eq!(
        (plain.to_string(), plain.attr),
        ("flake:nixpkgs".to_owned(), None)
    );
    let quoted = ".#packages.x86_64-linux.\"a.b\"";
    assert_eq!(
        FlakeInstallable::parse(quoted).unwrap().to_nix_arg(),
        quoted
    );

    let message = |s: &str| FlakeInstallable::parse(s).unwrap_err().to_string();
    assert_eq!(
        message("github:org/app#"),
        "installable `github:org/app#`: empty attribute path after `#`"
    );
    assert!(message("github:org/app#a..b").contains("attribute path `a..b`: empty segment"));
    assert!(message("github:org#x").contains("expected `github:<owner>/<repo>"));
    assert!(message("-x#y").contains("command-line option"));
    assert!(message("#x").contains("empty flake reference"));
}

// ---- property tests: structurally generated refs round-trip through their printed form ----

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-][A-Za-z0-9._-]{0,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn git_ref() -> impl Strategy<Value = String> {
    "[A-Za-z0-9@][A-Za-z0-9_@+-]{0,8}(/[A-Za-z0-9][A-Za-z0-9_-]{0,5})?"
        .prop_filter("valid ref", |s| super::parse::is_valid_ref_for_tests(s))
}

fn rev() -> impl Strategy<Value = String> {
    "[0-9a-f]{40}"
}

fn decoded_path_segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~!$'()*+,;:@=&%?\\[\\]{}|<>^`\"\\\\é-]{1,10}"
        .prop_filter("no dot segments", |s| s != "." && s != "..")
}

fn url_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9._~-]{1,8}|%[0-9A-F]{2}[a-z]{1,3}", 1..4)
        .prop_map(|segments| format!("/{}", segments.join("/")))
        .prop_filter("decodable", |p| super::encoding::decode(p).is_ok())
}

fn host() -> impl Strategy<Value = String> {
    (
        "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,2}",
        prop::option::of(1u16..),
    )
        .prop_map(|(h, port)| port.map_or(h.clone(), |p| format!("{h}:{p}")))
}

fn source() -> impl Strategy<Value = FlakeSource> {
    let forge = prop_oneof![
        Just(Forge::GitHub),
        Just(Forge::GitLab),
        Just(Forge::SourceHut)
    ];
    prop_oneof![
        (forge, name(), name(), name()).prop_map(|(forge, owner, sub, repo)| {
            let owner = match forge {
                Forge::GitHub => owner,
                Forge::GitLab => format!("{owner}/{sub}"),
                Forge::SourceHut => format!("~{owner}"),
            };
            FlakeSource::Forge { forge, owner, repo }
        }),
        (0..4usize, host(), url_path()).prop_map(|(t, host, path)| {
            let (transport, url) = match t {
                0 => (GitTransport::Https, format!("https://{host}{path}")),
                1 => (GitTransport::Http, format!("http://{host}{path}")),
                2 => (GitTransport::Ssh, format!("ssh://git@{host}{path}")),
                _ => (GitTransport::File, format!("file://{path}")),
            };
            FlakeSource::Git { transport, url }
        }),
        (
            prop::collection::vec(decoded_path_segment(), 1..4),
            0..4usize,
            any::<bool>()
        )
            .prop_map(|(segments, start, bare)| {
                let prefix = ["/", "./", "../", ""][if bare { start % 3 } else { start }];
                FlakeSource::Path {
                    path: format!("{prefix}{}", segments.join("/")),
                    bare,
                }
            }),
        (0..3usize, host(), url_path(), 0..8usize, any::<bool>()).prop_map(
            |(t, host, path, ext, tarball)| {
                let ext = [
                    "", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst", ".zip",
                ][ext];
                let (transport, url) = match t {
                    0 => (FetchTransport::Https, format!("https://{host}{path}{ext}")),
                    1 => (FetchTransport::Http, format!("http://{host}{path}{ext}")),
                    _ => (FetchTransport::File, format!("file://{path}{ext}")),
                };
                if tarball {
                    FlakeSource::Tarball { transport, url }
                } else {
                    FlakeSource::File { transport, url }
                }
            }
        ),
        "[A-Za-z][A-Za-z0-9_-]{0,10}".prop_map(|id| FlakeSource::Indirect { id }),
    ]
}

prop_compose! {
    fn flake_ref()(
        source in source(),
        git_ref in prop::option::of(git_ref()),
        rev in prop::option::of(rev()),
        dir in prop::option::of(prop::collection::vec(decoded_path_segment(), 1..3)),
        host in prop::option::of(host()),
        nar_hash in prop::option::of(Just(NAR.to_owned())),
        last_modified in prop::option::of(any::<u64>()),
        submodules in prop::option::of(prop::bool::ANY),
    ) -> FlakeRef {
        let mut flake = FlakeRef {
            source,
            git_ref,
            rev,
            dir: dir.map(|segments| segments.join("/")),
            host,
            nar_hash,
            attrs: BTreeMap::new(),
        };
        // Keep only what the type allows, as the parser would.
        match &flake.source {
            FlakeSource::Forge { .. } => {
                if flake.rev.is_some() {
                    flake.git_ref = None;
                }
            }
            FlakeSource::Git { .. } => flake.host = None,
            FlakeSource::Path { .. } => (flake.git_ref, flake.host) = (None, None),
            FlakeSource::Tarball { .. } => {
                (flake.git_ref, flake.rev, flake.host) = (None, None, None);
            }
            FlakeSource::File { .. } => {
                (flake.git_ref, flake.rev, flake.host, flake.dir) = (None, None, None, None);
            }
            FlakeSource::Indirect { .. } => {
                flake.host = None;
                if flake.git_ref.as_deref().is_some_and(|r| r.contains('/')) {
                    flake.git_ref = None;
                }
            }
        }
        let typed = matches!(
            flake.source,
            FlakeSource::Forge { .. } | FlakeSource::Git { .. } | FlakeSource::Path { .. }
        );
        if let (Some(value), true) = (last_modified, typed) {
            flake.attrs.insert("lastModified".into(), value.to_string());
        }
        if let (Some(value), FlakeSource::Git { .. }) = (submodules, &flake.source) {
            flake.attrs.insert("submodules".into(), u8::from(value).to_string());
        }
        flake
    }
}

proptest! {
    #[test]
    fn printed_refs_parse_back_to_the_same_value(flake in flake_ref()) {
        let printed = flake.to_string();
        let reparsed = FlakeRef::parse(&printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&reparsed, &flake, "printed as {}", printed);
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    #[test]
    fn installables_round_trip(
        flake in flake_ref(),
        attr in prop::option::of(prop::collection::vec("[A-Za-z0-9_'+.][A-Za-z0-9_'+.-]{0,5}", 1..4)),
    ) {
        let attr = attr.map(|segments| AttrPath::from_segments(segments).unwrap());
        let installable = FlakeInstallable { flake, attr };
        let printed = installable.to_string();
        prop_assert_eq!(FlakeInstallable::parse(&printed).unwrap(), installable);
    }

    #[test]
    fn parse_print_parse_is_stable_on_arbitrary_text(text in "[ -~]{0,40}") {
        if let Ok(flake) = FlakeRef::parse(&text) {
            let printed = flake.to_string();
            prop_assert_eq!(FlakeRef::parse(&printed).unwrap(), flake);
        }
    }
}

proptest! {
    /// A local ref rewritten to a resolved path (what the node policy hands to Nix) prints and
    /// parses back to the same value, keeps its type and attributes, and names that path.
    #[test]
    fn local_refs_rewritten_to_a_resolved_path_round_trip(
        flake in flake_ref(),
        segments in prop::collection::vec(decoded_path_segment(), 1..4),
        subdir in prop::option::of(prop::collection::vec(name(), 1..3)),
        shallow in any::<bool>(),
    ) {
        let path = format!("/{}", segments.join("/"));
        let Some(rewritten) = flake.with_local_path(&path) else {
            let local = flake.is_local();
            prop_assert!(!local, "a local ref takes an absolute path");
            return Ok(());
        };
        prop_assert_eq!(rewritten.type_name(), flake.type_name());
        prop_assert_eq!(rewritten.attrs(), flake.attrs());
        let printed = rewritten.to_string();
        let reparsed = FlakeRef::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&reparsed, &rewritten);
        match reparsed.fetch_location().unwrap() {
            FetchLocation::Local { path: named, bare, .. } => {
                prop_assert_eq!(named, path.clone());
                prop_assert!(!bare);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        let bare = FlakeRef::parse(&format!("/{}", "x")).unwrap();
        let subdir = subdir.map(|s| s.join("/")).unwrap_or_default();
        let checkout = bare.as_git_checkout(&path, &subdir, shallow).unwrap();
        let printed = checkout.to_string();
        let reparsed = FlakeRef::parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&reparsed, &checkout);
        prop_assert_eq!(reparsed.scheme(), "git+file");
        prop_assert_eq!(reparsed.dir(), (!subdir.is_empty()).then_some(subdir.as_str()));
    }
}

#[test]
fn fetch_locations_fold_in_what_decides_the_host() {
    let location = |text: &str| FlakeRef::parse(text).unwrap().fetch_location();
    assert_eq!(
        location("github:o/r?host=GHE.example.com:8443").unwrap(),
        FetchLocation::Forge {
            forge: Forge::GitHub,
            host: "ghe.example.com:8443".into(),
            path: vec!["o".into(), "r".into()],
        }
    );
    assert_eq!(
        location("gitlab:a%2Fb/r").unwrap(),
        FetchLocation::Forge {
            forge: Forge::GitLab,
            host: "gitlab.com".into(),
            path: vec!["a".into(), "b".into(), "r".into()],
        }
    );
    assert_eq!(
        location("git+ssh://git@[2001:db8::1]:22/srv/r%5Bx").unwrap(),
        FetchLocation::Remote {
            scheme: "git+ssh",
            user: Some("git".into()),
            host: "[2001:db8::1]".into(),
            port: None,
            path: vec!["srv".into(), "r[x".into()],
        }
    );
    assert_eq!(
        location("https://Example.org:8443/a/b.tar.gz").unwrap(),
        FetchLocation::Remote {
            scheme: "tarball+https",
            user: None,
            host: "example.org".into(),
            port: Some(8443),
            path: vec!["a".into(), "b.tar.gz".into()],
        }
    );
    assert_eq!(
        location("git+file:///srv/a%5Bb").unwrap(),
        FetchLocation::Local {
            scheme: "git+file",
            path: "/srv/a[b".into(),
            bare: false,
        }
    );
    for bad in [
        "git+https://h.example/a/../b",
        "git+https://h.example/a/%2E/b",
        "git+https://h.example/a%2Fb",
        "https://h.example//b.tar.gz",
    ] {
        assert!(location(bad).is_err(), "{bad}");
    }
    assert!(
        FlakeRef::parse("git+https://h/r?submodules=1")
            .unwrap()
            .fetches_submodules()
    );
}
