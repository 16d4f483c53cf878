//! Every file of the fuzz corpus, and every crash kept as a regression in
//! `fuzz/artifacts/`, replayed through its target on stable Rust: what the
//! fuzzer once found stays found without nightly or cargo-fuzz.

use std::{
    fs,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs each file through `target`; returns the files that panicked.
fn replay(target: fn(&[u8]), files: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for path in files {
        let bytes = fs::read(path).expect("a readable corpus file");
        if catch_unwind(AssertUnwindSafe(|| target(&bytes))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    failed
}

/// Each target's corpus is there and replays without a panic.
#[test]
fn corpus_replays() {
    for (name, target) in discore_fuzz::TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(
            corpus.len() >= 10,
            "{name}: only {} corpus files",
            corpus.len()
        );
        let failed = replay(target, &corpus);
        assert!(failed.is_empty(), "{name}: {failed:#?}");
    }
}

/// Crashes the fuzzer found (and that were fixed) stay fixed.
#[test]
fn artifacts_replay() {
    for (name, target) in discore_fuzz::TARGETS {
        let artifacts = files(&fuzz_dir().join("artifacts").join(name));
        let failed = replay(target, &artifacts);
        assert!(failed.is_empty(), "{name}: {failed:#?}");
    }
}
