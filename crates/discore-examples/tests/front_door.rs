//! The examples and guides that do not compile in this crate still go
//! through the front door: no example of any crate, no guide and no README
//! names one of discore's internal crates in code. (The examples in
//! `examples/` and the guides compiled here cannot: this crate depends on
//! the facade alone.)

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The crates the `discore` facade re-exports: code a user copies names
/// them through `discore::`, never directly.
const INTERNAL: [&str; 5] = [
    "discore_gateway",
    "discore_manager",
    "discore_protocol",
    "discore_http",
    "discore_admin",
];

/// Crates whose examples are tools for discore's own development (the fuzz
/// corpus writer), not examples for users.
const TOOLS: [&str; 2] = ["discore-fuzz", "discore-bench"];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files_in(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// Every example, guide and README a user reads.
fn user_facing_files() -> Vec<PathBuf> {
    let root = repository();
    let mut files = files_in(&root.join("examples"), "rs");
    files.extend(files_in(&root.join("docs"), "md"));
    files.push(root.join("README.md"));
    let mut crates: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .expect("crates/ is readable")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    crates.sort();
    crates.retain(|krate| !TOOLS.iter().any(|tool| krate.ends_with(tool)));
    for krate in crates {
        files.extend(files_in(&krate.join("examples"), "rs"));
        let readme = krate.join("README.md");
        if readme.exists() {
            files.push(readme);
        }
    }
    files
}

/// The Rust code of a file: all of a `.rs` file, the ```rust blocks of a
/// Markdown file (with their line numbers).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).expect("readable");
    let is_markdown = path.extension().is_some_and(|e| e == "md");
    let mut in_rust = !is_markdown;
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if is_markdown && line.trim_start().starts_with("```") {
            let info = line.trim_start().trim_start_matches('`');
            in_rust = !in_rust && info.starts_with("rust");
            continue;
        }
        if in_rust {
            lines.push((number + 1, line.to_owned()));
        }
    }
    lines
}

/// A use of an internal crate as a path (`discore_gateway::…`,
/// `use discore_gateway`), not a log target in a string such as
/// `RUST_LOG=discore_gateway=debug`.
fn names_internal_crate(line: &str) -> Option<&'static str> {
    INTERNAL
        .into_iter()
        .find(|name| line.contains(&format!("{name}::")) || line.contains(&format!("use {name}")))
}

#[test]
fn examples_guides_and_readmes_use_only_the_facade() {
    let mut offenders = Vec::new();
    let files = user_facing_files();
    assert!(
        files.len() > 20,
        "the examples, guides and READMEs were found ({} files)",
        files.len()
    );
    for path in files {
        for (number, line) in code_lines(&path) {
            if let Some(name) = names_internal_crate(&line) {
                offenders.push(format!("{}:{number}: {name}: {line}", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "use the discore facade (`discore::…`) instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_check_recognises_internal_paths() {
    assert_eq!(
        names_internal_crate("use discore_manager::{ManagerConfig, ShardManager};"),
        Some("discore_manager")
    );
    assert_eq!(
        names_internal_crate("    let queue = discore_gateway::InMemoryIdentifyQueue::new(1);"),
        Some("discore_gateway")
    );
    assert_eq!(
        names_internal_crate("use discore::{Shard, ShardConfig};"),
        None
    );
    assert_eq!(
        names_internal_crate(r#"//! | `RUST_LOG` | such as `info,discore_gateway=debug` |"#),
        None
    );
    assert_eq!(names_internal_crate("use discore_mock::MockServer;"), None);
}
