//! The one way programs are loaded into a [`Host`], for the command, the server, hot
//! reload and benchmarks alike: read the program's files once, verify their signature,
//! compile and `describe` the component ([`Program::load`]), optionally gate the new version
//! on the program's own suites, and only then serve it.
//!
//! It sits above both the host and the suites (the gate runs suites, which run on a host),
//! so neither depends on the other's loading.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::host::Host;
use crate::program::{Program, files};

/// Loads every program under `policies` into `host`, ungated (for `test`, `decide`,
/// `bench`, `replay`). A program that fails to load is left out and its error returned;
/// the others are served.
pub fn load_dir(host: &Host, policies: &Path) -> Result<Vec<Error>> {
    let mut errors = Vec::new();
    for dir in files::program_dirs(policies)? {
        match Program::load(host.sandbox(), host.trust(), &dir) {
            Ok(program) => host.insert(Arc::new(program)),
            Err(e) => {
                host.refuse(&dir, &e);
                errors.push(e);
            }
        }
    }
    Ok(errors)
}

/// How long loading one program may take as it is (re)served — reading, verifying,
/// compiling, `describe` and its own suites — before it is refused (see [`update_within`]).
pub const RELOAD_TIME_BOX: Duration = Duration::from_secs(30);

/// Loads the program in `dir` (its demo holders checked) and runs its own suites
/// (`dir/suites`) against it on a scratch ledger, and only if all of that passes serves it
/// in place of the running version and registers its new demo holders. Requests already
/// deciding finish on the version they started with. A refused version changes nothing:
/// the running version, if any, keeps serving, and the refusal is listed. Time-boxed by
/// [`RELOAD_TIME_BOX`].
pub fn update(host: &Host, dir: &Path) -> Result<Arc<Program>> {
    update_within(host, dir, RELOAD_TIME_BOX)
}

