//! The `containix` CLI and the node policy: `policy check` on the refs that got past string
//! prefixes, `config show` and where each value comes from, and hostile command-line arguments.
//! Nothing here reaches the nix-daemon: every refusal happens before. Run `cargo build -p
//! containix-cli` first; `$CONTAINIX_BIN` overrides where the binary is looked up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use containix_tests::containix_bin;
use serde_json::Value;

/// A scratch node: `srv/flakes/app`, `srv/other`, `srv/flakesX` and a policy allowing
/// `github:myorg/` and `srv/flakes`, with a namespace `team-a` of its own.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch { dir };
        for folder in ["srv/flakes/app", "srv/other", "srv/flakesX"] {
            std::fs::create_dir_all(scratch.root().join(folder)).unwrap();
        }
        std::fs::write(
            scratch.policy(),
            format!(
                "allowed-flake-prefixes = [\"github:myorg/\", \"{}\"]\n\
                 [namespaces.team-a]\nallowed-flake-prefixes = [\"github:team-a/\"]\n\
                 realise = \"build\"\n",
                scratch.rule()
            ),
        )
        .unwrap();
        scratch
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn policy(&self) -> PathBuf {
        self.root().join("policy.toml")
    }

    fn rule(&self) -> String {
        format!("path:{}/srv/flakes", self.root().display())
    }

    fn at(&self, relative: &str) -> String {
        format!("{}/{relative}", self.root().display())
    }

    /// Runs containix with `args`, with no policy in the environment.
    fn containix(&self, args: &[&str]) -> Output {
        Command::new(containix_bin())
            .args(args)
            .env_remove("CONTAINIX_CONFIG")
            .env("XDG_CACHE_HOME", self.root().join("cache"))
            .current_dir(self.root())
            .output()
            .unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} / {}", stdout(output), stderr(output));
    })
}

