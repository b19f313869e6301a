//! `cardrules build`: builds each program of a policies directory from its source, in
//! its language, into the component its manifest names.
//!
//! A program's language is told by its source: `policy.py` (Python, componentize-py),
//! `policy.js` (JavaScript), or a guest crate `guest-rules/programs/PROGRAM/` (Rust,
//! built by cargo as `cargo build` builds the shipped programs). Python and JavaScript
//! are built by the repository's own drivers, `tools/<language>/build.sh PROGRAM_DIR`,
//! which install their pinned toolchain on first use (`tools/<language>/install.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail};

use crate::exit;

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

/// The repository whose world (`wit/`), SDKs and build drivers (`tools/`) build the
/// programs of `policies`: the nearest directory holding `wit/` and `tools/`, from the
/// policies directory up, else from the current directory up.
pub fn repository(policies: &Path) -> anyhow::Result<PathBuf> {
    let policies = std::path::absolute(policies)
        .with_context(|| format!("cannot resolve `{}`", policies.display()))?;
    let here = std::env::current_dir().context("cannot read the current directory")?;
    [policies.as_path(), here.as_path()]
        .iter()
        .flat_map(|start| start.ancestors())
        .find(|dir| dir.join("wit").is_dir() && dir.join("tools").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            anyhow!(
                "cannot find the cardrules repository (a directory with `wit/` and `tools/`) at `{}`, the current directory or above them: run `cardrules build` inside a cardrules checkout",
                policies.display()
            )
        })
}

/// The language of the program in `dir`, from its source.
pub fn language_of(root: &Path, dir: &Path, program: &str) -> anyhow::Result<Language> {
    let mut found = Vec::new();
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
            "program `{program}` has no source: no `policy.py` or `policy.js` in `{}`, and no guest crate `guest-rules/programs/{program}`",
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
    let root = repository(policies)?;
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
        let language = language_of(&root, dir, &program)?;
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

fn build_one(root: &Path, dir: &Path, program: &str, language: Language) -> anyhow::Result<()> {
    let component = component_of(dir)?;
    match language {
        Language::Rust => {
            let target_dir = root.join("target/guests");
            run(
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                    .current_dir(root.join("guest-rules"))
                    .args([
                        "build",
                        "--release",
                        "--target",
                        "wasm32-wasip2",
                        "-p",
                        program,
                    ])
                    .arg("--target-dir")
                    .arg(&target_dir),
            )?;
            let built = target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", program.replace('-', "_")));
            std::fs::copy(&built, &component).with_context(|| {
                format!(
                    "cannot copy `{}` to `{}`",
                    built.display(),
                    component.display()
                )
            })?;
            Ok(())
        }
        Language::Python | Language::Js => {
            let driver = root.join("tools").join(language.name()).join("build.sh");
            if !driver.is_file() {
                bail!("the build driver `{}` is missing", driver.display());
            }
            run(Command::new("bash").arg(&driver).arg(dir))?;
            if !component.is_file() {
                bail!(
                    "`{}` ran, but `{}` is not there",
                    driver.display(),
                    component.display()
                );
            }
            Ok(())
        }
    }
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
