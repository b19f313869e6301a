//! Pulling the programs the city rolls out: a long poll on `GET /v1/venue/programs` with
//! the last `ETag` (nothing is transferred while nothing changed; a new version is seen
//! within a poll's turnaround), then, for each version the venue does not serve yet, its
//! bundle — checked against the digests announced before anything else looks at it — and
//! the same gate as `cardrules publish`: verified against the venue's own trust file,
//! the program's own suites passed, only then served and written to the venue's policies
//! directory. Whatever goes wrong leaves the serving version as it was, with a log line
//! naming the cause; a refused version is reported, and not fetched again until the city
//! rolls out another.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use cardrules::Host;
use cardrules_server::upstream::{BundleBody, RefusedVersion, RolledOut, Rollout};

use crate::city::City;
use crate::follow::Followers;
use crate::report::Report;

/// How long the city may hold a long poll.
const WAIT_SECONDS: u64 = 25;
/// Waits between attempts while the city cannot be reached: doubling, up to the last.
const BACKOFF: [u64; 5] = [1, 2, 4, 8, 10];

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// Pulls the city's rollout for ever.
pub(crate) fn run(
    host: &Host,
    policies: &Path,
    city: &City,
    report: &Report,
    followers: &Followers,
) {
    let mut etag: Option<String> = None;
    // Bundles refused, by digest: not fetched again.
    let mut refused: BTreeSet<String> = BTreeSet::new();
    let mut failures = 0usize;
    // The cause last logged: a streak of the same failure is logged once, a new cause
    // again.
    let mut logged: Option<String> = None;
    loop {
        let path = format!("/v1/venue/programs?wait={WAIT_SECONDS}");
        let outcome = city
            .get(&path, etag.as_deref())
            .map_err(|e| format!("cannot reach it: {e}"))
            .and_then(|fetched| match fetched.status {
                304 => Ok(None),
                200 => serde_json::from_slice::<Rollout>(&fetched.body)
                    .map(|rollout| Some((rollout, fetched.etag)))
                    .map_err(|e| format!("its rollout is not one: {e}")),
                status => Err(format!("it answered {status}: {}", fetched.error())),
            });
        match outcome {
            Ok(None) => {
                failures = 0;
                logged = None;
            }
            Ok(Some((rollout, tag))) => {
                failures = 0;
                logged = None;
                let complete = apply(host, policies, city, report, &rollout, &mut refused);
                for program in &rollout.programs {
                    if host.program(&program.program).is_ok() {
                        followers.ensure(&program.program);
                    }
                }
                // A rollout not wholly applied (a transfer that broke off) is asked for
                // again at once, not waited on.
                etag = if complete { tag } else { None };
                if !complete {
                    std::thread::sleep(Duration::from_secs(BACKOFF[0]));
                }
            }
            Err(why) => {
                let wait = BACKOFF[failures.min(BACKOFF.len() - 1)];
                if logged.as_deref() != Some(why.as_str()) {
                    tracing::warn!(
                        "cannot pull programs from the city host `{}`: {why}; serving the programs kept here, trying again",
                        city.url()
                    );
                    logged = Some(why);
                }
                failures += 1;
                std::thread::sleep(Duration::from_secs(wait));
            }
        }
    }
}

