//! Signed policies: a municipality signs its program directory with an ed25519 key
//! (`cardrules keygen`, `cardrules sign`); the operator lists the public keys it trusts for
//! each program in a trust file; the host loads a program only if its `policy.sig`
//! verifies with one of them and covers exactly the files it reads.
//!
//! What is signed is every file of the program directory that can change a decision or
//! the ledger — `policy.toml` (limits, config, messages), the component it names,
//! `catalogue.toml` (prices, limits, capacities), `holders.toml` (demo holders) and every
//! suite under `suites/` (which gates a reload) — as a short statement naming the program
//! and each file's SHA-256 digest, files in byte order of their paths:
//!
//! ```text
//! cardrules policy signature v2
//! program: bergen
//! file: "bergen.wasm" sha256:…
//! file: "catalogue.toml" sha256:…
//! file: "policy.toml" sha256:…
//! ```
//!
//! A file changed, added or removed after signing makes the program refuse to load, naming
//! the file. The bytes verified are the very bytes then parsed and compiled (each file is
//! read once, see [`super::manifest::read_program_bytes`]).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The signature file in a program directory.
pub use super::manifest::SIGNATURE_FILE;
/// The first line of the statement signed, and the `format` of `policy.sig`.
pub const FORMAT: &str = "cardrules policy signature v2";
const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";

/// `sha256:` and the hex digest of `bytes`, as digests are shown everywhere.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The statement a signature covers: the program and every file's digest. Paths are
/// quoted as JSON strings, so that no file name can forge a line.
fn statement(program: &str, files: &BTreeMap<String, String>) -> String {
    let mut text = format!("{FORMAT}\nprogram: {program}\n");
    for (path, digest) in files {
        let quoted = serde_json::to_string(path).unwrap_or_default();
        text.push_str(&format!("file: {quoted} {digest}\n"));
    }
    text
}

/// `policy.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// [`FORMAT`].
    pub format: String,
    pub program: String,
    /// The public key that signed, `ed25519:` and base64.
    pub key: String,
    /// The signature of the statement, base64.
    pub signature: String,
    /// Path in the program directory → digest of the file the signature covers.
    pub files: BTreeMap<String, String>,
}

/// Which policies the host accepts.
#[derive(Debug, Clone)]
pub struct Trust {
    allow_unsigned: bool,
    /// Program id (or `*` for every program) → trusted keys.
    keys: BTreeMap<String, Vec<VerifyingKey>>,
    /// Where the keys came from, for error messages.
    source: String,
}

/// The trust file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    /// Program id (or `*`) → public keys (`ed25519:…`).
    #[serde(default)]
    programs: BTreeMap<String, Vec<String>>,
}

impl Trust {
    /// Accepts unsigned and unverified policies: for development only.
    pub fn allow_unsigned() -> Trust {
        Trust {
            allow_unsigned: true,
            keys: BTreeMap::new(),
            source: "--allow-unsigned".into(),
        }
    }

    /// Trusts no key: every policy is refused. What a host starts with.
    pub fn nobody() -> Trust {
        Trust {
            allow_unsigned: false,
            keys: BTreeMap::new(),
            source: "no trust file".into(),
        }
    }

    /// Trusts `key` for `program` (`*` for every program).
    pub fn with_key(mut self, program: &str, key: &str) -> Result<Trust> {
        let key = parse_public(key)?;
        self.keys.entry(program.to_string()).or_default().push(key);
        Ok(self)
    }

    /// Reads a trust file:
    ///
    /// ```toml
    /// [programs]
    /// bergen = ["ed25519:…"]
    /// "*" = ["ed25519:…"]     # trusted for every program
    /// ```
    pub fn from_file(path: &Path) -> Result<Trust> {
        let fail = |why: String| Error::invalid(format!("cannot read trust file: {why}"));
        let file: TrustFile = super::files::read_toml(path).map_err(|e| fail(e.to_string()))?;
        let mut trust = Trust {
            source: format!("`{}`", path.display()),
            ..Trust::nobody()
        };
        for (program, keys) in file.programs {
            for key in keys {
                let key = parse_public(&key)
                    .map_err(|e| fail(format!("`{}`: program `{program}`: {e}", path.display())))?;
                trust.keys.entry(program.clone()).or_default().push(key);
            }
        }
        if trust.keys.is_empty() {
            return Err(fail(format!(
                "`{}` trusts no key, so every program would be refused; list keys under `[programs]`",
                path.display()
            )));
        }
        Ok(trust)
    }

    /// Whether unsigned policies are accepted.
    pub fn allows_unsigned(&self) -> bool {
        self.allow_unsigned
    }

