//! Reading a program's files from disk, bounded: only regular files, of a known maximum
//! size, TOML parsed with the file and line named in every error, and suite directories
//! walked to a bounded depth without following links.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::manifest::MANIFEST_FILE;
use crate::error::{Error, Result};

/// Reads a TOML file into `T`, naming the file in every error.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    parse_toml(&read_text(path)?, path)
}

/// The largest TOML file read (manifest, catalogue, holders, suite).
pub const MAX_TEXT_BYTES: u64 = 8 << 20;
/// The largest policy component read.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// Reads a text file, naming it in the error (see [`read_file`]).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path, MAX_TEXT_BYTES)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("cannot read `{}`: not UTF-8 text", path.display())))
}

/// Reads a program's file: only a regular file (a link to one is fine), of at most
/// `limit` bytes — never a FIFO that would block, a device that never ends, or a file
/// that would exhaust memory.
pub(crate) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let fail = |why: String| Error::invalid(format!("cannot read `{}`: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| Error::read(path, e))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > limit {
        return Err(fail(format!(
            "{} bytes, more than the limit of {limit}",
            meta.len()
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let mut bytes = Vec::new();
    // The length can change between the check and the read: read one byte past the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::read(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(fail(format!("more than the limit of {limit} bytes")));
    }
    Ok(bytes)
}

/// Parses TOML `text` into `T`, naming `source` (and the line, when known) in every error.
pub(crate) fn parse_toml<T: DeserializeOwned>(text: &str, source: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(" at line {line}")
            })
            .unwrap_or_default();
        let message = e.message().trim().trim_end_matches('.').to_string();
        Error::invalid(format!(
            "cannot parse `{}`{location}: {message}",
            source.display()
        ))
    })
}

pub(crate) fn utf8<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    std::str::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("cannot read `{}`: not UTF-8 text", path.display())))
}

/// The program directories under `policies`: those that hold a `policy.toml`.
pub fn program_dirs(policies: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(policies).map_err(|e| Error::Read {
        what: "policies directory",
        path: policies.to_path_buf(),
        source: e,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| is_program_dir(path))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Whether `dir` is a program directory: it holds a manifest.
pub fn is_program_dir(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
}

/// Finds the `*.toml` files under `dir` (suites), sorted, to a bounded depth and count.
pub fn collect_toml(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    collect_toml_within(dir, found, 0)
}

/// How deep suite directories may nest.
const MAX_SUITE_DEPTH: usize = 8;
/// The most suite files one directory tree may hold.
const MAX_SUITE_FILES: usize = 10_000;

/// Walks `dir` for `*.toml` files without following links to directories (two links to
/// each other would make 2^40 paths), to a bounded depth and count; a link skipped (to a
/// directory, or leading nowhere) is named in a warning. A `*.toml` link is read as a
/// suite, and refused there if it leads to no regular file (a loop, a device).
fn collect_toml_within(dir: &Path, found: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if depth > MAX_SUITE_DEPTH {
        return Err(Error::invalid(format!(
            "cannot read `{}`: suites nest deeper than {MAX_SUITE_DEPTH} directories",
            dir.display()
        )));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::read(dir, e))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let linked_or_plain =
            std::fs::symlink_metadata(&path).map_err(|e| Error::read(&path, e))?;
        let is_toml = path.extension().is_some_and(|ext| ext == "toml");
        if linked_or_plain.is_dir() {
            collect_toml_within(&path, found, depth + 1)?;
        } else if linked_or_plain.is_symlink() && !is_toml {
            // Not followed, but not passed over in silence: a suite someone meant to add
            // that way would otherwise never run.
            match std::fs::metadata(&path) {
                Ok(target) if target.is_dir() => tracing::warn!(
                    "skipping `{}`: a link to a directory; suites are not looked for through links",
                    path.display()
                ),
                Err(e) => tracing::warn!(
                    "skipping `{}`: a link that leads to no file (a loop, or a missing target): {e}",
                    path.display()
                ),
                // A link to a file that is not a suite, like any file that is not one.
                Ok(_) => {}
            }
        } else if is_toml {
            if found.len() >= MAX_SUITE_FILES {
                return Err(Error::invalid(format!(
                    "cannot read `{}`: more than {MAX_SUITE_FILES} suite files",
                    dir.display()
                )));
            }
            // Read when loaded, where anything but a regular file (a FIFO, a link to a
            // device) is refused with a clear error; a link to a directory is not followed.
            found.push(path);
        }
    }
    Ok(())
}
