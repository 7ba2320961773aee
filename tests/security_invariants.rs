//! Invariants SECURITY.md states about containix's own code, checked on its sources: no program
//! or library of containix runs a shell, so no pod-supplied string can reach one. (Programs are
//! started with argument vectors; `nix eval` gets the flake ref after `--`, see
//! `resolve::flake_eval::tests::command_is_safe_by_construction`.)

use std::path::{Path, PathBuf};

use containix_testkit::fixtures::repo_root;
use containix_tests::source_scan::code_tokens;

const SHELLS: [&str; 6] = ["sh", "bash", "dash", "zsh", "/bin/sh", "/bin/bash"];

/// The crates that run on a node or a workstation (the testkit and tests are not shipped).
const SHIPPED: [&str; 4] = [
    "crates/containix-core/src",
    "crates/containix-shim/src",
    "crates/containix-csi/src",
    "crates/containix-cli/src",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The code of `text` before its test module (test modules come last in this code base).
fn shipped_part(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// `Command::new("<shell>")` and `"-c"` arguments in shipped code.
fn shell_uses(text: &str) -> Vec<String> {
    let tokens = code_tokens(shipped_part(text));
    let mut found = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if token == "\"-c\"" {
            found.push("\"-c\"".to_owned());
        }
        let starts_program = token == "Command"
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && tokens.get(i + 2).is_some_and(|t| t == "new")
            && tokens.get(i + 3).is_some_and(|t| t == "(");
        if let Some(program) = tokens.get(i + 4).filter(|_| starts_program)
            && SHELLS
                .iter()
                .any(|shell| *program == format!("\"{shell}\""))
        {
            found.push(format!("Command::new({program})"));
        }
    }
    found
}

#[test]
fn no_shipped_code_runs_a_shell() {
    let mut files = Vec::new();
    for dir in SHIPPED {
        rust_files(&repo_root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "{} files", files.len());
    let offenders: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            shell_uses(&text)
                .into_iter()
                .map(move |use_| format!("{}: {use_}", file.display()))
        })
        .collect();
    assert_eq!(offenders, Vec::<String>::new());
}

#[test]
fn the_scan_sees_a_shell() {
    let text = "fn f() { std::process::Command::new(\"sh\").args([\"-c\", x]); }";
    assert_eq!(shell_uses(text), ["Command::new(\"sh\")", "\"-c\""]);
    assert!(shell_uses("#[cfg(test)]\nmod tests { fn f() { Command::new(\"sh\"); } }").is_empty());
}
