//! `cardrules publish --to URL --token FILE DIR`: sends a built, signed program directory
//! to a running city host (`PUT /v1/programs/{program}/policy`), which verifies it, runs
//! its suites and serves it, or refuses it and keeps the running version. Exit 0 when the
//! version is active, 1 when it was refused or the host could not take it (the reason on
//! stderr), 2 on bad input (the directory, the token file, the URL, or a request the host
//! calls malformed or unauthorised).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;

use crate::exit;

/// How long the whole upload and the host's checks (its suites) may take: the host's own
/// time box for a reload is 30 s.
const TIMEOUT: Duration = Duration::from_secs(180);

pub fn publish(to: &str, token_file: &Path, dir: &Path) -> anyhow::Result<u8> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read token file `{}`", token_file.display()))?;
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!(
            "token file `{}` does not hold one token (as `cardrules token` prints it)",
            token_file.display()
        );
    }
    let read = cardrules::read_program_bytes(dir)
        .with_context(|| format!("cannot read program directory `{}`", dir.display()))?;
    let program = read.manifest.program.clone();
    if read.signature.is_none() {
        eprintln!(
            "warning: `{}` has no `{}`: a host that requires signatures will refuse it (sign it with `cardrules sign`)",
            dir.display(),
            cardrules::SIGNATURE_FILE
        );
    }
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut files: serde_json::Map<String, serde_json::Value> = read
        .files
        .iter()
        .map(|(path, bytes)| (path.clone(), encode(bytes).into()))
        .collect();
    if let Some(signature) = &read.signature {
        files.insert(
            cardrules::SIGNATURE_FILE.to_string(),
            encode(signature).into(),
        );
    }
    let base = to.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("`--to` must be an `http://` or `https://` URL, not `{to}`");
    }
    let url = format!("{base}/v1/programs/{program}/policy");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    eprintln!("publishing `{program}` ({} files) to {base}…", files.len());
    let sent = agent
        .put(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(serde_json::json!({ "files": files }));
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            eprintln!("error: cannot publish `{program}` to `{base}`: {e}");
            return Ok(exit::STEP_FAILED);
        }
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let error = body
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or(text.as_str())
        .to_string();
    match status {
        200 => {
            let field = |name: &str| {
                body.get(name)
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string()
            };
            println!(
                "active: `{program}` version {} ({}) at {base}",
                field("version"),
                field("digest")
            );
            Ok(exit::OK)
        }
        422 => {
            eprintln!("refused: {error}");
            Ok(exit::STEP_FAILED)
        }
        400..=499 => {
            eprintln!("error: cannot publish `{program}` ({status}): {error}");
            Ok(exit::BAD_INPUT)
        }
        _ => {
            eprintln!("error: the host could not take `{program}` ({status}): {error}");
            Ok(exit::STEP_FAILED)
        }
    }
}
