//! Every command the docs show is run, and what they show it printing is what it prints.
//!
//! The documents are README.md, docs/*.md and every README.md under examples/. In them:
//!
//! - a ```` ```sh ```` block is a script: it runs, and every command in it must succeed;
//! - a ```` ```console ```` block is commands (`$ ` lines) each followed by the output it
//!   shows: the command runs and its stdout must match, line by line with runs of spaces
//!   equal, where `<...>` in a shown line stands for any text and a line `...` for any lines;
//! - in docs/json.md, a ```` ```json ```` block right after a `sh` block is the JSON schema
//!   the command's stdout must validate against;
//! - ```` ```sh cluster ```` and the other [`MARKERS`] label a block that cannot run here (it
//!   needs a Kubernetes cluster, a download or is CI itself). They are few ([`MAX_NOT_RUN`]),
//!   and the test prints them.
//!
//! The commands run as root on the test node, in a node of their own that starts as a fresh
//! clone: the working directory is a copy of the repository's files; `/` is the host's seen
//! through an overlay, so what they write to /etc, /usr/local or /var stays in the test; `/run`
//! and `/tmp` are private; the store and the nix-daemon are the test node's, and
//! `/etc/containerd/config.toml` and `/run/containerd/containerd.sock` are a private containerd's
//! (with the `containix` handler and the built shim), so `containix doctor`, `ctr` and `containix
//! node install --dry-run` act on it. There is no policy file and no containix cache: nothing was
//! run before. `PATH` starts with the built binaries: run `cargo build --workspace --bins` first.
//! Blocks run in document order, sharing that node.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use containix_testkit::containerd::{Containerd, ContainerdOptions};
use containix_testkit::fixtures::repo_root;
use containix_testkit::nix_daemon::NixDaemon;
use serde_json::Value;

/// Labels for blocks that are not run, with the reason each stands for.
const MARKERS: &[(&str, &str)] = &[
    (
        "cluster",
        "needs a Kubernetes cluster, or a node whose services systemd runs",
    ),
    (
        "network",
        "downloads what these machines cannot reach (nixpkgs, a cloud bucket)",
    ),
    (
        "ci",
        "is CI itself, or a release build: scripts/test.sh runs the suite and the example",
    ),
];

/// At most this many blocks may be labelled as not run.
const MAX_NOT_RUN: usize = 20;

/// A hang guard for one block, not a performance bound.
const BLOCK_LIMIT: Duration = Duration::from_secs(600);

/// A fenced code block of a document.
#[derive(Debug, Clone)]
struct Block {
    /// The document, relative to the repository root.
    file: PathBuf,
    /// The line of the opening fence (1-based).
    line: usize,
    /// The info string's words: language, then labels.
    info: Vec<String>,
    /// The lines between the fences, with the fence's indentation removed.
    body: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    fn language(&self) -> &str {
        self.info.first().map(String::as_str).unwrap_or("")
    }

    /// The label saying why it is not run, if any.
    fn not_run(&self) -> Option<&str> {
        self.info.get(1).map(String::as_str)
    }
}

/// README.md, docs/*.md and every README.md under examples/, in that order.
fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    let mut examples = Vec::new();
    let mut dirs = vec![root.join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|name| name == "README.md") {
                examples.push(path);
            }
        }
    }
    examples.sort();
    std::iter::once(root.join("README.md"))
        .chain(docs)
        .chain(examples)
        .map(|path| path.strip_prefix(&root).unwrap().to_owned())
        .collect()
}

/// The fenced code blocks of `text`.
fn blocks_of(file: &Path, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(Block, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(fence) = trimmed.strip_prefix("```") {
            match open.take() {
                Some((block, _)) => blocks.push(block),
                None => {
                    let block = Block {
                        file: file.to_owned(),
                        line: index + 1,
                        info: fence.split_whitespace().map(str::to_owned).collect(),
                        body: String::new(),
                    };
                    open = Some((block, indent));
                }
            }
            continue;
        }
        if let Some((block, indent)) = open.as_mut() {
            let content = line.get(*indent..).unwrap_or(line.trim_start());
            block.body.push_str(content);
            block.body.push('\n');
        }
    }
    blocks
}

