//! No import cycles between source files, in any crate of the workspace.
//!
//! Every `crate::`, `super::` and `self::` path a file names (in `use` declarations and in
//! code, test modules included) is an edge from that file to the file of the deepest module the
//! path reaches. A cycle in that graph means two files need each other, and the guide's rule is
//! that the shared part then belongs in a third file. Paths through a re-export count as edges
//! to the re-exporting file, so code inside a crate names the module that defines an item.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use containix_testkit::fixtures::repo_root;
use containix_tests::source_scan::code_tokens;

/// A module of one crate: its path from the crate root and the file that holds it.
#[derive(Debug)]
struct Module {
    file: PathBuf,
}

/// The modules of one crate, keyed by their path (`["daemon", "client"]`).
struct CrateModules {
    modules: BTreeMap<Vec<String>, Module>,
}

/// Walks a crate from its root file, following `mod name;` to files and `mod name { .. }` to
/// inline modules (which belong to the file that holds them).
fn load_crate(root: &Path) -> CrateModules {
    let mut modules = BTreeMap::new();
    let mut pending = vec![(Vec::<String>::new(), root.to_path_buf(), true)];
    while let Some((path, file, owns_dir)) = pending.pop() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let dir = if owns_dir {
            file.parent().unwrap().to_path_buf()
        } else {
            file.with_extension("")
        };
        let tokens = code_tokens(&text);
        let mut scopes: Vec<(Vec<String>, usize)> = vec![(path.clone(), 0)];
        let mut depth = 0usize;
        let mut i = 0;
        while i < tokens.len() {
            match tokens[i].as_str() {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if scopes.len() > 1 && scopes.last().unwrap().1 == depth {
                        scopes.pop();
                    }
                }
                "mod" if i + 2 < tokens.len() && is_ident(&tokens[i + 1]) => {
                    let name = tokens[i + 1].clone();
                    let current = scopes.last().unwrap().0.clone();
                    let mut child = current.clone();
                    child.push(name.clone());
                    if tokens[i + 2] == ";" {
                        // Out-of-line modules nested in inline ones are not used here.
                        let sub = current[path.len()..]
                            .iter()
                            .fold(dir.clone(), |d, s| d.join(s));
                        let flat = sub.join(format!("{name}.rs"));
                        let nested = sub.join(&name).join("mod.rs");
                        let custom = path_attribute(&tokens, i).map(|p| sub.join(p));
                        let (child_file, child_owns_dir) = match custom {
                            Some(p) => (p, true),
                            None if flat.exists() => (flat, false),
                            None => (nested, true),
                        };
                        pending.push((child, child_file, child_owns_dir));
                    } else if tokens[i + 2] == "{" {
                        modules.insert(child.clone(), Module { file: file.clone() });
                        scopes.push((child, depth));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        modules.insert(path, Module { file });
    }
    CrateModules { modules }
}

/// `#[path = "x.rs"] mod name;`: the attribute's value, if the tokens right before `mod`
/// (after any visibility) are that attribute.
fn path_attribute(tokens: &[String], mod_index: usize) -> Option<String> {
    let mut end = mod_index;
    while end > 0
        && matches!(
            tokens[end - 1].as_str(),
            "pub" | "(" | "crate" | ")" | "super"
        )
    {
        end -= 1;
    }
    let attribute = tokens.get(end.checked_sub(6)?..end)?;
    let shape = [
        &attribute[0],
        &attribute[1],
        &attribute[2],
        &attribute[3],
        &attribute[5],
    ];
    (shape == ["#", "[", "path", "=", "]"]).then(|| attribute[4].trim_matches('"').to_owned())
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && token.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The module path each token position is in, recomputed the way [`load_crate`] walks a file.
fn module_paths_of_file(file_module: &[String], tokens: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut scopes: Vec<(Vec<String>, usize)> = vec![(file_module.to_vec(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if scopes.len() > 1 && scopes.last().unwrap().1 == depth {
                    scopes.pop();
                }
            }
            "mod" if i + 2 < tokens.len() && is_ident(&tokens[i + 1]) && tokens[i + 2] == "{" => {
                let mut child = scopes.last().unwrap().0.clone();
                child.push(tokens[i + 1].clone());
                for _ in 0..3 {
                    out.push(scopes.last().unwrap().0.clone());
                }
                scopes.push((child, depth));
                depth += 1;
                i += 3;
                continue;
            }
            _ => {}
        }
        out.push(scopes.last().unwrap().0.clone());
        i += 1;
    }
    out
}

/// Every path a file names that starts with `crate`, `super`, `self` or the name of a child
/// module (`use client::Client;` in a `mod.rs`), expanded through `use` groups
/// (`use crate::a::{b, c::d}`), with the module it appears in.
fn named_paths(
    crate_modules: &CrateModules,
    tokens: &[String],
    scopes: &[Vec<String>],
) -> Vec<(Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let is_child = || {
            let mut child = scopes[i].clone();
            child.push(t.to_owned());
            crate_modules.modules.contains_key(&child)
        };
        let starts_path = (matches!(t, "crate" | "super" | "self") || (is_ident(t) && is_child()))
            && tokens.get(i + 1).is_some_and(|n| n == "::")
            && (i == 0 || tokens[i - 1] != "::");
        if !starts_path {
            i += 1;
            continue;
        }
        let scope = scopes[i].clone();
        let (paths, next) = parse_use_tree(tokens, i, Vec::new());
        for p in paths {
            out.push((scope.clone(), p));
        }
        i = next.max(i + 1);
    }
    out
}

/// Parses `a::b::{c, d::e}` starting at `i`; returns the leaf paths and the index after the tree.
fn parse_use_tree(
    tokens: &[String],
    mut i: usize,
    prefix: Vec<String>,
) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    loop {
        let Some(t) = tokens.get(i) else {
            return (vec![path], i);
        };
        if t == "{" {
            let mut leaves = Vec::new();
            i += 1;
            loop {
                match tokens.get(i).map(String::as_str) {
                    None => return (leaves, i),
                    Some("}") => return (leaves, i + 1),
                    Some(",") => i += 1,
                    Some(_) => {
                        let (mut sub, next) = parse_use_tree(tokens, i, path.clone());
                        leaves.append(&mut sub);
                        // Skip `as alias` and anything else up to the separator.
                        i = next;
                        while let Some(s) = tokens.get(i) {
                            if s == "," || s == "}" {
                                break;
                            }
                            i += 1;
                        }
                    }
                }
            }
        }
        if is_ident(t) || t == "*" {
            path.push(t.clone());
            i += 1;
            if tokens.get(i).is_some_and(|s| s == "::") {
                i += 1;
                continue;
            }
        }
        return (vec![path], i);
    }
}

/// The module a path reaches: `crate`, `super` and `self` made absolute, then the longest
/// prefix that is a module of the crate.
fn resolve(crate_modules: &CrateModules, scope: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut absolute: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("self") => {
            absolute = scope.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            absolute = scope.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                absolute.pop()?;
                rest = &rest[1..];
            }
        }
        Some(child) => {
            absolute = scope.to_vec();
            absolute.push(child.to_owned());
            rest = &path[1..];
        }
        None => return None,
    }
    absolute.extend(rest.iter().cloned());
    (0..=absolute.len())
        .rev()
        .map(|n| absolute[..n].to_vec())
        .find(|prefix| crate_modules.modules.contains_key(prefix))
}

