//! The authoring kit the `cardrules` binary carries, so that a municipality builds its
//! policies in its own repository with no cardrules checkout: the released WIT worlds, the
//! guest SDKs (Rust, Python, JavaScript) and the Python and JavaScript build drivers with
//! their pinned toolchain lists. On first use the kit is laid out in a per-user cache
//! directory, in the same layout as the repository (`wit/`, `sdk/`, `tools/`), so the
//! drivers run there unchanged; toolchains are installed beside it, once per pin.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use include_dir::{Dir, DirEntry, include_dir};

/// Every released world version, as released.
static WIT: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../wit");
/// The Python SDK (a package: `pyproject.toml` and `cardrules_sdk/`).
static SDK_PYTHON: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../sdk/python");
/// The JavaScript SDK (an npm package).
static SDK_JS: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../sdk/js");
/// The Rust guest SDK's sources (its manifest is written standalone, below).
static SDK_RUST: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../guest-rules/sdk/src");

/// The build drivers and toolchain pins, one by one: `tools/js` holds an installed
/// toolchain (`node_modules`) in a checkout that has built a JavaScript policy.
const TOOLS: &[(&str, &str)] = &[
    (
        "tools/js/build.sh",
        include_str!("../../../tools/js/build.sh"),
    ),
    (
        "tools/js/build.mjs",
        include_str!("../../../tools/js/build.mjs"),
    ),
    (
        "tools/js/package.json",
        include_str!("../../../tools/js/package.json"),
    ),
    (
        "tools/js/package-lock.json",
        include_str!("../../../tools/js/package-lock.json"),
    ),
    (
        "tools/python/build.sh",
        include_str!("../../../tools/python/build.sh"),
    ),
    (
        "tools/python/install.sh",
        include_str!("../../../tools/python/install.sh"),
    ),
    (
        "tools/python/requirements.txt",
        include_str!("../../../tools/python/requirements.txt"),
    ),
];

/// The version of the Rust SDK crate a new Rust project depends on, and of the crate the
/// kit lays out (the same sources as `guest-rules/sdk`).
pub const RUST_SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The versions of the Python and JavaScript SDKs the binary carries, as their package
/// files say (a unit test holds them together): what a new project depends on.
pub const PYTHON_SDK_VERSION: &str = "0.2.0";
pub const JS_SDK_VERSION: &str = "0.2.0";

/// The Rust SDK's manifest outside the cardrules workspace: the same crate, its
/// dependencies named by version instead of inherited.
fn rust_sdk_manifest() -> String {
    format!(
        r#"[package]
name = "cardrules-sdk"
description = "Guest SDK for cardrules policies: bindings to the policy world and rule-book helpers"
version = "{RUST_SDK_VERSION}"
edition = "2024"
license = "Apache-2.0"

[dependencies]
wit-bindgen = {{ version = "0.63", default-features = false, features = ["macros", "realloc"] }}

[target.'cfg(target_arch = "wasm32")'.dependencies]
dlmalloc = {{ version = "0.2", features = ["global"] }}
"#
    )
}

/// Files of an embedded directory that are build leftovers, not sources.
fn is_leftover(path: &Path) -> bool {
    path.components().any(|c| {
        let c = c.as_os_str();
        c == "__pycache__" || c == "node_modules" || c == ".pytest_cache"
    }) || path.extension().is_some_and(|e| e == "pyc")
}

/// Every file of the kit: its path under the kit's root and its bytes.
fn files() -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Dir<'_>, under: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in dir.entries() {
            match entry {
                DirEntry::Dir(d) => walk(d, under, out),
                DirEntry::File(f) => {
                    if !is_leftover(f.path()) {
                        out.push((under.join(f.path()), f.contents().to_vec()));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&WIT, Path::new("wit"), &mut out);
    walk(&SDK_PYTHON, Path::new("sdk/python"), &mut out);
    walk(&SDK_JS, Path::new("sdk/js"), &mut out);
    // The crate carries its worlds (`guest-rules/sdk/wit` links to the repository's), as
    // its package on crates.io would.
    walk(&SDK_RUST, Path::new("sdk/rust/src"), &mut out);
    walk(&WIT, Path::new("sdk/rust/wit"), &mut out);
    out.push((
        PathBuf::from("sdk/rust/Cargo.toml"),
        rust_sdk_manifest().into_bytes(),
    ));
    for (path, text) in TOOLS {
        out.push((PathBuf::from(path), text.as_bytes().to_vec()));
    }
    out.sort();
    out
}

/// The per-user cache: `$CARDRULES_CACHE`, else `$XDG_CACHE_HOME/cardrules`, else
/// `~/.cache/cardrules`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("CARDRULES_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = set("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("cardrules"));
    }
    if let Some(home) = set("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("cardrules"));
    }
    bail!("cannot find a cache directory: set `CARDRULES_CACHE` (or `XDG_CACHE_HOME` or `HOME`)")
}

