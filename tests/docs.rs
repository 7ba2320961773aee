//! The operator docs stay true to the repository: every relative link in README.md and docs/*.md
//! names an existing file, every `containix <command>` in docs/cli.md is a command the built CLI
//! knows, and every troubleshooting entry quotes a message that occurs in the crates' sources.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use containix_testkit::fixtures::repo_root;

/// README.md and every docs/*.md, as (path relative to the root, text).
fn documents() -> Vec<(PathBuf, String)> {
    let root = repo_root();
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(&root).unwrap().to_owned())
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(root.join(&path)).unwrap();
            (path, text)
        })
        .collect()
}

/// The targets of Markdown links `[text](target)` outside code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// Collapses `a/../b` and `./` so a link can be compared with a repository path.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn relative_links_resolve() {
    let root = repo_root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (doc, text) in documents() {
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let path = normalise(&doc.parent().unwrap().join(file));
            checked += 1;
            if !root.join(&path).exists() {
                broken.push(format!("{}: {target}", doc.display()));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found; is the parser broken?"
    );
    assert_eq!(broken, Vec::<String>::new(), "links to missing files");
}

/// The commands docs/cli.md documents: the words after `containix ` in its `## ` headings.
fn documented_commands() -> Vec<Vec<String>> {
    let text = fs::read_to_string(repo_root().join("docs/cli.md")).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("## `containix "))
        .map(|rest| {
            rest.trim_end_matches('`')
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn cli_reference_names_real_commands() {
    let commands = documented_commands();
    assert!(commands.len() >= 10, "{commands:?}");
    let bin = containix_tests::containix_bin();
    let mut unknown = Vec::new();
    for words in &commands {
        let output = Command::new(&bin)
            .args(words)
            .arg("--help")
            .output()
            .unwrap();
        if output.status.success() {
            continue;
        }
        unknown.push(format!(
            "containix {}: {}",
            words.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    assert_eq!(unknown, Vec::<String>::new(), "documented but unknown");

    // Every top-level command the CLI lists is documented.
    let help = Command::new(&bin).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let listed: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    for name in listed {
        assert!(
            commands.iter().any(|words| words[0] == name),
            "`containix {name}` is missing from docs/cli.md"
        );
    }
}

/// Every `.rs` file under crates/*/src.
fn source_texts() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut texts = Vec::new();
    for krate in fs::read_dir(repo_root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            walk(&src, &mut texts);
        }
    }
    texts
}

/// The troubleshooting entries that quote containix: `### ` headings that are one code span.
fn quoted_messages() -> Vec<String> {
    let text = fs::read_to_string(repo_root().join("docs/troubleshooting.md")).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("### `"))
        .map(|rest| {
            rest.strip_suffix('`')
                .unwrap_or_else(|| panic!("heading is not one code span: ### `{rest}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn troubleshooting_quotes_real_messages() {
    let messages = quoted_messages();
    assert!(messages.len() >= 20, "{messages:?}");
    let sources = source_texts();
    let missing: Vec<&String> = messages
        .iter()
        .filter(|message| !sources.iter().any(|text| text.contains(message.as_str())))
        .collect();
    assert_eq!(
        missing,
        Vec::<&String>::new(),
        "messages quoted in docs/troubleshooting.md that no source under crates/*/src contains"
    );
}

/// Every binary answers `--help` and `--version` as containerd-shim-runc-v2 and
/// csi-driver-host-path do: the text, exit status 0, nothing else done.
#[test]
fn every_binary_answers_help_and_version() {
    let shim = containix_testkit::containerd::find_shim_binary().expect("build containix-shim");
    let binaries = [
        ("containix", containix_tests::containix_bin()),
        ("containerd-shim-containix-v1", shim),
        ("containix-csi", containix_tests::csi_bin()),
    ];
    let version = containix_core::VERSION;
    for (name, bin) in &binaries {
        for flag in ["--help", "-h"] {
            let out = Command::new(bin).arg(flag).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name} {flag}: {out:?}");
            assert!(text.contains("Usage: "), "{name} {flag}: {text}");
        }
        let out = Command::new(bin).arg("--version").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name} --version: {out:?}");
        assert_eq!(text.trim(), format!("{name} {version}"), "{name} --version");
    }
}

/// The README's and docs/policy.md's lists of the default allowed prefixes are the code's.
#[test]
fn documented_default_prefixes_are_the_codes() {
    use containix_core::request::policy::node_policy::DEFAULT_ALLOWED_PREFIXES;
    let spans = |list: &[&str]| {
        list.iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let expected = format!(
        "By default only remote flake refs are allowed ({}, each at",
        spans(DEFAULT_ALLOWED_PREFIXES)
    );
    assert!(
        squeeze(&readme).contains(&squeeze(&expected)),
        "README.md's default prefixes differ from {DEFAULT_ALLOWED_PREFIXES:?}"
    );
    let quoted = DEFAULT_ALLOWED_PREFIXES
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let policy = fs::read_to_string(repo_root().join("docs/policy.md")).unwrap();
    assert!(
        policy.contains(&format!("`[{quoted}]`")),
        "docs/policy.md's default differs from {DEFAULT_ALLOWED_PREFIXES:?}"
    );
}

/// Runs of whitespace (line breaks included) as one space.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