#[test]
fn policy_check_refuses_the_three_bypasses_naming_the_rule() {
    let scratch = Scratch::new();
    let policy = scratch.policy();
    let policy = policy.to_str().unwrap();
    let outside = format!("rule `{}` resolves outside", scratch.rule());
    for (reference, expected) in [
        (
            "github:myorg/repo?host=evil.example".to_owned(),
            "rule `github:myorg/` allows host github.com, not evil.example".to_owned(),
        ),
        (
            format!("path:{}", scratch.at("srv/flakes/../other")),
            outside.clone(),
        ),
        (
            format!("path:{}", scratch.at("srv/flakesX")),
            outside.clone(),
        ),
    ] {
        let output = scratch.containix(&["policy", "check", "--policy", policy, &reference]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{reference}: {}",
            stderr(&output)
        );
        assert!(
            stdout(&output).contains("verdict:    refused"),
            "{}",
            stdout(&output)
        );
        let err = stderr(&output);
        assert!(err.starts_with("containix: flake ref `"), "{err}");
        assert!(err.contains(&expected), "{reference}: {err}");

        let output =
            scratch.containix(&["policy", "check", "--json", "--policy", policy, &reference]);
        assert_eq!(output.status.code(), Some(1));
        let value = json(&output);
        assert_eq!(value["allowed"], false);
        assert!(
            value["error"].as_str().unwrap().contains(&expected),
            "{value}"
        );
        assert!(
            value["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["verdict"] == "refuses")
        );
    }

    // Allowed refs name the rule and the ref Nix would get.
    let app = scratch.at("srv/flakes/app");
    let output = scratch.containix(&[
        "policy",
        "check",
        "--json",
        "--policy",
        policy,
        &format!("path:{}/../flakes/app#default", scratch.at("srv/other")),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value = json(&output);
    assert_eq!(value["allowedBy"], scratch.rule());
    assert_eq!(value["evaluated"], format!("path:{app}#default"));
    // A namespace with its own rules, and one without.
    let team = |ns: &str, reference: &str| {
        scratch
            .containix(&[
                "policy",
                "check",
                "--policy",
                policy,
                "--namespace",
                ns,
                reference,
            ])
            .status
            .code()
    };
    assert_eq!(team("team-a", "github:team-a/app"), Some(0));
    assert_eq!(team("team-a", "github:myorg/app"), Some(1));
    assert_eq!(team("team-b", "github:myorg/app"), Some(0));
    assert_eq!(team("team-b", "github:team-a/app"), Some(1));
}

#[test]
fn resolving_commands_refuse_what_the_policy_refuses() {
    let scratch = Scratch::new();
    let policy = scratch.policy();
    let policy = policy.to_str().unwrap();
    let output = scratch.containix(&[
        "resolve",
        "--policy",
        policy,
        "github:myorg/repo?host=evil.example",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.starts_with(
            "containix: flake ref `github:myorg/repo?host=evil.example` is not allowed"
        ),
        "{err}"
    );
    assert!(
        err.contains("rule `github:myorg/` allows host github.com, not evil.example"),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with(&format!(
            "add a rule to `allowed-flake-prefixes` in {policy}"
        )),
        "{err}"
    );

    // Local refs are the CLI's user's own business (the `path:` rule it adds); pods never get
    // that exception.
    let other = format!("path:{}", scratch.at("srv/flakes/../other"));
    let cli = scratch.containix(&["policy", "check", "--cli", "--policy", policy, &other]);
    assert_eq!(cli.status.code(), Some(0), "{}", stderr(&cli));
    assert!(
        stdout(&cli).contains("allowed by `path:`"),
        "{}",
        stdout(&cli)
    );
    assert!(
        stdout(&cli).contains(&format!("evaluated:  path:{}", scratch.at("srv/other"))),
        "{}",
        stdout(&cli)
    );
}

#[test]
fn config_show_says_where_each_value_came_from() {
    let scratch = Scratch::new();
    let policy = scratch.policy();
    let policy_text = policy.to_str().unwrap();
    let origin = |value: &Value, key: &str| -> Value {
        value["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["key"] == key)
            .unwrap_or_else(|| panic!("{key}: {value}"))
            .clone()
    };

    // The node's view for a namespace: the namespace's table, then the file, then built-in.
    let output = scratch.containix(&[
        "config",
        "show",
        "--json",
        "--policy",
        policy_text,
        "--namespace",
        "team-a",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let node = json(&output);
    assert_eq!(node["view"], "node");
    assert_eq!(node["namespaceListed"], true);
    assert_eq!(node["fileOrigin"], "flag");
    let prefixes = origin(&node, "allowed-flake-prefixes");
    assert_eq!(prefixes["value"], serde_json::json!(["github:team-a/"]));
    assert_eq!(prefixes["origin"]["kind"], "namespace");
    assert_eq!(origin(&node, "realise")["value"], "build");
    assert_eq!(origin(&node, "max-timeout")["origin"]["kind"], "builtIn");

    // The CLI's view: --realise beats the file; the file beats the built-in values.
    let output = scratch.containix(&[
        "config",
        "show",
        "--json",
        "--policy",
        policy_text,
        "--realise",
        "substitute",
    ]);
    let cli = json(&output);
    assert_eq!(cli["view"], "cli");
    assert_eq!(origin(&cli, "realise")["value"], "substitute");
    assert_eq!(origin(&cli, "realise")["origin"]["kind"], "flag");
    assert_eq!(
        origin(&cli, "allowed-flake-prefixes")["origin"]["kind"],
        "file"
    );

    // CONTAINIX_CONFIG names the file when no flag does; the text form is a commented policy.
    let output = Command::new(containix_bin())
        .args(["config", "show"])
        .env("CONTAINIX_CONFIG", &policy)
        .env("XDG_CACHE_HOME", scratch.root().join("cache"))
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "# Policy file: {policy_text} (named by CONTAINIX_CONFIG)."
        )),
        "{text}"
    );
    assert!(text.contains("realise = \"build\""), "{text}");

    // Without any policy file the CLI builds (the node's shim and CSI plugin only substitute).
    let no_file = ["/etc/containix/policy.toml", "/etc/containix/config.toml"]
        .iter()
        .all(|path| !Path::new(path).exists());
    if no_file {
        let cli = json(&scratch.containix(&["config", "show", "--json"]));
        assert_eq!(cli["file"], Value::Null);
        assert_eq!(origin(&cli, "realise")["value"], "build");
        assert_eq!(origin(&cli, "realise")["origin"]["kind"], "builtIn");
        let node = json(&scratch.containix(&["config", "show", "--json", "--node"]));
        assert_eq!(origin(&node, "realise")["value"], "substitute");
    }
}

/// The command-line surface against hostile arguments (issue: adversarial inputs): each row is
/// refused, as a usage error (2) or a failure (1) naming the argument, in one short line.
#[test]
fn hostile_arguments_are_refused_naming_the_argument() {
    let scratch = Scratch::new();
    let policy = scratch.policy();
    let policy = policy.to_str().unwrap();
    // The kernel caps one argument at 128 KiB (MAX_ARG_STRLEN): the largest that reaches us.
    let big = format!("github:{}/r", "a".repeat(120 * 1024));
    let bad_policy = scratch.root().join("bad.toml");
    std::fs::write(
        &bad_policy,
        "allowed-flake-prefixes = [\" github:myorg/\"]\n",
    )
    .unwrap();
    let bad_policy = bad_policy.to_str().unwrap();
    let annotations = scratch.root().join("pod.env");
    std::fs::write(&annotations, "containix.dev/flake=--option\n").unwrap();
    let annotations = annotations.to_str().unwrap();
    #[rustfmt::skip]
    let rows: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["resolve", "-x"], 2, "unexpected argument"),
        (vec!["resolve", "--option", "substituters", "x"], 2, "unexpected argument"),
        (vec!["resolve", "--", "--option"], 1, "FLAKE-REF: flake ref `--option`: starts with `-`"),
        (vec!["resolve", "--", "-x"], 1, "starts with `-`"),
        (vec!["resolve", "github:o/r\nx"], 1, "character '\\n'"),
        (vec!["resolve", "github:o/r\u{1b}[2J"], 1, "character '\\u{1b}'"),
        (vec!["resolve", "--policy", policy, &big], 1, "allows myorg/…, not aaaa"),
        (vec!["resolve", "--policy", policy, "github:o/r?dir=../.."], 1, "invalid dir `../..`"),
        (vec!["resolve", "--policy", policy, "flake:nixpkgs"], 1, "no rule allows `flake:` refs"),
        (vec!["resolve", "--policy", policy, "nixpkgs"], 1, "no rule allows `flake:` refs"),
        (vec!["resolve", "--policy", policy, "GITHUB:myorg/r"], 1, "unknown scheme `GITHUB:`"),
        (vec!["resolve", "--policy", policy, " github:myorg/r"], 1, "character ' '"),
        (vec!["resolve", "--policy", policy, "github:MyOrg/r"], 1, "allows myorg/…, not MyOrg/r"),
        (vec!["resolve", "--store-paths", "/nix/store/../etc"], 1, "--store-paths"),
        (vec!["resolve", "--packages", "--option"], 2, "unexpected argument"),
        (vec!["resolve", "--packages=--option"], 1, "--packages: invalid package name"),
        (vec!["resolve", "--timeout", "-5s", "github:o/r"], 2, "unexpected argument"),
        (vec!["resolve", "--timeout=1h1h", "github:o/r"], 1, "--timeout"),
        (vec!["run", "--entrypoint=-rf", "--policy", policy, "github:myorg/r"], 1, "--entrypoint"),
        (vec!["resolve", "--annotations", annotations], 1, "containix.dev/flake"),
        (vec!["resolve", "--policy", bad_policy, "github:myorg/r"], 1, "`allowed-flake-prefixes`: \" github:myorg/\" is not a flake ref prefix"),
        (vec!["config", "show", "--policy", bad_policy], 1, "whitespace"),
        (vec!["resolve", "--policy", "/nonexistent/policy.toml", "github:o/r"], 1, "node policy /nonexistent/policy.toml"),
        (vec!["resolve", "--realise", "compile", "github:o/r"], 2, "invalid value 'compile'"),
        (vec!["policy", "check", "--namespace", "team-a", "--cli", "github:o/r"], 2, "cannot be used with"),
    ];
    for (args, code, needle) in rows {
        let shown: String = format!("{args:?}").chars().take(100).collect();
        let output = scratch.containix(&args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{shown}: {err}");
        assert!(err.contains(needle), "{shown}: {err}");
        if code == 1 {
            assert!(err.starts_with("containix: "), "{shown}: {err}");
            assert!(err.len() < 2000, "{shown}: {} bytes", err.len());
            assert_eq!(err.trim_end().lines().count(), 1, "{shown}: {err}");
        }
    }
    // A NUL cannot reach containix at all: the kernel's argv has no room for one.
    let nul = Command::new(containix_bin())
        .args(["resolve", "github:o/r\0x"])
        .output();
    assert_eq!(nul.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    // A namespace no policy table names (even a malformed one) gets the node-wide settings.
    let output = scratch.containix(&[
        "policy",
        "check",
        "--policy",
        policy,
        "--namespace",
        "team-a\n--option",
        "github:myorg/r",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