/// The kit, laid out in the cache (once per kit content: a new `cardrules` with other
/// worlds or SDKs lays out its own beside it). Written to a scratch directory and renamed
/// into place, so a kit directory is whole or absent, whoever else runs at the same time.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let files = files();
    let mut all = Vec::new();
    for (path, bytes) in &files {
        all.extend_from_slice(path.to_string_lossy().as_bytes());
        all.push(0);
        all.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        all.extend_from_slice(bytes);
    }
    let digest = cardrules::signing::digest(&all);
    let short = digest
        .trim_start_matches("sha256:")
        .get(..12)
        .unwrap_or("kit");
    let kits = cache_dir()?.join("kit");
    let kit = kits.join(format!("{}-{short}", env!("CARGO_PKG_VERSION")));
    if kit.is_dir() {
        return Ok(kit);
    }
    std::fs::create_dir_all(&kits)
        .with_context(|| format!("cannot create the cache directory `{}`", kits.display()))?;
    let scratch = tempfile_dir(&kits)?;
    for (path, bytes) in &files {
        let to = scratch.join(path);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        std::fs::write(&to, bytes).with_context(|| format!("cannot write `{}`", to.display()))?;
        // The build drivers run one another.
        if to.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make `{}` executable", to.display()))?;
        }
    }
    match std::fs::rename(&scratch, &kit) {
        Ok(()) => Ok(kit),
        // Another `cardrules` laid out the same kit meanwhile: its copy is as good.
        Err(_) if kit.is_dir() => {
            let _ = std::fs::remove_dir_all(&scratch);
            Ok(kit)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            Err(anyhow!(e)).with_context(|| format!("cannot place the kit at `{}`", kit.display()))
        }
    }
}

/// A new, empty scratch directory under `parent`.
fn tempfile_dir(parent: &Path) -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = parent.join(format!(".new-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    Ok(dir)
}

/// Where a toolchain pinned by `pins` (its requirements or lock file) is installed: one
/// directory per pin under the cache, shared by every kit that pins the same.
pub fn toolchain_dir(name: &str, pins: &str) -> anyhow::Result<PathBuf> {
    let digest = cardrules::signing::digest(pins.as_bytes());
    let short = digest
        .trim_start_matches("sha256:")
        .get(..12)
        .unwrap_or("pin");
    Ok(cache_dir()?
        .join("toolchains")
        .join(format!("{name}-{short}")))
}

/// The pinned Python toolchain list, as the kit carries it.
pub fn python_requirements() -> &'static str {
    TOOLS
        .iter()
        .find(|(path, _)| *path == "tools/python/requirements.txt")
        .map_or("", |(_, text)| text)
}

/// Fails with a message naming `program` and what it is for when it is not on the PATH.
pub fn require(program: &str, why: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
        })
    });
    if !found {
        bail!("`{program}` is not on the PATH: {why}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kit_holds_the_worlds_the_sdks_and_the_drivers_and_no_build_leftovers() {
        let files = files();
        let has = |p: &str| files.iter().any(|(path, _)| path == Path::new(p));
        for p in [
            "wit/0.1.0/policy.wit",
            "wit/0.2.0/policy.wit",
            "sdk/python/cardrules_sdk/__init__.py",
            "sdk/js/index.js",
            "sdk/js/package.json",
            "sdk/rust/Cargo.toml",
            "sdk/rust/src/lib.rs",
            "sdk/rust/wit/0.2.0/policy.wit",
            "tools/js/build.mjs",
            "tools/python/build.sh",
        ] {
            assert!(has(p), "the kit has no `{p}`");
        }
        assert!(files.iter().all(|(path, _)| !is_leftover(path)));
    }

    #[test]
    fn new_projects_name_the_versions_the_sdk_packages_have() {
        let text = |p: &str| {
            let (_, bytes) = files()
                .into_iter()
                .find(|(path, _)| path == Path::new(p))
                .unwrap();
            String::from_utf8(bytes).unwrap()
        };
        let pyproject: toml::Table = text("sdk/python/pyproject.toml").parse().unwrap();
        assert_eq!(
            pyproject["project"]["version"].as_str(),
            Some(PYTHON_SDK_VERSION)
        );
        let package: serde_json::Value =
            serde_json::from_str(&text("sdk/js/package.json")).unwrap();
        assert_eq!(package["version"].as_str(), Some(JS_SDK_VERSION));
        let krate: toml::Table = text("sdk/rust/Cargo.toml").parse().unwrap();
        assert_eq!(krate["package"]["version"].as_str(), Some(RUST_SDK_VERSION));
    }

    #[test]
    fn a_kit_is_laid_out_once_and_whole() {
        let cache = tempfile::tempdir().unwrap();
        // SAFETY: this test alone reads CARDRULES_CACHE in this process's unit tests.
        unsafe { std::env::set_var("CARDRULES_CACHE", cache.path()) };
        let first = ensure().unwrap();
        let again = ensure().unwrap();
        assert_eq!(first, again);
        assert!(first.join("sdk/rust/src/lib.rs").is_file());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(first.join("tools/python/install.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "the drivers must be executable");
        let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("kit"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".new-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
