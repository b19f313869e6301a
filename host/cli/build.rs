//! Builds the guest workspace `guest-rules/` for wasm32-wasip2 — the policies and the
//! hostile-guest corpus — and places each policy component in its program directory
//! (`policies/<program>/<program>.wasm`), so that `cargo build --release` leaves a
//! policies directory ready to run. Tests find the corpus through `CARDRULES_GUESTS_DIR`.
//!
//! Programs are discovered, not listed: every crate under `guest-rules/programs/` (a
//! workspace glob there) whose name is also a directory under `policies/` is a program.
//! `cardrules new` adds both, and nothing else needs to change.
//!
//! The guests are built by a nested cargo into `target/guests`, a target directory of
//! their own: the outer cargo holds the lock of the main one. Set
//! `CARDRULES_SKIP_GUESTS=1` to build the host alone.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let host = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = host
        .ancestors()
        .nth(2)
        .expect("host/cli/ lives two levels below the workspace root")
        .to_path_buf();
    println!(
        "cargo:rerun-if-changed={}",
        root.join("guest-rules").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=CARDRULES_SKIP_GUESTS");
    let target_dir = target_dir(&root).join("guests");
    // Where every built guest lands, the hostile-guest corpus included (for the tests).
    println!(
        "cargo:rustc-env=CARDRULES_GUESTS_DIR={}",
        target_dir.join(TARGET).join("release").display()
    );
    if std::env::var_os("CARDRULES_SKIP_GUESTS").is_some() {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root.join("guest-rules"))
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    // Flags meant for the host build must not leak into the guests'.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let status = command.status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "building the policy components failed ({status}); is the `{TARGET}` target installed? \
             (`rustup target add {TARGET}`)"
        ),
        Err(e) => panic!("cannot run cargo to build the policy components: {e}"),
    }
    for program in programs(&root) {
        // Cargo names a crate's artifact with underscores for its hyphens.
        let built = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", program.replace('-', "_")));
        let placed = root
            .join("policies")
            .join(&program)
            .join(format!("{program}.wasm"));
        copy_if_changed(&built, &placed);
    }
}

/// The program crates: directories under `guest-rules/programs/` with a `Cargo.toml`, whose
/// name also names a program directory under `policies/`.
fn programs(root: &Path) -> Vec<String> {
    let crates = root.join("guest-rules").join("programs");
    let Ok(entries) = std::fs::read_dir(&crates) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| root.join("policies").join(name).is_dir())
        .collect();
    found.sort();
    found
}

/// The workspace's target directory, found from `OUT_DIR` (`<target>/<profile>/build/…/out`).
fn target_dir(root: &Path) -> PathBuf {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    out.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("target"))
}

fn copy_if_changed(from: &Path, to: &Path) {
    let bytes =
        std::fs::read(from).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", from.display()));
    if std::fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        std::fs::write(to, &bytes)
            .unwrap_or_else(|e| panic!("cannot write `{}`: {e}", to.display()));
    }
}
