//! The import rule of ARCHITECTURE.md, checked on the source: a top-level module imports only
//! modules of lower layers, so the request path and the poll path only ever go down, and no
//! two top-level modules import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules from the bottom layer up; a module may import modules of lower layers
/// only. Adding a top-level module means placing it here.
const LAYERS: &[&[&str]] = &[
    &["config", "telemetry", "value", "problem_kind"],
    &["source", "state"],
    &["auth"],
    &["catalog"],
    &["cache"],
    &["changes"],
    &["webhooks", "openapi", "introspect"],
    &["http"],
    &["app"],
    &["check"],
];

/// Each top-level module and the top-level modules its files name through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if path.extension().is_none_or(|e| e != "rs") || top == "main" || top == "lib" {
            continue;
        }
        // How deep the file's module is: `cache.rs` and `app/mod.rs` are 1, `app/start.rs` 2.
        let depth = relative.components().count()
            - usize::from(path.file_name().is_some_and(|n| n == "mod.rs"));
        let text = std::fs::read_to_string(&path).unwrap();
        let named = found.entry(top.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            named.extend(crate_paths(line, depth).into_iter().filter(|m| *m != top));
        }
    }
    found
}

/// The top-level modules a line names: the first segment of every `crate::` path
/// (`crate::{a, b::c}` groups included), and of every `super::` path that climbs to the crate
/// root from a module `depth` levels deep.
fn crate_paths(line: &str, depth: usize) -> Vec<String> {
    let root = "super::".repeat(depth);
    let line = line
        .replace(&format!("{root}super::"), "")
        .replace(&root, "crate::");
    let mut names = Vec::new();
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let mut depth = 0;
                let mut start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            names.push(word(&group[i..]));
                            start = false;
                        }
                        _ => {}
                    }
                }
            }
            None => names.push(word(rest)),
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

#[test]
fn top_level_modules_import_only_lower_layers() {
    let layer = |module: &str| LAYERS.iter().position(|l| l.contains(&module));
    let mut wrong = Vec::new();
    for (module, named) in imports() {
        let Some(own) = layer(&module) else {
            wrong.push(format!("`{module}` is in no layer: place it in LAYERS"));
            continue;
        };
        for other in named {
            match layer(&other) {
                Some(theirs) if theirs < own => {}
                Some(_) => wrong.push(format!("`{module}` imports `{other}`, not below it")),
                None => wrong.push(format!(
                    "`{module}` imports `{other}`, which is in no layer"
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn crate_paths_are_read_from_single_paths_and_groups() {
    assert_eq!(crate_paths("use crate::config::Config;", 2), ["config"]);
    assert_eq!(
        crate_paths(
            "use crate::{source::{Value, Dialect}, state};  let x = crate::cache::X;",
            2
        ),
        ["source", "state", "cache"]
    );
    // `super::` reaches the crate root from a top-level module, not from a file inside one.
    assert_eq!(crate_paths("use super::http::AppState;", 1), ["http"]);
    assert!(crate_paths("use super::problem::ApiError;", 2).is_empty());
    assert_eq!(
        crate_paths("use super::super::http::AppState;", 2),
        ["http"]
    );
}