    /// Checks that `signature` (the bytes of `policy.sig`, if any) is a signature, by a key
    /// trusted for `program`, of exactly `files` (path → the bytes read), no more, no less.
    /// `component` is the component's path, named as such in errors.
    pub fn verify(
        &self,
        program: &str,
        signature: Option<&[u8]>,
        files: &BTreeMap<String, Vec<u8>>,
        component: &str,
    ) -> Result<(), String> {
        if self.allow_unsigned {
            return Ok(());
        }
        let Some(signature) = signature else {
            return Err(format!(
                "unsigned: no `{SIGNATURE_FILE}` (sign it with `cardrules sign`, or allow unsigned policies for development with `--allow-unsigned`)"
            ));
        };
        let sig = parse_signature(signature)?;
        if sig.program != program {
            return Err(format!(
                "`{SIGNATURE_FILE}` is for program `{}`",
                sig.program
            ));
        }
        let key = parse_public(&sig.key).map_err(|e| format!("`{SIGNATURE_FILE}`: {e}"))?;
        let trusted = [program, "*"]
            .iter()
            .filter_map(|p| self.keys.get(*p))
            .flatten()
            .any(|k| *k == key);
        if !trusted {
            return Err(format!(
                "signed by key `{}`, which {} does not trust for program `{program}`",
                sig.key, self.source
            ));
        }
        let bytes: [u8; 64] = BASE64
            .decode(sig.signature.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!("`{SIGNATURE_FILE}`: `signature` is not a base64 ed25519 signature")
            })?;
        key.verify_strict(
            statement(program, &sig.files).as_bytes(),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| {
            format!("`{SIGNATURE_FILE}`: the signature does not verify (tampered or forged)")
        })?;
        // The signature is genuine: now the files must be exactly those it covers.
        for (path, bytes) in files {
            let actual = digest(bytes);
            match sig.files.get(path) {
                None => {
                    return Err(format!(
                        "`{path}` was added after signing: the signature does not cover it (sign again with `cardrules sign`)"
                    ));
                }
                Some(signed) if *signed != actual && path == component => {
                    return Err(format!(
                        "the component was changed after signing: `{path}` has digest {actual}, the signature covers {signed}"
                    ));
                }
                Some(signed) if *signed != actual => {
                    return Err(format!(
                        "`{path}` was changed after signing: its digest is {actual}, the signature covers {signed}"
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(path) = sig.files.keys().find(|path| !files.contains_key(*path)) {
            return Err(format!(
                "`{path}` was removed after signing: the signature covers it, but it is not there"
            ));
        }
        Ok(())
    }
}

/// Parses `policy.sig`, telling a signature of an older `cardrules sign` (which covered
/// only the component and `policy.toml`) from a malformed one.
fn parse_signature(bytes: &[u8]) -> Result<SignatureFile, String> {
    let fail = |why: String| format!("cannot read `{SIGNATURE_FILE}`: {why}");
    let text = std::str::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(e.message().trim().to_string()))?;
    let older = table.get("format").is_none()
        && (table.contains_key("component") || table.contains_key("manifest"));
    if older {
        return Err(format!(
            "`{SIGNATURE_FILE}` was signed by an older `cardrules sign`, which covered only the component and `policy.toml`, not the catalogue, demo holders and suites; sign again with `cardrules sign`"
        ));
    }
    let sig: SignatureFile = table
        .try_into()
        .map_err(|e: toml::de::Error| fail(e.message().trim().to_string()))?;
    if sig.format != FORMAT {
        return Err(fail(format!(
            "format `{}` is not `{FORMAT}`; sign again with this version's `cardrules sign`",
            sig.format
        )));
    }
    Ok(sig)
}

fn parse_public(text: &str) -> Result<VerifyingKey> {
    let bad = || {
        Error::invalid(format!(
            "`{text}` is not an ed25519 public key (`{PUBLIC_PREFIX}` and 32 bytes in base64)"
        ))
    };
    let encoded = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
    let bytes: [u8; 32] = BASE64
        .decode(encoded)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// A signing key and its public half, as text.
pub struct KeyPair {
    /// `ed25519-secret:` and the 32-byte seed in base64: keep it secret.
    pub secret: String,
    /// `ed25519:` and the 32-byte public key in base64: give it to operators.
    pub public: String,
}

/// A new key pair from the operating system's randomness.
pub fn keygen() -> Result<KeyPair> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| Error::invalid(format!("cannot get randomness for a key: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    Ok(KeyPair {
        secret: format!("{SECRET_PREFIX}{}", BASE64.encode(seed)),
        public: format!(
            "{PUBLIC_PREFIX}{}",
            BASE64.encode(key.verifying_key().as_bytes())
        ),
    })
}

fn parse_secret(text: &str) -> Result<SigningKey> {
    let bad = || {
        Error::invalid(format!(
            "not an ed25519 secret key (`{SECRET_PREFIX}` and 32 bytes in base64)"
        ))
    };
    let encoded = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(bad)?;
    let seed: [u8; 32] = BASE64
        .decode(encoded)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Signs the program in `dir` with the secret key `secret` (as [`keygen`] writes it):
/// every file the host reads from it (see [`super::manifest::read_program_bytes`]); writes
/// `dir/policy.sig` and returns what was written.
pub fn sign(secret: &str, dir: &Path) -> Result<SignatureFile> {
    let fail = |why: String| Error::invalid(format!("cannot sign `{}`: {why}", dir.display()));
    let key = parse_secret(secret).map_err(|e| fail(e.to_string()))?;
    let read = super::manifest::read_program_bytes(dir).map_err(|e| fail(e.to_string()))?;
    // What is signed must load: a manifest naming another program is refused here.
    let program = super::manifest::parse_program(&read)
        .map_err(|e| fail(e.to_string()))?
        .manifest
        .program;
    let files: BTreeMap<String, String> = read
        .files
        .iter()
        .map(|(path, bytes)| (path.clone(), digest(bytes)))
        .collect();
    let signature = key.sign(statement(&program, &files).as_bytes());
    let file = SignatureFile {
        format: FORMAT.to_string(),
        program: program.clone(),
        key: format!(
            "{PUBLIC_PREFIX}{}",
            BASE64.encode(key.verifying_key().as_bytes())
        ),
        signature: BASE64.encode(signature.to_bytes()),
        files,
    };
    let text = toml::to_string(&file).map_err(|e| fail(e.to_string()))?;
    let text = format!(
        "# Signature of program `{program}` (cardrules sign) over every file listed under\n# [files]. Verify with the public key in `key`.\n{text}"
    );
    std::fs::write(dir.join(SIGNATURE_FILE), text)
        .map_err(|e| fail(format!("cannot write `{SIGNATURE_FILE}`: {e}")))?;
    Ok(file)
}

#[cfg(test)]
mod tests;