/// The crate roots of the workspace: every crate's `src/lib.rs`, `src/main.rs` and
/// `src/bin/*.rs`, and each target the tests and benches manifests name by `path`.
fn crate_roots(root: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        for name in ["lib.rs", "main.rs"] {
            if src.join(name).exists() {
                roots.push(src.join(name));
            }
        }
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            roots.extend(bins.map(|b| b.unwrap().path()).filter(|p| p.is_file()));
        }
    }
    for dir in ["tests", "benches"] {
        let manifest = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
        for line in manifest.lines() {
            if let Some(value) = line.trim().strip_prefix("path = ") {
                roots.push(root.join(dir).join(value.trim_matches('"')));
            }
        }
    }
    roots.sort();
    roots
}

/// The strongly connected components of a directed graph that hold more than one node: each
/// is a set of files that reach each other through imports (Tarjan's algorithm).
fn tangles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<BTreeSet<PathBuf>> {
    struct State<'g> {
        edges: &'g BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'g PathBuf, (usize, usize)>,
        stack: Vec<&'g PathBuf>,
        on_stack: BTreeSet<&'g PathBuf>,
        next: usize,
        found: Vec<BTreeSet<PathBuf>>,
    }
    fn connect<'g>(state: &mut State<'g>, node: &'g PathBuf) {
        state.index.insert(node, (state.next, state.next));
        state.next += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.edges.get(node).into_iter().flatten() {
            if !state.index.contains_key(next) {
                connect(state, next);
                let low = state.index[next].1.min(state.index[node].1);
                state.index.get_mut(node).unwrap().1 = low;
            } else if state.on_stack.contains(next) {
                let low = state.index[next].0.min(state.index[node].1);
                state.index.get_mut(node).unwrap().1 = low;
            }
        }
        let (index, low) = state.index[node];
        if index == low {
            let mut component = BTreeSet::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.insert(member.clone());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node) {
            connect(&mut state, node);
        }
    }
    state.found
}

