//! Signed policies: a municipality signs its program's component and manifest with an
//! ed25519 key (`cardrules keygen`, `cardrules sign`); the operator lists the public keys it
//! trusts for each program in a trust file; the host loads a program only if its
//! `policy.sig` verifies with one of them and covers exactly the files on disk.
//!
//! What is signed is a short statement naming the program and the SHA-256 digests of the
//! component and of `policy.toml` (which carries the limits, config and messages):
//!
//! ```text
//! cardrules policy signature v1
//! program: bergen
//! component: sha256:…
//! manifest: sha256:…
//! ```
//!
//! The catalogue, demo holders and suites are data, not code, and are not signed; a new
//! version must still pass the program's suites before it serves.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The signature file in a program directory.
pub const SIGNATURE_FILE: &str = "policy.sig";
const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";

/// `sha256:` and the hex digest of `bytes`, as digests are shown everywhere.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The statement a signature covers.
fn statement(program: &str, component: &str, manifest: &str) -> String {
    format!(
        "cardrules policy signature v1\nprogram: {program}\ncomponent: {component}\nmanifest: {manifest}\n"
    )
}

/// `policy.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    pub program: String,
    /// Digest of the component the signature covers.
    pub component: String,
    /// Digest of the `policy.toml` the signature covers.
    pub manifest: String,
    /// The public key that signed, `ed25519:` and base64.
    pub key: String,
    /// The signature of the statement, base64.
    pub signature: String,
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
        let file: TrustFile = crate::manifest::read_toml(path).map_err(|e| fail(e.to_string()))?;
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
        Ok(trust)
    }

    /// Whether unsigned policies are accepted.
    pub fn allows_unsigned(&self) -> bool {
        self.allow_unsigned
    }

    /// Checks that `dir/policy.sig` is a signature, by a key trusted for `program`, of
    /// exactly these component and manifest bytes.
    pub fn verify(
        &self,
        program: &str,
        dir: &Path,
        component: &[u8],
        manifest: &[u8],
    ) -> Result<(), String> {
        if self.allow_unsigned {
            return Ok(());
        }
        let path = dir.join(SIGNATURE_FILE);
        if !path.is_file() {
            return Err(format!(
                "unsigned: no `{SIGNATURE_FILE}` (sign it with `cardrules sign`, or allow unsigned policies for development with `--allow-unsigned`)"
            ));
        }
        let sig: SignatureFile = crate::manifest::read_toml(&path).map_err(|e| e.to_string())?;
        if sig.program != program {
            return Err(format!(
                "`{SIGNATURE_FILE}` is for program `{}`",
                sig.program
            ));
        }
        let (component, manifest) = (digest(component), digest(manifest));
        if sig.component != component {
            return Err(format!(
                "the component was changed after signing: its digest is {component}, the signature covers {}",
                sig.component
            ));
        }
        if sig.manifest != manifest {
            return Err(format!(
                "`policy.toml` was changed after signing: its digest is {manifest}, the signature covers {}",
                sig.manifest
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
            statement(program, &component, &manifest).as_bytes(),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| {
            format!("`{SIGNATURE_FILE}`: the signature does not verify (tampered or forged)")
        })
    }
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

/// Signs the program in `dir` with the secret key `secret` (as [`keygen`] writes it) and
/// writes `dir/policy.sig`; returns what was written.
pub fn sign(secret: &str, dir: &Path) -> Result<SignatureFile> {
    let manifest_path = dir.join("policy.toml");
    let fail = |why: String| Error::invalid(format!("cannot sign `{}`: {why}", dir.display()));
    let manifest_bytes = std::fs::read(&manifest_path)
        .map_err(|e| fail(format!("cannot read `policy.toml`: {e}")))?;
    let manifest: crate::manifest::Manifest =
        crate::manifest::read_toml(&manifest_path).map_err(|e| fail(e.to_string()))?;
    let component_path = dir.join(&manifest.component);
    let component_bytes = std::fs::read(&component_path).map_err(|e| {
        fail(format!(
            "cannot read component `{}`: {e}",
            component_path.display()
        ))
    })?;
    let key = parse_secret(secret).map_err(|e| fail(e.to_string()))?;
    let (component, manifest_digest) = (digest(&component_bytes), digest(&manifest_bytes));
    let signature = key.sign(statement(&manifest.program, &component, &manifest_digest).as_bytes());
    let file = SignatureFile {
        program: manifest.program.clone(),
        component,
        manifest: manifest_digest,
        key: format!(
            "{PUBLIC_PREFIX}{}",
            BASE64.encode(key.verifying_key().as_bytes())
        ),
        signature: BASE64.encode(signature.to_bytes()),
    };
    let text = toml::to_string(&file).map_err(|e| fail(e.to_string()))?;
    let text = format!(
        "# Signature of program `{}` (cardrules sign). Verify with the public key in `key`.\n{text}",
        manifest.program
    );
    std::fs::write(dir.join(SIGNATURE_FILE), text)
        .map_err(|e| fail(format!("cannot write `{SIGNATURE_FILE}`: {e}")))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(dir: &Path, component: &[u8], manifest: &str) {
        std::fs::write(dir.join("policy.wasm"), component).unwrap();
        std::fs::write(dir.join("policy.toml"), manifest).unwrap();
    }

    const MANIFEST: &str = "program = \"bergen\"\nname = \"B\"\ntime-zone = \"Europe/Oslo\"\nlanguages = [\"en\"]\ncomponent = \"policy.wasm\"\n";

    fn verify(trust: &Trust, dir: &Path) -> Result<(), String> {
        let component = std::fs::read(dir.join("policy.wasm")).unwrap();
        let manifest = std::fs::read(dir.join("policy.toml")).unwrap();
        trust.verify("bergen", dir, &component, &manifest)
    }

    #[test]
    fn a_signed_program_verifies_and_any_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        program(dir.path(), b"component bytes", MANIFEST);
        let keys = keygen().unwrap();
        let trust = Trust::nobody().with_key("bergen", &keys.public).unwrap();
        assert!(
            verify(&trust, dir.path())
                .unwrap_err()
                .starts_with("unsigned")
        );

        sign(&keys.secret, dir.path()).unwrap();
        verify(&trust, dir.path()).unwrap();
        let wildcard = Trust::nobody().with_key("*", &keys.public).unwrap();
        verify(&wildcard, dir.path()).unwrap();

        std::fs::write(dir.path().join("policy.wasm"), b"component bytes!").unwrap();
        let error = verify(&trust, dir.path()).unwrap_err();
        assert!(
            error.contains("the component was changed after signing"),
            "{error}"
        );
        std::fs::write(dir.path().join("policy.wasm"), b"component bytes").unwrap();

        std::fs::write(
            dir.path().join("policy.toml"),
            format!("{MANIFEST}# more fuel\n"),
        )
        .unwrap();
        let error = verify(&trust, dir.path()).unwrap_err();
        assert!(
            error.contains("`policy.toml` was changed after signing"),
            "{error}"
        );
    }

    #[test]
    fn a_key_trusted_for_another_program_or_a_forged_signature_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        program(dir.path(), b"component bytes", MANIFEST);
        let (ours, theirs) = (keygen().unwrap(), keygen().unwrap());
        sign(&theirs.secret, dir.path()).unwrap();
        let trust = Trust::nobody()
            .with_key("bergen", &ours.public)
            .unwrap()
            .with_key("antwerpen", &theirs.public)
            .unwrap();
        let error = verify(&trust, dir.path()).unwrap_err();
        assert!(
            error.contains("does not trust for program `bergen`"),
            "{error}"
        );

        // Claim our key on their signature: the signature no longer verifies.
        let path = dir.path().join(SIGNATURE_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let their_key = text.lines().find(|l| l.starts_with("key")).unwrap();
        std::fs::write(
            &path,
            text.replace(their_key, &format!("key = \"{}\"", ours.public)),
        )
        .unwrap();
        let error = verify(&trust, dir.path()).unwrap_err();
        assert!(error.contains("does not verify"), "{error}");
    }

    #[test]
    fn keys_and_trust_files_are_checked() {
        assert!(Trust::nobody().with_key("bergen", "ed25519:short").is_err());
        assert!(parse_secret("ed25519:AAAA").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.toml");
        std::fs::write(&path, "[programs]\nbergen = [\"nonsense\"]\n").unwrap();
        let error = Trust::from_file(&path).unwrap_err().to_string();
        assert!(
            error.contains("program `bergen`") && error.contains("`nonsense`"),
            "{error}"
        );
        let keys = keygen().unwrap();
        std::fs::write(
            &path,
            format!("[programs]\nbergen = [\"{}\"]\n", keys.public),
        )
        .unwrap();
        assert!(!Trust::from_file(&path).unwrap().allows_unsigned());
    }
}