/// [`update`], refused if it takes longer than `time_box`: the suites stop between steps
/// once it has passed, and a version that took too long is never served.
pub fn update_within(host: &Host, dir: &Path, time_box: Duration) -> Result<Arc<Program>> {
    let deadline = Instant::now() + time_box;
    let too_long = |program: &str, during: String| {
        Error::load(
            program,
            format!(
                "the reload took longer than its time box of {} ms ({during}); the running version, if any, keeps serving",
                time_box.as_millis()
            ),
        )
    };
    let checked = Program::load(host.sandbox(), host.trust(), dir).and_then(|program| {
        let program = Arc::new(program);
        if Instant::now() >= deadline {
            return Err(too_long(program.id(), "while loading and compiling".into()));
        }
        crate::suite::check(host.sandbox(), &program, Some(deadline)).map_err(|e| {
            if Instant::now() >= deadline {
                let why = match &e {
                    Error::Load { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                too_long(program.id(), format!("while running its suites: {why}"))
            } else {
                e
            }
        })?;
        // Decided here, just before serving: a version late by any path is never served.
        if Instant::now() >= deadline {
            return Err(too_long(program.id(), "by the end of its suites".into()));
        }
        Ok(program)
    });
    match checked {
        Ok(program) => {
            host.insert(program.clone());
            // The version is accepted; a ledger failure here leaves its demo holders for
            // the next start, and is reported as what it is.
            host.register_demo_holders(program.id())?;
            Ok(program)
        }
        Err(e) => {
            host.refuse(dir, &e);
            Err(e)
        }
    }
}

/// [`update`] for every program under `policies`, as a server starts; returns the programs
/// served. Refusals are logged.
pub fn serve_dir(host: &Host, policies: &Path) -> Result<Vec<Arc<Program>>> {
    let mut served = Vec::new();
    for dir in files::program_dirs(policies)? {
        match update(host, &dir) {
            Ok(program) => served.push(program),
            Err(e) => tracing::error!("{e}"),
        }
    }
    Ok(served)
}

/// How long a published version may take to load, compile and pass its suites: longer
/// than a hot reload's [`RELOAD_TIME_BOX`], since a Python or JavaScript component carries
/// its interpreter (tens of megabytes to compile) and the publisher waits for the answer
/// on its own connection, holding up no other program.
pub const PUBLISH_TIME_BOX: Duration = Duration::from_secs(120);

/// The most files a published program may have (manifest, component, catalogue, demo
/// holders, signature and its suites): a bound on what one upload makes the host write.
pub const MAX_PUBLISHED_FILES: usize = 512;

/// A program published by upload ([`publish`]): each file the host reads from a program
/// directory, by its path relative to it (`/`-separated), and `policy.sig`.
pub type Bundle = std::collections::BTreeMap<String, Vec<u8>>;

/// Serves a program sent as `files` (a municipality's `cardrules publish`), exactly as a
/// hot reload would serve it from disk: the files are laid out in a scratch directory
/// named `program`, loaded and verified against the host's trust, gated on their own
/// suites ([`update`]), and only once served written to `policies/program/`, so that the
/// next start serves them too. A refused upload changes nothing: the running version, if
/// any, keeps serving, and the error says why.
pub fn publish(
    host: &Host,
    policies: &Path,
    program: &str,
    files: &Bundle,
) -> Result<Arc<Program>> {
    let bad = |why: String| Error::invalid(format!("cannot publish program `{program}`: {why}"));
    // The id names a directory under `policies`: a plain name, never hidden.
    if !plain_name(program) || program.starts_with('.') {
        return Err(bad(
            "the program id is not a plain name (letters, digits, `.`, `_` and `-`)".into(),
        ));
    }
    if files.len() > MAX_PUBLISHED_FILES {
        return Err(bad(format!(
            "{} files, more than the limit of {MAX_PUBLISHED_FILES}",
            files.len()
        )));
    }
    for path in files.keys() {
        check_bundle_path(path).map_err(|why| bad(format!("file `{path}`: {why}")))?;
    }
    let scratch = tempfile::Builder::new()
        .prefix("cardrules-publish-")
        .tempdir()
        .map_err(|e| Error::host("cannot make a scratch directory to publish into", e))?;
    let staged = scratch.path().join(program);
    write_bundle(&staged, files)?;
    // Whatever is wrong with the version itself is a refusal of it (`Load`); `Invalid`
    // stays for what is wrong with the upload's shape, above.
    let served = update_within(host, &staged, PUBLISH_TIME_BOX).map_err(|e| match e {
        Error::Invalid(_) => Error::load(program, e),
        other => other,
    })?;
    persist(&policies.join(program), files).map_err(|e| {
        Error::host(
            format!(
                "program `{program}` is served, but cannot be written to `{}` for the next start",
                policies.display()
            ),
            e,
        )
    })?;
    Ok(served)
}

/// A bundle's path: relative, `/`-separated, of plain names (letters, digits, `.`, `_`,
/// `-`), never `.` or `..`, at most 8 deep.
fn check_bundle_path(path: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 8 {
        return Err("more than 8 directories deep".into());
    }
    if !parts.into_iter().all(plain_name) {
        return Err(
            "not a relative path of plain names (letters, digits, `.`, `_` and `-`)".into(),
        );
    }
    Ok(())
}

/// A file or directory name of letters, digits, `.`, `_` and `-`; never `.` or `..`.
fn plain_name(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 128
        && part != "."
        && part != ".."
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn write_bundle(dir: &Path, files: &Bundle) -> Result<()> {
    for (path, bytes) in files {
        let to = dir.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::host(format!("cannot create `{}`", parent.display()), e))?;
        }
        std::fs::write(&to, bytes)
            .map_err(|e| Error::host(format!("cannot write `{}`", to.display()), e))?;
    }
    Ok(())
}

/// Writes `files` into the program directory `dir`, each file whole (written beside, then
/// renamed), the manifest and signature last; then removes the files the host read from
/// the previous version that the new one does not have (a suite taken out).
fn persist(dir: &Path, files: &Bundle) -> std::io::Result<()> {
    use crate::program::manifest::{MANIFEST_FILE, SIGNATURE_FILE};
    let previous: Vec<String> = crate::program::manifest::read_program_bytes(dir)
        .map(|read| read.files.into_keys().collect())
        .unwrap_or_default();
    let last = |path: &&String| path.as_str() == MANIFEST_FILE || path.as_str() == SIGNATURE_FILE;
    let (late, early): (Vec<&String>, Vec<&String>) = files.keys().partition(last);
    for path in early.into_iter().chain(late) {
        let to = dir.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let beside = to.with_file_name(format!(
            ".{}.publishing",
            to.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        std::fs::write(&beside, &files[path])?;
        std::fs::rename(&beside, &to)?;
    }
    for path in previous {
        if !files.contains_key(&path) {
            std::fs::remove_file(dir.join(&path))?;
        }
    }
    if !files.contains_key(SIGNATURE_FILE) {
        match std::fs::remove_file(dir.join(SIGNATURE_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
