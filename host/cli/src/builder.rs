//! `cardrules build`: builds each program of a policies directory from its source, in
//! its language, into the component its manifest names.
//!
//! A program's language is told by its source: `policy.py` (Python, componentize-py),
//! `policy.js` (JavaScript), a `Cargo.toml` in the program directory (a Rust project of
//! the municipality's own, built by its own cargo against the `cardrules-sdk` crate), or,
//! inside a cardrules checkout, a guest crate `guest-rules/programs/PROGRAM/` (built as
//! `cargo build` builds the shipped programs). Python and JavaScript are built by the
//! drivers `tools/<language>/build.sh PROGRAM_DIR`, which install their pinned toolchain
//! on first use: a checkout's own, or anywhere else the kit's that the binary carries
//! (`kit.rs`), with the toolchains in the per-user cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{exit, kit};

/// A program's source language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    Js,
}

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
        }
    }

    /// The source file a program in this language has in its directory.
    pub fn source(self) -> Option<&'static str> {
        match self {
            Language::Rust => None,
            Language::Python => Some("policy.py"),
            Language::Js => Some("policy.js"),
        }
    }
}

impl std::str::FromStr for Language {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Language> {
        match s {
            "rust" => Ok(Language::Rust),
            "python" => Ok(Language::Python),
            "js" | "javascript" => Ok(Language::Js),
            other => bail!("unknown language `{other}`: expected `rust`, `python` or `js`"),
        }
    }
}

/// Where the world (`wit/`), SDKs (`sdk/`) and build drivers (`tools/`) that build the
/// programs of `policies` are.
pub enum Root {
    /// A cardrules checkout (the nearest directory holding `wit/`, `tools/` and
    /// `guest-rules/`, from the policies directory up, else from the current directory
    /// up): its own SDKs, so that a change to them is built in.
    Checkout(PathBuf),
    /// Anywhere else: the kit the binary carries, laid out in the per-user cache.
    Kit(PathBuf),
}

impl Root {
    pub fn path(&self) -> &Path {
        match self {
            Root::Checkout(path) | Root::Kit(path) => path,
        }
    }
}

/// The checkout `policies` lies in (or the current directory does), else the kit.
pub fn root(policies: &Path) -> anyhow::Result<Root> {
    let policies = std::path::absolute(policies)
        .with_context(|| format!("cannot resolve `{}`", policies.display()))?;
    let here = std::env::current_dir().context("cannot read the current directory")?;
    let checkout = [policies.as_path(), here.as_path()]
        .iter()
        .flat_map(|start| start.ancestors())
        .find(|dir| {
            dir.join("wit").is_dir()
                && dir.join("tools").is_dir()
                && dir.join("guest-rules").is_dir()
        })
        .map(Path::to_path_buf);
    match checkout {
        Some(dir) => Ok(Root::Checkout(dir)),
        None => Ok(Root::Kit(
            kit::ensure().context("cannot lay out the authoring kit")?,
        )),
    }
}

