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
