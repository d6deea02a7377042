//! House rules of the WIT package, checked on the files themselves.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use std::path::{Path, PathBuf};

fn wit_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .collect();
    files.sort();
    files
}

/// Keywords that open an item which must carry `@since` and, except for the
/// `use`/`import`/`export`/`include` statements, a doc comment.
const GATED: [&str; 11] = [
    "interface ",
    "world ",
    "record ",
    "variant ",
    "enum ",
    "flags ",
    "resource ",
    "type ",
    "import ",
    "export ",
    "include ",
];
const UNDOCUMENTED_OK: [&str; 4] = ["import ", "export ", "include ", "use "];

fn is_function(line: &str) -> bool {
    line.split_once(':').is_some_and(|(name, rest)| !name.contains(' ') && rest.trim_start().starts_with("func("))
}

/// The lines of attributes and doc comments directly above line `i`.
fn preamble<'a>(lines: &[&'a str], i: usize) -> Vec<&'a str> {
    lines[..i].iter().rev().map(|l| l.trim()).take_while(|l| l.starts_with("///") || l.starts_with('@')).collect()
}

#[test]
fn every_item_has_since_and_docs_and_every_case_has_docs() {
    let mut problems = Vec::new();
    for file in wit_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let lines: Vec<&str> = text.lines().collect();
        let mut depth_kinds: Vec<&str> = Vec::new();
        for (i, raw) in lines.iter().enumerate() {
            let line = raw.trim();
            let at = format!("{name}:{}", i + 1);
            if line.is_empty() || line.starts_with("//") || line.starts_with('@') || line.starts_with("package ") {
                continue;
            }
            let above = preamble(&lines, i);
            let has_since = above.iter().any(|l| l.starts_with("@since(version = "));
            let has_doc = above.iter().any(|l| l.starts_with("///"));
            let keyword = GATED.iter().chain(UNDOCUMENTED_OK.iter()).find(|k| line.starts_with(**k));
            let inside_type = matches!(depth_kinds.last(), Some(&("record " | "variant " | "enum " | "flags ")));
            if let Some(keyword) = keyword.filter(|_| !inside_type) {
                if !has_since {
                    problems.push(format!("{at}: `{line}` lacks @since"));
                }
                if !has_doc && !UNDOCUMENTED_OK.contains(keyword) {
                    problems.push(format!("{at}: `{line}` lacks a doc comment"));
                }
            } else if is_function(line) {
                if !has_since {
                    problems.push(format!("{at}: function `{line}` lacks @since"));
                }
                if !has_doc {
                    problems.push(format!("{at}: function `{line}` lacks a doc comment"));
                }
            } else if inside_type && line != "}" && !has_doc {
                problems.push(format!("{at}: case or field `{line}` lacks a doc comment"));
            }
            if line.ends_with('{') {
                depth_kinds.push(GATED.iter().find(|k| line.starts_with(**k)).copied().unwrap_or("other"));
            }
            if line.starts_with('}') {
                depth_kinds.pop();
            }
        }
    }
    assert!(problems.is_empty(), "WIT house rules broken:\n{}", problems.join("\n"));
}

#[test]
fn each_interface_lives_in_a_file_of_its_name_and_errors_are_variants() {
    let mut interfaces = Vec::new();
    for file in wit_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(text.starts_with("package regain:recovery@0.1.0;"), "{stem}.wit must declare the package first");
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("interface "))
            .map(|rest| rest.trim_end_matches(" {"))
            .collect();
        if stem == "world" {
            assert!(declared.is_empty(), "world.wit holds worlds only");
            continue;
        }
        assert_eq!(declared, vec![stem.as_str()], "{stem}.wit must hold exactly the interface `{stem}`");
        interfaces.push(stem);
        // Errors are documented variants, never bare strings.
        for line in text.lines().filter(|l| l.contains("result<")) {
            assert!(!line.contains(", string>"), "{line}: an error must be a documented variant, not a string");
        }
    }
    let mut expected =
        ["types", "directory", "credentials", "trust", "face-check", "events", "crypto", "deployment", "flow", "admin"];
    expected.sort_unstable();
    interfaces.sort();
    assert_eq!(interfaces, expected);
}

#[test]
fn the_checker_catches_an_undocumented_case() {
    // The rule above must be able to fail: the same scan over a broken snippet reports it.
    let broken = "@since(version = 0.1.0)\nenum color {\n    red,\n}";
    let lines: Vec<&str> = broken.lines().collect();
    assert!(preamble(&lines, 2).is_empty(), "`red` has no doc comment above it");
    assert_eq!(preamble(&lines, 1), vec!["@since(version = 0.1.0)"]);
    assert!(is_function("start: func(login: string) -> result<transition, flow-error>;"));
    assert!(!is_function("login: string,"));
}