fn all_blocks() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|doc| {
            let text = std::fs::read_to_string(repo_root().join(doc)).unwrap();
            blocks_of(doc, &text)
        })
        .collect()
}

/// Whether a block holds shell commands.
fn is_shell(block: &Block) -> bool {
    matches!(block.language(), "sh" | "console")
}

#[test]
fn shell_blocks_are_run_or_labelled_with_a_known_reason() {
    let blocks = all_blocks();
    let mut problems = Vec::new();
    let mut not_run = Vec::new();
    for block in &blocks {
        if matches!(block.language(), "bash" | "shell" | "shell-session" | "zsh") {
            problems.push(format!(
                "{}: a `{}` block; write `sh` (run by this test) or `console` (commands with their output)",
                block.at(),
                block.language()
            ));
        }
        if !is_shell(block) {
            continue;
        }
        match block.not_run() {
            None => {}
            Some(label) if MARKERS.iter().any(|(known, _)| *known == label) => {
                not_run.push(format!("{} ({label})", block.at()));
            }
            Some(label) => problems.push(format!(
                "{}: unknown label `{label}`; known: {:?}",
                block.at(),
                MARKERS.iter().map(|(m, _)| *m).collect::<Vec<_>>()
            )),
        }
        if block.language() == "console"
            && !block
                .body
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("$ "))
        {
            problems.push(format!("{}: a console block starts with `$ `", block.at()));
        }
    }
    assert!(
        blocks.iter().filter(|b| is_shell(b)).count() > 30,
        "too few shell blocks; is the parser broken?"
    );
    assert_eq!(problems, Vec::<String>::new());
    eprintln!("not run here:\n  {}", not_run.join("\n  "));
    assert!(
        not_run.len() <= MAX_NOT_RUN,
        "{} blocks are not run (at most {MAX_NOT_RUN}): {not_run:#?}",
        not_run.len()
    );
}

/// The test node the blocks run on: a private containerd and the built binaries.
struct DocNode {
    dir: tempfile::TempDir,
    containerd: Option<Containerd>,
    bin_dir: PathBuf,
}

/// Where one document's blocks run (see the module documentation): a fresh copy of the
/// repository and an overlay of `/` of their own, so each document starts from a fresh clone.
struct Scene {
    dir: PathBuf,
}

/// Enters a scene: mounts the overlay root and the private and shared folders in a new mount
/// namespace, then runs the script in the working directory.
const ENTER: &str = r#"set -eu
root=$1 upper=$2 work=$3 tmp=$4 keep=$5 bin=$6 socket=$7 cwd=$8 script=$9
mount -t overlay overlay -o "lowerdir=/,upperdir=$upper,workdir=$work" "$root"
for m in /proc /sys /dev /nix; do mount --rbind "$m" "$root$m"; done
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount --bind "$tmp" "$root/tmp"
mkdir -p "$root$keep" && mount --bind "$keep" "$root$keep"
mkdir -p "$root$bin" && mount --bind "$bin" "$root$bin"
mkdir -p "$root/run/containerd" && touch "$root/run/containerd/containerd.sock"
mount --bind "$socket" "$root/run/containerd/containerd.sock"
exec chroot "$root" /bin/bash -c 'cd "$1" && exec /bin/bash "$2"' doc-node "$cwd" "$script"
"#;

impl DocNode {
    async fn start() -> DocNode {
        NixDaemon::start_or_reuse().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("containix-docs-")
            .tempdir()
            .unwrap();
        let containerd = Containerd::start(ContainerdOptions {
            parent_dir: dir.path().to_owned(),
            ..ContainerdOptions::default()
        })
        .await
        .unwrap();
        std::fs::write(dir.path().join("enter.sh"), ENTER).unwrap();
        let bin_dir = containix_tests::containix_bin()
            .parent()
            .unwrap()
            .to_owned();
        DocNode {
            dir,
            containerd: Some(containerd),
            bin_dir,
        }
    }