/// Serves each version of `rollout` the venue does not serve yet; whether each was
/// settled (served, or refused for good) rather than left for a retry.
fn apply(
    host: &Host,
    policies: &Path,
    city: &City,
    report: &Report,
    rollout: &Rollout,
    refused: &mut BTreeSet<String>,
) -> bool {
    let mut complete = true;
    for announced in &rollout.programs {
        let current = host.program(&announced.program).ok();
        if current
            .as_ref()
            .is_some_and(|p| p.sources.digest == announced.bundle)
            || refused.contains(&announced.bundle)
        {
            continue;
        }
        match pull(host, policies, city, announced) {
            Ok(served) => {
                tracing::info!(
                    program = announced.program,
                    version = served.0,
                    digest = served.1,
                    "serving the version the city rolled out"
                );
                report.served(host);
            }
            Err(Pulled::Again(why)) => {
                complete = false;
                tracing::warn!(
                    "cannot pull version {} of `{}` from the city host `{}`: {why}; {}",
                    announced.version,
                    announced.program,
                    city.url(),
                    still_serving(current.as_deref())
                );
            }
            Err(Pulled::Refused(why)) => {
                refused.insert(announced.bundle.clone());
                tracing::error!(
                    "refused version {} of `{}` from the city host `{}`: {why}; {}",
                    announced.version,
                    announced.program,
                    city.url(),
                    still_serving(current.as_deref())
                );
                report.refused(RefusedVersion {
                    program: announced.program.clone(),
                    version: announced.version.clone(),
                    digest: announced.digest.clone(),
                    error: why,
                    at: now(),
                });
            }
        }
    }
    complete
}

fn still_serving(current: Option<&cardrules::Program>) -> String {
    match current {
        Some(program) => format!(
            "still serving version {} ({})",
            program.policy.info.version, program.policy.digest
        ),
        None => "the program is not served here yet".to_string(),
    }
}

/// Why a version is not served: for now (try again), or for good (this version).
enum Pulled {
    Again(String),
    Refused(String),
}

/// Fetches, checks and serves one announced version; its version and digest once served.
fn pull(
    host: &Host,
    policies: &Path,
    city: &City,
    announced: &RolledOut,
) -> Result<(String, String), Pulled> {
    let path = format!("/v1/venue/programs/{}/bundle", announced.program);
    let fetched = city
        .get(&path, None)
        .map_err(|e| Pulled::Again(format!("the transfer failed: {e}")))?;
    if fetched.status != 200 {
        return Err(Pulled::Again(format!(
            "the city answered {}: {}",
            fetched.status,
            fetched.error()
        )));
    }
    // A body that does not parse is a transfer gone wrong or a city answering garbage:
    // asked again later, never served.
    let body: BundleBody = serde_json::from_slice(&fetched.body).map_err(|e| {
        Pulled::Again(format!(
            "the bundle is not one ({} bytes): {e}",
            fetched.body.len()
        ))
    })?;
    if body.program != announced.program || body.bundle != announced.bundle {
        // The city rolled out another version meanwhile: the next poll says which.
        return Err(Pulled::Again(format!(
            "the city sent `{}` {} instead of the version announced; asking again",
            body.program, body.bundle
        )));
    }
    let mut files = cardrules::loader::Bundle::new();
    for (path, encoded) in &body.files {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| Pulled::Refused(format!("file `{path}` is not base64: {e}")))?;
        files.insert(path.clone(), bytes);
    }
    let digest = cardrules::bundle_digest(&files);
    if digest != announced.bundle {
        return Err(Pulled::Refused(format!(
            "the files' digest is {digest}, not the {} announced: the bundle was altered or damaged",
            announced.bundle
        )));
    }
    match cardrules::loader::publish(host, policies, &announced.program, &files) {
        Ok(served) if served.policy.digest != announced.digest => {
            // Served (it passed the venue's own checks), but not what was announced.
            tracing::warn!(
                "`{}` served with component digest {}, though the city announced {}",
                announced.program,
                served.policy.digest,
                announced.digest
            );
            Ok((
                served.policy.info.version.clone(),
                served.policy.digest.clone(),
            ))
        }
        Ok(served) => Ok((
            served.policy.info.version.clone(),
            served.policy.digest.clone(),
        )),
        Err(e @ cardrules::Error::Load { .. }) | Err(e @ cardrules::Error::Invalid(_)) => {
            Err(Pulled::Refused(e.to_string()))
        }
        Err(e) => Err(Pulled::Again(e.to_string())),
    }
}