/// The language of the program in `dir`, from its source.
pub fn language_of(root: &Path, dir: &Path, program: &str) -> anyhow::Result<Language> {
    let mut found = Vec::new();
    if dir.join("Cargo.toml").is_file() {
        found.push(Language::Rust);
    }
    for language in [Language::Python, Language::Js] {
        if let Some(source) = language.source()
            && dir.join(source).is_file()
        {
            found.push(language);
        }
    }
    // A guest crate of the same name is the source only of a program with no source file
    // of its own (the JavaScript and Python examples share the Rust programs' names).
    if found.is_empty()
        && root
            .join("guest-rules/programs")
            .join(program)
            .join("Cargo.toml")
            .is_file()
    {
        found.push(Language::Rust);
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!(
            "program `{program}` has no source: no `policy.py`, `policy.js` or `Cargo.toml` in `{}`, and no guest crate `guest-rules/programs/{program}`",
            dir.display()
        ),
        several => bail!(
            "program `{program}` has sources in several languages ({}): keep one",
            several
                .iter()
                .map(|l| format!("`{}`", l.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Builds the programs named (every program under `policies` if none), one after the
/// other; stops at the first that fails.
pub fn build(policies: &Path, programs: &[String]) -> anyhow::Result<u8> {
    let root = root(policies)?;
    let dirs: Vec<PathBuf> = if programs.is_empty() {
        cardrules::program_dirs(policies)
            .with_context(|| format!("cannot read policies directory `{}`", policies.display()))?
    } else {
        programs.iter().map(|p| policies.join(p)).collect()
    };
    if dirs.is_empty() {
        bail!("no programs in `{}`", policies.display());
    }
    for dir in &dirs {
        let program = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !dir.join("policy.toml").is_file() {
            bail!(
                "`{}` is not a program directory (no `policy.toml`)",
                dir.display()
            );
        }
        let language = language_of(root.path(), dir, &program)?;
        let started = std::time::Instant::now();
        build_one(&root, dir, &program, language)
            .with_context(|| format!("cannot build program `{program}`"))?;
        eprintln!(
            "built `{program}` ({}) in {:.1} s",
            language.name(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(exit::OK)
}

/// The component path `dir`'s manifest names.
fn component_of(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("policy.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read `{}`", manifest.display()))?;
    let parsed: cardrules::Manifest = cardrules::inputs::toml(&text, &manifest)?;
    Ok(dir.join(parsed.component))
}

fn build_one(root: &Root, dir: &Path, program: &str, language: Language) -> anyhow::Result<()> {
    let component = component_of(dir)?;
    let built = match language {
        Language::Rust if dir.join("Cargo.toml").is_file() => build_project(root, dir, program)?,
        Language::Rust => {
            let target_dir = root.path().join("target/guests");
            run(cargo()
                .current_dir(root.path().join("guest-rules"))
                .args(["build", "--release", "--target", WASM_TARGET, "-p", program])
                .arg("--target-dir")
                .arg(&target_dir))?;
            artifact(&target_dir, program)
        }
        Language::Python | Language::Js => {
            let driver = root
                .path()
                .join("tools")
                .join(language.name())
                .join("build.sh");
            if !driver.is_file() {
                bail!("the build driver `{}` is missing", driver.display());
            }
            let mut command = Command::new("bash");
            command.arg(&driver).arg(dir);
            // The Python driver names a missing `python3.11` itself (`PYTHON` may name another).
            if language == Language::Js {
                kit::require(
                    "node",
                    "JavaScript policies are built with Node.js 18 or later",
                )?;
                kit::require("npm", "the JavaScript toolchain is installed with npm")?;
            }
            // Outside a checkout the Python toolchain goes to the per-user cache, one per
            // pin, rather than into the kit (which a newer binary replaces).
            if let (Root::Kit(_), Language::Python) = (root, language)
                && std::env::var_os("CARDRULES_PYTHON_TOOLCHAIN").is_none()
            {
                command.env(
                    "CARDRULES_PYTHON_TOOLCHAIN",
                    kit::toolchain_dir("python", kit::python_requirements())?,
                );
            }
            run(&mut command)?;
            if !component.is_file() {
                bail!(
                    "`{}` ran, but `{}` is not there",
                    driver.display(),
                    component.display()
                );
            }
            return Ok(());
        }
    };
    std::fs::copy(&built, &component).with_context(|| {
        format!(
            "cannot copy `{}` to `{}`",
            built.display(),
            component.display()
        )
    })?;
    Ok(())
}

/// The target policies are compiled for.
const WASM_TARGET: &str = "wasm32-wasip2";

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Flags meant for a host build must not leak into a policy's.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    command
}

/// Cargo names a crate's artifact with underscores for its hyphens.
fn artifact(target_dir: &Path, program: &str) -> PathBuf {
    target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", program.replace('-', "_")))
}

/// A municipality's own Rust project (the program directory is the crate): built by its
/// own cargo, with the `cardrules-sdk` crate it depends on by version taken from the
/// kit's copy (or the checkout's) until the crate is on crates.io, into a target
/// directory beside the policies directory, so that the policies directory holds only
/// what the host reads and watches.
fn build_project(root: &Root, dir: &Path, program: &str) -> anyhow::Result<PathBuf> {
    kit::require(
        "cargo",
        "Rust policies are built with the Rust toolchain (install it with rustup)",
    )?;
    ensure_wasm_target()?;
    let sdk = match root {
        Root::Checkout(path) => path.join("guest-rules/sdk"),
        Root::Kit(path) => path.join("sdk/rust"),
    };
    let dir =
        std::path::absolute(dir).with_context(|| format!("cannot resolve `{}`", dir.display()))?;
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(target) => PathBuf::from(target),
        None => dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(&dir)
            .join("target")
            .join("policies"),
    };
    let patch = format!(
        "patch.crates-io.cardrules-sdk.path={}",
        toml::Value::String(sdk.to_string_lossy().into_owned())
    );
    run(cargo()
        .current_dir(&dir)
        .args(["build", "--release", "--target", WASM_TARGET, "--config"])
        .arg(&patch)
        .arg("--target-dir")
        .arg(&target_dir))?;
    Ok(artifact(&target_dir, program))
}

/// Adds the `wasm32-wasip2` target with rustup when the toolchain lacks it (once: rustup
/// keeps it), saying so; without rustup, says what to install.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run `rustc --print sysroot`")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        return Ok(());
    }
    kit::require(
        "rustup",
        "the `wasm32-wasip2` target is missing and rustup is not there to add it (add the target to your toolchain)",
    )?;
    eprintln!("installing the Rust target `{WASM_TARGET}` (rustup target add {WASM_TARGET})…");
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}
