//! The flake and the NixOS module, checked without nixpkgs (none is available offline):
//! every Nix file parses; nix/policy.nix, the pure part of the module, is evaluated with
//! `nix-instantiate` and what it renders is fed to containix's own policy parser; the module
//! declares one option per policy key; docs/nixos.md documents every option.
//!
//! Needs `nix-instantiate` (Nix 2.8 is enough: no flakes involved).

use std::path::Path;
use std::process::Command;

use containix_testkit::fixtures::repo_root;

use containix_core::request::flake_ref::FlakeRef;
use containix_core::request::policy::{NodePolicy, Realise};
use serde_json::{Value, json};

/// Runs `nix-instantiate` with `args`; returns its stdout, or its stderr as the error.
fn nix_instantiate(args: &[&str]) -> Result<String, String> {
    let output = Command::new("nix-instantiate")
        .arg("--readonly-mode")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("running nix-instantiate (install Nix)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

/// Evaluates `expr`, a function of `{ policy, arg }` where `policy` is nix/policy.nix and `arg`
/// the JSON value given, to JSON.
fn eval_policy(expr: &str, arg: &Value) -> Result<Value, String> {
    let policy = repo_root().join("nix/policy.nix");
    let function = format!(
        "{{ arg }}: let policy = import {}; in ({expr}) {{ inherit policy; arg = builtins.fromJSON arg; }}",
        policy.display()
    );
    let out = nix_instantiate(&[
        "--eval",
        "--strict",
        "--json",
        "--argstr",
        "arg",
        &arg.to_string(),
        "--expr",
        &function,
    ])?;
    Ok(serde_json::from_str(&out).expect("nix-instantiate --json prints JSON"))
}

/// `render { values = arg.values; extraPolicy = arg.extra; }` from nix/policy.nix.
fn render(values: &Value, extra: &Value) -> Result<Value, String> {
    eval_policy(
        "{ policy, arg }: policy.render { values = arg.values; extraPolicy = arg.extra; }",
        &json!({ "values": values, "extra": extra }),
    )
}

/// The policy as the TOML file the module writes. The policy holds strings and lists of them
/// (a JSON string or array of strings is also a valid TOML value), and tables of such tables
/// (`[namespaces.<name>]`), written after the top-level keys as TOML requires.
fn to_toml(policy: &Value) -> String {
    let table = policy.as_object().expect("the policy is an attribute set");
    let mut text = String::new();
    let mut tables = String::new();
    for (key, value) in table {
        assert!(!value.is_null(), "`{key}`: null is not a policy value");
        let Some(subtables) = value.as_object() else {
            text.push_str(&format!("{key} = {value}\n"));
            continue;
        };
        for (name, settings) in subtables {
            tables.push_str(&format!("[{key}.{name}]\n"));
            for (setting, value) in settings.as_object().expect("a table of tables") {
                assert!(
                    !value.is_object() && !value.is_null(),
                    "`{key}.{name}.{setting}`: not a policy value"
                );
                tables.push_str(&format!("{setting} = {value}\n"));
            }
        }
    }
    text + &tables
}

fn parse(policy: &Value) -> Result<NodePolicy, String> {
    NodePolicy::from_toml(&to_toml(policy), Path::new("/etc/containix/policy.toml"))
        .map_err(|err| err.to_string())
}

/// Option paths under `services.containix` declared in nix/module.nix: lines of the form
/// `name = mkOption {`, `csi.enable = lib.mkEnableOption "..."`.
fn module_options() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("nix/module.nix")).unwrap();
    let declarations = ["mkOption", "mkEnableOption", "mkPackageOption"];
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(" = ")?;
            let function = value.strip_prefix("lib.").unwrap_or(value);
            let declares = declarations
                .iter()
                .any(|d| function.starts_with(&format!("{d} ")));
            let plain_name = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
            (declares && plain_name).then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn every_nix_file_parses() {
    let root = repo_root();
    let mut files = vec![root.join("flake.nix")];
    let mut dirs = vec![root.join("nix")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "nix") {
                files.push(path);
            }
        }
    }
    assert!(
        files.len() >= 5,
        "expected flake.nix and nix/*.nix: {files:?}"
    );
    for file in &files {
        let path = file.to_str().unwrap();
        if let Err(err) = nix_instantiate(&["--parse", path]) {
            panic!("{path} does not parse:\n{err}");
        }
    }
}