    /// A fresh scene for `document`: a copy of the repository, no node policy, no cache of
    /// earlier runs, and the private containerd's config as `/etc/containerd/config.toml`.
    fn scene(&self, document: &Path) -> Scene {
        let name = document.to_string_lossy().replace(['/', '.'], "-");
        let dir = self.dir.path().join(name);
        for sub in ["upper", "work", "root", "tmp", "home"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let etc = dir.join("upper/etc/containerd");
        std::fs::create_dir_all(&etc).unwrap();
        let containerd = self.containerd.as_ref().unwrap();
        std::fs::copy(containerd.layout().config(), etc.join("config.toml")).unwrap();
        copy_repository(&dir.join("repo"));
        Scene { dir }
    }

    /// Runs `script` (bash) in `scene`; returns its output.
    fn run(&self, scene: &Scene, name: &str, script: &str) -> Output {
        let dir = &scene.dir;
        let file = dir.join(format!("{name}.sh"));
        std::fs::write(&file, script).unwrap();
        let socket = self.containerd.as_ref().unwrap().socket();
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.bin_dir.display()
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "bash"])
            .arg(self.dir.path().join("enter.sh"))
            .args([
                dir.join("root"),
                dir.join("upper"),
                dir.join("work"),
                dir.join("tmp"),
                self.dir.path().to_owned(),
                self.bin_dir.clone(),
                socket,
                dir.join("repo"),
                file,
            ])
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir.join("home"))
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + BLOCK_LIMIT;
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    async fn stop(mut self) {
        if let Some(containerd) = self.containerd.take() {
            containix_tests::stop_cleanly(containerd).await;
        }
    }
}

/// Copies the repository's files (tracked, and new ones git does not ignore) to `to`: what a
/// fresh clone of this checkout holds.
fn copy_repository(to: &Path) {
    let root = repo_root();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(listed.status.success(), "git ls-files: {listed:?}");
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let source = root.join(name);
        if !source.exists() {
            continue; // deleted in the working tree
        }
        let target = to.join(name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&source, &target).unwrap();
    }
}

/// A `console` block's commands with the output each shows.
fn console_steps(body: &str) -> Vec<(String, Vec<String>)> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut continued = false;
    for line in body.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push((command.to_owned(), Vec::new()));
            continued = command.ends_with('\\');
        } else if continued {
            let step = steps.last_mut().unwrap();
            step.0.push('\n');
            step.0.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(step) = steps.last_mut() {
            step.1.push(line.to_owned());
        }
    }
    steps
}

