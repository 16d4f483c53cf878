//! The emulator judges clients with its own code: this fails when the
//! discore-mock crate depends on any other discore crate, in any kind of
//! dependency (normal, dev, build, for any target), under any name.
//!
//! Rust code can only name the crates its package depends on directly, so
//! without such a dependency no file of the emulator (library, binary,
//! tests, examples) can use discore's envelope parsing, close-code policy,
//! command types, token or limits. docs/architecture.md ("The emulator is
//! an independent judge") explains the rule.

use serde_json::Value;
use std::process::Command;

#[test]
fn the_emulator_depends_on_no_discore_crate() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let package = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "discore-mock")
        .expect("discore-mock is in the workspace");
    let dependencies = package["dependencies"].as_array().expect("dependencies");
    // The check must see the dependencies it is meant to judge.
    assert!(
        dependencies.iter().any(|d| d["name"] == "serde_json"),
        "cargo metadata lists the emulator's dependencies"
    );
    let discore: Vec<String> = dependencies
        .iter()
        .filter(|d| {
            let name = d["name"].as_str().unwrap_or_default();
            let path = d["path"].as_str().unwrap_or_default();
            // `name` is the package even when renamed; a path dependency
            // inside the workspace's crates/ is discore's own.
            name.starts_with("discore") || path.contains("/crates/discore")
        })
        .map(|d| format!("{} ({})", d["name"], d["kind"]))
        .collect();
    assert!(
        discore.is_empty(),
        "discore-mock must not depend on the client it judges: {discore:?}"
    );
}