#[test]
fn module_defaults_are_containix_defaults() {
    let defaults = eval_policy("{ policy, arg }: policy.defaults", &json!(null)).unwrap();
    let rendered = render(&defaults, &json!({})).unwrap();
    let mut policy = parse(&rendered).unwrap();
    policy.source = None;
    assert_eq!(policy, NodePolicy::default(), "rendered: {rendered}");
}

#[test]
fn every_option_renders_a_key_the_policy_parser_accepts() {
    let values = json!({
        "allowedFlakePrefixes": ["github:my-org/", "path:/srv/flakes/"],
        "realise": "build",
        "defaultTimeout": "30s",
        "maxTimeout": "5m",
        "system": "aarch64-linux",
        "daemonSocket": "/run/nix/socket",
        "stateDir": "/srv/containix",
        "nixCommand": "/run/current-system/sw/bin/nix",
        "packageSet": "github:NixOS/nixpkgs/nixos-25.11",
        "namespaces": {
            "team-a": {
                "allowedFlakePrefixes": ["github:team-a/"],
                "realise": "build",
                "defaultTimeout": null,
                "maxTimeout": "30m",
            },
            "team-b": {
                "allowedFlakePrefixes": null,
                "realise": "substitute",
                "defaultTimeout": null,
                "maxTimeout": null,
            },
        },
    });
    let keys = eval_policy("{ policy, arg }: policy.keys", &json!(null)).unwrap();
    let mut options: Vec<_> = keys.as_object().unwrap().keys().collect();
    let mut given: Vec<_> = values.as_object().unwrap().keys().collect();
    options.sort();
    given.sort();
    assert_eq!(options, given, "this test must set every policy option");

    let rendered = render(&values, &json!({})).unwrap();
    assert_eq!(
        rendered.as_object().unwrap().len(),
        keys.as_object().unwrap().len()
    );
    let policy = parse(&rendered).unwrap();
    assert_eq!(policy.realise, Realise::Build);
    assert_eq!(
        policy.allowed_prefix_texts(),
        ["github:my-org/", "path:/srv/flakes/"]
    );
    let flake = |text: &str| FlakeRef::parse(text).unwrap();
    assert!(policy.check_flake_ref(&flake("github:my-org/app")).is_ok());
    assert!(policy.check_flake_ref(&flake("github:other/app")).is_err());
    assert_eq!(policy.default_timeout.as_secs(), 30);
    assert_eq!(policy.max_timeout.as_secs(), 300);
    assert_eq!(policy.system, "aarch64-linux");
    assert_eq!(policy.daemon_socket, Path::new("/run/nix/socket"));
    assert_eq!(policy.state_dir, Path::new("/srv/containix"));
    assert_eq!(
        policy.nix_command,
        Path::new("/run/current-system/sw/bin/nix")
    );
    assert_eq!(
        policy.package_set.as_deref(),
        Some("github:NixOS/nixpkgs/nixos-25.11")
    );
    let team_a = policy.scope(Some("team-a"));
    assert_eq!(team_a.namespace(), Some("team-a"));
    assert_eq!(team_a.realise(), Realise::Build);
    assert_eq!(team_a.max_timeout().as_secs(), 1800);
    assert_eq!(
        team_a.default_timeout().as_secs(),
        30,
        "unset: the node-wide value"
    );
    assert!(team_a.check_flake_ref(&flake("github:team-a/app")).is_ok());
    assert!(team_a.check_flake_ref(&flake("github:my-org/app")).is_err());
    let team_b = policy.scope(Some("team-b"));
    assert_eq!(team_b.realise(), Realise::Substitute);
    assert!(team_b.check_flake_ref(&flake("github:my-org/app")).is_ok());
}

#[test]
fn unset_options_leave_their_keys_out() {
    let rendered = render(
        &json!({ "realise": "build", "packageSet": null, "system": null, "namespaces": {} }),
        &json!({}),
    )
    .unwrap();
    assert_eq!(rendered, json!({ "realise": "build" }));
}

#[test]
fn extra_policy_keys_reach_the_strict_parser() {
    // A key the parser does not know is passed through, and containix refuses the file.
    let rendered = render(&json!({}), &json!({ "realize": "build" })).unwrap();
    let err = parse(&rendered).unwrap_err();
    assert!(err.contains("unknown field `realize`"), "{err}");

    // A key an option already writes is an evaluation error naming that option.
    let err = render(
        &json!({ "realise": "build" }),
        &json!({ "realise": "substitute" }),
    )
    .unwrap_err();
    assert!(
        err.contains("services.containix.realise already writes"),
        "{err}"
    );
}