/// A `sh` block as a script: stops at the first failing command; a command whose line ends in
/// `# exits N` must exit with status N instead.
fn sh_script(body: &str) -> String {
    let mut script = String::from("set -eo pipefail\n");
    for line in body.lines() {
        let expected = line.rsplit_once("# exits ").and_then(|(command, status)| {
            let status: u8 = status.split_whitespace().next()?.parse().ok()?;
            Some((command, status))
        });
        match expected {
            Some((command, status)) => script.push_str(&format!(
                "if ( {command} ); then echo 'expected exit status {status}, got 0' >&2; exit 1; \
                 else got=$?; [ \"$got\" = {status} ] || {{ echo \"expected exit status {status}, got $got\" >&2; exit 1; }}; fi\n"
            )),
            None => {
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    script
}

/// Marks the start of a console command's output on stdout.
const STEP_MARK: &str = "@@containix-doc-step@@";

/// The script for a console block: each command after a marker line.
fn console_script(steps: &[(String, Vec<String>)]) -> String {
    let mut script = String::from("set -eo pipefail\n");
    for (command, _) in steps {
        script.push_str(&format!("echo '{STEP_MARK}'\n{command}\n"));
    }
    script
}

/// Runs of whitespace as one space, ends trimmed.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `actual` matches the shown line `shown`, where `<...>` stands for any text.
fn line_matches(shown: &str, actual: &str) -> bool {
    let shown = squeeze(shown);
    let actual = squeeze(actual);
    let mut literals = Vec::new();
    let mut rest = shown.as_str();
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        literals.push(&rest[..start]);
        rest = &rest[start + end + 1..];
    }
    literals.push(rest);
    if literals.len() == 1 {
        return shown == actual;
    }
    let (first, last) = (literals[0], literals[literals.len() - 1]);
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut middle = &actual[first.len()..actual.len() - last.len()];
    for literal in &literals[1..literals.len() - 1] {
        match middle.find(literal) {
            Some(at) => middle = &middle[at + literal.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the output lines `actual` match the shown lines (`...` stands for any lines).
fn output_matches(shown: &[String], actual: &[&str]) -> bool {
    match shown.split_first() {
        None => actual.iter().all(|line| line.trim().is_empty()),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && output_matches(rest, more)),
    }
}

/// What went wrong running a block, or `None`.
fn check_block(
    node: &DocNode,
    scene: &Scene,
    index: usize,
    block: &Block,
    schema: Option<&Value>,
) -> Option<String> {
    let name = format!("block-{index:03}");
    let (script, steps) = match block.language() {
        "console" => {
            let steps = console_steps(&block.body);
            (console_script(&steps), Some(steps))
        }
        _ => (sh_script(&block.body), None),
    };
    let output = node.run(scene, &name, &script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = |what: String| {
        Some(format!(
            "{}: {what}\n--- script\n{}--- stdout\n{stdout}--- stderr\n{stderr}",
            block.at(),
            block.body
        ))
    };
    if !output.status.success() {
        return report(format!("failed with {}", output.status));
    }
    if let Some(steps) = steps {
        let outputs: Vec<&str> = stdout.split(&format!("{STEP_MARK}\n")).skip(1).collect();
        for ((command, shown), actual) in steps.iter().zip(&outputs) {
            let lines: Vec<&str> = actual.lines().collect();
            if !output_matches(shown, &lines) {
                return report(format!(
                    "`{command}` printed\n{actual}which is not what the doc shows:\n{}",
                    shown.join("\n")
                ));
            }
        }
    }
    if let Some(schema) = schema {
        let value: Value = match serde_json::from_str(&stdout) {
            Ok(value) => value,
            Err(err) => return report(format!("stdout is not JSON: {err}")),
        };
        let validator = jsonschema::validator_for(schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        if !errors.is_empty() {
            return report(format!("does not match the schema in the doc: {errors:#?}"));
        }
    }
    None
}

/// The schema documented right after the `sh` block at `index`, in docs/json.md.
fn schema_after(blocks: &[Block], index: usize) -> Option<Value> {
    let block = &blocks[index];
    let next = blocks.get(index + 1)?;
    if block.file != Path::new("docs/json.md")
        || next.file != block.file
        || next.language() != "json"
    {
        return None;
    }
    Some(
        serde_json::from_str(&next.body)
            .unwrap_or_else(|err| panic!("{}: the schema is not JSON: {err}", next.at())),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_commands_run_as_shown_on_a_fresh_node() {
    let node = DocNode::start().await;
    let blocks = all_blocks();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut scene: Option<(PathBuf, Scene)> = None;
    for (index, block) in blocks.iter().enumerate() {
        if !is_shell(block) || block.not_run().is_some() {
            continue;
        }
        if scene.as_ref().is_none_or(|(doc, _)| *doc != block.file) {
            scene = Some((block.file.clone(), node.scene(&block.file)));
        }
        let (_, current) = scene.as_ref().unwrap();
        let schema = schema_after(&blocks, index);
        ran += 1;
        if let Some(failure) = check_block(&node, current, index, block, schema.as_ref()) {
            failures.push(failure);
        }
    }
    node.stop().await;
    assert!(ran > 20, "only {ran} blocks ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} blocks failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn console_output_matching() {
    assert!(line_matches(
        "<size>  /nix/store/x",
        "  1.89 MiB  /nix/store/x"
    ));
    assert!(line_matches("a <x> b <y> c", "a 1 b 2 c"));
    assert!(!line_matches("a <x> b", "a 1 c"));
    assert!(line_matches(
        "Hello from containix!",
        "Hello from containix!"
    ));
    let shown = ["first".to_owned(), "...".to_owned(), "last".to_owned()];
    assert!(output_matches(&shown, &["first", "x", "y", "last"]));
    assert!(output_matches(&shown, &["first", "last"]));
    assert!(!output_matches(&shown, &["first", "x"]));
    let steps = console_steps("$ a \\\n  --b\nout\n$ c\n");
    assert_eq!(steps[0], ("a \\\n  --b".to_owned(), vec!["out".to_owned()]));
    assert_eq!(steps[1].0, "c");
}

/// Every `containix` command, as its words, from the CLI's own `--help`.
fn cli_commands(prefix: &[String]) -> Vec<Vec<String>> {
    let output = Command::new(containix_tests::containix_bin())
        .args(prefix)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let Some(listed) = help.split("Commands:").nth(1) else {
        return vec![prefix.to_vec()];
    };
    let names: Vec<String> = listed
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    names
        .iter()
        .flat_map(|name| {
            let mut words = prefix.to_vec();
            words.push(name.clone());
            cli_commands(&words)
        })
        .collect()
}

/// Walks a schema: every object schema that lists `properties` forbids others, and every
/// property name is camelCase.
fn check_schema(schema: &Value, at: &str, problems: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                if map.get("additionalProperties") != Some(&Value::Bool(false)) {
                    problems.push(format!(
                        "{at}: an object schema without additionalProperties: false"
                    ));
                }
                for name in properties.keys() {
                    let camel = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && name.chars().all(|c| c.is_ascii_alphanumeric());
                    if !camel {
                        problems.push(format!("{at}: key `{name}` is not camelCase"));
                    }
                }
            }
            for (key, value) in map {
                check_schema(value, &format!("{at}/{key}"), problems);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_schema(item, &format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}

#[test]
fn every_json_output_has_a_strict_camel_case_schema_in_json_md() {
    let text = std::fs::read_to_string(repo_root().join("docs/json.md")).unwrap();
    let blocks = blocks_of(Path::new("docs/json.md"), &text);
    let mut problems = Vec::new();
    let mut with_json = Vec::new();
    for words in cli_commands(&[]) {
        let help = Command::new(containix_tests::containix_bin())
            .args(&words)
            .arg("--help")
            .output()
            .unwrap();
        if String::from_utf8_lossy(&help.stdout).contains("--json") {
            with_json.push(words);
        }
    }
    assert!(with_json.len() >= 8, "{with_json:?}");
    for words in &with_json {
        let heading = format!("## `containix {} --json`", words.join(" "));
        let Some(section) = text.split(&heading).nth(1) else {
            problems.push(format!("docs/json.md has no section `{heading}`"));
            continue;
        };
        let section = section.split("\n## ").next().unwrap();
        let command = format!("containix {} ", words.join(" "));
        let shown = blocks.iter().enumerate().any(|(i, block)| {
            block.language() == "sh"
                && block.body.starts_with(&command)
                && block.body.contains("--json")
                && section.contains(block.body.trim())
                && schema_after(&blocks, i).is_some()
        });
        if !shown {
            problems.push(format!(
                "{heading}: no `sh` block running it followed by its `json` schema"
            ));
        }
    }
    for i in 0..blocks.len() {
        if let Some(schema) = schema_after(&blocks, i) {
            if let Err(err) = jsonschema::validator_for(&schema) {
                problems.push(format!("{}: not a valid schema: {err}", blocks[i + 1].at()));
            }
            check_schema(&schema, &blocks[i + 1].at(), &mut problems);
        }
    }
    assert_eq!(problems, Vec::<String>::new());
}