/// The file-level import graph of the crate rooted at `root`.
fn import_graph(root: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let crate_modules = load_crate(root);
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    let files: BTreeMap<&PathBuf, &Vec<String>> = crate_modules
        .modules
        .iter()
        .filter(|(path, module)| {
            // The module path a file is loaded at: the shortest one naming it.
            crate_modules
                .modules
                .iter()
                .filter(|(_, m)| m.file == module.file)
                .map(|(p, _)| p.len())
                .min()
                == Some(path.len())
        })
        .map(|(path, module)| (&module.file, path))
        .collect();
    for (file, module_path) in files {
        let text = std::fs::read_to_string(file).unwrap();
        let tokens = code_tokens(&text);
        let scopes = module_paths_of_file(module_path, &tokens);
        let from = edges.entry(file.clone()).or_default();
        for (scope, path) in named_paths(&crate_modules, &tokens, &scopes) {
            if let Some(target) = resolve(&crate_modules, &scope, &path) {
                let to = &crate_modules.modules[&target].file;
                if to != file {
                    from.insert(to.clone());
                }
            }
        }
    }
    edges
}

#[test]
fn no_crate_has_an_import_cycle_between_files() {
    let root = repo_root();
    let mut cycles = Vec::new();
    for crate_root in crate_roots(&root) {
        let graph = import_graph(&crate_root);
        let show = |p: &PathBuf| p.strip_prefix(&root).unwrap_or(p).display().to_string();
        for tangle in tangles(&graph) {
            let edges: Vec<String> = tangle
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| tangle.contains(*to))
                        .map(move |to| format!("  {} -> {}", show(from), show(to)))
                })
                .collect();
            cycles.push(format!(
                "these files import each other:\n{}",
                edges.join("\n")
            ));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_through_a_re_export() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use a::A;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A(B);\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub struct B;\n#[cfg(test)]\nmod tests {\n    fn f() -> crate::A { todo!() }\n}\n",
    )
    .unwrap();
    let graph = import_graph(&src.join("lib.rs"));
    let found = tangles(&graph);
    assert_eq!(found.len(), 1, "a -> b -> lib -> a: {graph:?}");
    assert_eq!(found[0].len(), 3, "{found:?}");
}

#[test]
fn the_checker_accepts_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("d")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod d;\n").unwrap();
    std::fs::write(src.join("d/mod.rs"), "mod x;\nmod y;\npub use x::X;\n").unwrap();
    std::fs::write(
        src.join("d/x.rs"),
        "use super::y::{Y, self};\npub struct X(Y);\n",
    )
    .unwrap();
    std::fs::write(
        src.join("d/y.rs"),
        "// crate::d::X in a comment is not an edge\npub struct Y;\nconst S: &str = \"crate::d::X\";\n",
    )
    .unwrap();
    let graph = import_graph(&src.join("lib.rs"));
    assert_eq!(
        tangles(&graph),
        Vec::<BTreeSet<PathBuf>>::new(),
        "{graph:?}"
    );
}