#[test]
fn the_module_declares_one_option_per_policy_key() {
    let options = module_options();
    let keys = eval_policy("{ policy, arg }: policy.keys", &json!(null)).unwrap();
    for option in keys.as_object().unwrap().keys() {
        assert!(
            options.contains(option),
            "nix/policy.nix maps `{option}` but nix/module.nix declares no such option: {options:?}"
        );
    }
}

#[test]
fn every_module_option_is_documented() {
    let options = module_options();
    for expected in [
        "enable",
        "package",
        "extraPolicy",
        "csi.enable",
        "containerd.enable",
    ] {
        assert!(
            options.iter().any(|o| o == expected),
            "option scan missed `{expected}`: {options:?}"
        );
    }
    let docs = std::fs::read_to_string(repo_root().join("docs/nixos.md")).unwrap();
    let missing: Vec<_> = options
        .iter()
        .filter(|option| !docs.contains(&format!("`services.containix.{option}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/nixos.md does not document {missing:?}"
    );
}

/// The options of the `namespaces` submodule, and the `### ` option headings of docs/nixos.md:
/// each submodule option is named in the `namespaces` section, and each heading is an option
/// nix/module.nix declares (the docs describe no option that does not exist).
#[test]
fn namespace_suboptions_are_documented_and_every_documented_option_exists() {
    let module = std::fs::read_to_string(repo_root().join("nix/module.nix")).unwrap();
    let start = module.find("namespaces = mkOption {").unwrap();
    let end = start + module[start..].find("extraPolicy = mkOption {").unwrap();
    let suboptions: Vec<&str> = module[start..end]
        .lines()
        .filter_map(|line| line.trim().strip_suffix(" = mkOption {"))
        .filter(|name| *name != "namespaces")
        .collect();
    assert_eq!(
        suboptions,
        [
            "allowedFlakePrefixes",
            "realise",
            "defaultTimeout",
            "maxTimeout"
        ],
        "the scan of the namespaces submodule"
    );
    let docs = std::fs::read_to_string(repo_root().join("docs/nixos.md")).unwrap();
    let section = docs
        .split("### `services.containix.namespaces`")
        .nth(1)
        .unwrap()
        .split("\n### ")
        .next()
        .unwrap();
    for option in &suboptions {
        assert!(
            section.contains(&format!("`{option}`")),
            "docs/nixos.md's namespaces section does not name `{option}`"
        );
    }
    let options = module_options();
    for heading in docs
        .lines()
        .filter_map(|l| l.strip_prefix("### `services.containix."))
    {
        let name = heading.trim_end_matches('`');
        assert!(
            options.iter().any(|o| o == name),
            "docs/nixos.md documents `services.containix.{name}`, which nix/module.nix does not declare"
        );
    }
}

/// flake.lock pins every input flake.nix declares: each with a full commit and the NAR hash of
/// its source, and the `original` flake.nix names, so `nix build` of this flake is reproducible.
#[test]
fn the_lock_pins_every_input_of_the_flake() {
    let flake = std::fs::read_to_string(repo_root().join("flake.nix")).unwrap();
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("flake.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["version"], 7);
    let root = lock["root"].as_str().unwrap();
    let inputs = lock["nodes"][root]["inputs"].as_object().unwrap();
    // `inputs.<name>.url = "<url>";` lines of flake.nix.
    let declared: Vec<(&str, &str)> = flake
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("inputs.")?;
            let (name, url) = rest.split_once(".url = \"")?;
            Some((name, url.strip_suffix("\";")?))
        })
        .collect();
    assert!(!declared.is_empty(), "no inputs found in flake.nix");
    assert_eq!(
        inputs.keys().map(String::as_str).collect::<Vec<_>>(),
        declared.iter().map(|(name, _)| *name).collect::<Vec<_>>()
    );
    for (name, url) in declared {
        let node = &lock["nodes"][inputs[name].as_str().unwrap()];
        let locked = &node["locked"];
        let rev = locked["rev"].as_str().unwrap();
        assert!(
            rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: rev {rev}"
        );
        let nar_hash = locked["narHash"].as_str().unwrap();
        assert!(
            nar_hash.starts_with("sha256-") && nar_hash.len() == 51 && nar_hash.ends_with('='),
            "{name}: narHash {nar_hash}"
        );
        let original = &node["original"];
        let (kind, rest) = url.split_once(':').unwrap();
        assert_eq!(original["type"], kind, "{name}");
        assert_eq!(
            format!(
                "{}/{}/{}",
                original["owner"].as_str().unwrap(),
                original["repo"].as_str().unwrap(),
                original["ref"].as_str().unwrap()
            ),
            rest,
            "{name}: original differs from flake.nix's url"
        );
    }
}
