//! A program as the host serves it: its files read from disk within bounds ([`files`]),
//! its manifest, catalogue and demo holders ([`manifest`]) checked against its schema
//! ([`schema`]) and signature ([`signing`]), and its policy compiled — all loaded at once
//! by [`Program::load`], so that a served program is always a consistent whole.

pub mod files;
pub mod manifest;
pub mod schema;
pub mod signing;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::ids;
use crate::ledger::MAX_UNITS;
use crate::model::{AttributeValue, Holder, Offer, PolicyRef};
use crate::policy::{CompiledPolicy, Context, Sandbox};
use manifest::ProgramFiles;
use signing::Trust;

/// Reasons the host gives itself, before or instead of the policy.
pub const UNKNOWN_CARD: &str = "unknown-card";
pub const UNKNOWN_OFFER: &str = "unknown-offer";
pub const POLICY_ERROR: &str = "policy-error";
/// The card's holder was erased: nothing is decided on it again.
pub const ERASED: &str = "erased";
/// The card's holder is restricted: its data is kept, nothing is decided.
pub const RESTRICTED: &str = "restricted";

/// The venue cannot decide the request alone while it cannot reach its city: its lease
/// does not cover what the decision reads or changes (see docs/offline.md).
pub const OFFLINE: &str = "offline";

/// English messages for the host's own reasons, used when a manifest has none.
pub(crate) const HOST_MESSAGES: &[(&str, &str)] = &[
    (UNKNOWN_CARD, "This card is not known to the program."),
    (
        UNKNOWN_OFFER,
        "This offer is not in the program's catalogue.",
    ),
    (
        POLICY_ERROR,
        "The program's rules could not be applied; please try again later.",
    ),
    (
        ERASED,
        "This card's holder was erased: the card can no longer be used.",
    ),
    (
        RESTRICTED,
        "This card is restricted: nothing can be done with it for now.",
    ),
    (
        OFFLINE,
        "This cannot be decided while the venue is offline.",
    ),
];

/// The files a version was loaded from, exactly as read and verified: what a city host
/// hands its venue hosts (see `loader::publish`, which takes the same shape).
#[derive(Debug)]
pub struct Sources {
    /// Each file the host read from the program's directory by its path relative to it
    /// (`/`-separated), and `policy.sig` if the version is signed.
    pub files: crate::loader::Bundle,
    /// The digest of them all together ([`bundle_digest`]).
    pub digest: String,
}

/// `sha256:` over a program's files, each path and its bytes length-prefixed in path
/// order: two bundles with the same digest hold the same files with the same bytes.
pub fn bundle_digest(files: &crate::loader::Bundle) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (path, bytes) in files {
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    format!("sha256:{:x}", hash.finalize())
}

/// A loaded program: its files, its calendar and its compiled policy.
pub struct Program {
    pub files: ProgramFiles,
    pub calendar: Calendar,
    pub policy: Arc<CompiledPolicy>,
    /// When this version was loaded.
    pub loaded_at: jiff::Timestamp,
    /// The files it was loaded from.
    pub sources: Arc<Sources>,
    pub(crate) context: Arc<Context>,
    /// Every reason a decision of this program may carry: the policy's and the host's.
    pub(crate) reasons: HashSet<String>,
}

impl Program {
    /// The program id.
    pub fn id(&self) -> &str {
        &self.files.manifest.program
    }

    /// Reads the program in `dir`, checks its signature against `trust`, compiles it, and
    /// checks that its parts agree: messages for every reason, demo holders that
    /// registration would accept.
    pub fn load(sandbox: &Sandbox, trust: &Trust, dir: &Path) -> Result<Program> {
        // Every file is read once; the bytes verified are the bytes parsed and compiled.
        let read = manifest::read_program_bytes(dir)?;
        trust
            .verify(
                &read.name,
                read.signature.as_deref(),
                &read.files,
                &read.component,
            )
            .map_err(|e| Error::load(&read.name, e))?;
        let files = manifest::parse_program(&read)?;
        let id = files.manifest.program.clone();
        let fail = |e: String| Error::load(&id, e);
        if !trust.allows_unsigned()
            && let Some((card, asset)) = files.holders.iter().find_map(|h| {
                h.balances
                    .iter()
                    .find(|(_, units)| **units != 0)
                    .map(|(asset, _)| (&h.card, asset))
            })
        {
            return Err(fail(format!(
                "`holders.toml` gives demo card `{card}` a starting balance of `{asset}`: demo \
                 holders never create balances where signatures are required (they are for \
                 development, with `--allow-unsigned`); remove the balance and sign again"
            )));
        }
        let calendar = Calendar::new(&files.manifest.time_zone).map_err(|e| fail(e.to_string()))?;
        let config: BTreeMap<String, String> = files
            .manifest
            .config
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    AttributeValue::Text(s) => s.clone(),
                    AttributeValue::Integer(n) => n.to_string(),
                    AttributeValue::Boolean(b) => b.to_string(),
                };
                (key.clone(), text)
            })
            .collect();
        let context = Arc::new(Context {
            calendar: calendar.clone(),
            config: Arc::new(config),
            limits: files.manifest.limits,
        });
        let bytes = read.component_bytes();
        let policy = sandbox.compile(bytes, context.clone()).map_err(fail)?;
        if policy.info.program != id {
            return Err(fail(format!(
                "component describes itself as program `{}`",
                policy.info.program
            )));
        }
        let mut reasons: HashSet<String> = policy.info.reasons.iter().cloned().collect();
        for reason in &policy.info.reasons {
            for language in &files.manifest.languages {
                let has = files
                    .manifest
                    .messages
                    .get(reason)
                    .is_some_and(|m| m.contains_key(language));
                if !has {
                    return Err(fail(format!(
                        "`policy.toml` has no `{language}` message for reason `{reason}`"
                    )));
                }
            }
        }
        let asked = &files.manifest.allowances;
        for action in asked.per_offer.iter().chain(&asked.per_card) {
            if !policy.info.actions.contains(action) {
                return Err(fail(format!(
                    "`policy.toml` `[allowances]` names action `{action}`, which the policy does not describe (it describes {})",
                    policy
                        .info
                        .actions
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        reasons.extend(HOST_MESSAGES.iter().map(|(code, _)| code.to_string()));
        for reason in files.manifest.messages.keys() {
            if !reasons.contains(reason) {
                return Err(fail(format!(
                    "`policy.toml` has a message for reason `{reason}`, which the policy never gives"
                )));
            }
        }
        let mut bundle = read.files.clone();
        if let Some(signature) = &read.signature {
            bundle.insert(manifest::SIGNATURE_FILE.to_string(), signature.clone());
        }
        let sources = Arc::new(Sources {
            digest: bundle_digest(&bundle),
            files: bundle,
        });
        let program = Program {
            files,
            calendar,
            policy: Arc::new(policy),
            loaded_at: jiff::Timestamp::now(),
            sources,
            context,
            reasons,
        };
        // Their attributes were checked against the schema as they were parsed; their
        // balances are checked here, once: a served program's demo holders can always be
        // registered.
        for holder in &program.files.holders {
            ids::check(ids::Kind::Card, "card", &holder.card)
                .and_then(|()| program.check_balances(holder))
                .map_err(|e| Error::load(&id, format!("`holders.toml`: {e}")))?;
        }
        Ok(program)
    }

    /// The same program with `offers` added to, or replacing entries of, its catalogue
    /// (a suite's `[[offers]]`). Each offer's attributes are checked against the
    /// manifest's `[schema.offer]`, as the catalogue's are at load; the error names the
    /// offer, the key, the type expected and the value.
    pub fn with_offers(&self, offers: &[Offer]) -> Result<Program> {
        let mut files = self.files.clone();
        for offer in offers {
            files
                .manifest
                .schema
                .check_offer(offer)
                .map_err(Error::invalid)?;
            files.catalogue.insert(offer.id.clone(), offer.clone());
        }
        Ok(Program {
            files,
            calendar: self.calendar.clone(),
            policy: self.policy.clone(),
            loaded_at: self.loaded_at,
            sources: self.sources.clone(),
            context: self.context.clone(),
            reasons: self.reasons.clone(),
        })
    }

    /// Whether `reason` is one the policy declares or the host gives.
    pub fn knows_reason(&self, reason: &str) -> bool {
        self.reasons.contains(reason)
    }

    /// The message for `reason` in `language` (default: the program's first language).
    pub fn message(&self, reason: &str, language: Option<&str>) -> String {
        let languages = &self.files.manifest.languages;
        let language = language.unwrap_or_else(|| languages.first().map_or("en", String::as_str));
        let messages = self.files.manifest.messages.get(reason);
        messages
            .and_then(|m| m.get(language).or_else(|| m.get("en")))
            .cloned()
            .or_else(|| {
                HOST_MESSAGES
                    .iter()
                    .find(|(code, _)| *code == reason)
                    .map(|(_, m)| m.to_string())
            })
            .unwrap_or_else(|| reason.to_string())
    }

    /// Which policy this is: program, version and the component's digest.
    pub fn policy_ref(&self) -> PolicyRef {
        PolicyRef {
            program: self.id().to_string(),
            version: self.policy.info.version.clone(),
            digest: self.policy.digest.clone(),
        }
    }

    /// Checks a holder about to be registered: its attributes must be declared in the
    /// manifest's `[schema.holder]` with values of their declared type (and range or
    /// words), required ones present; starting balances must be in assets the program
    /// declares and within the ledger's range. A failure is the caller's (bad input: HTTP
    /// 400, exit 2).
    pub fn check_holder(&self, holder: &Holder) -> Result<()> {
        ids::check(ids::Kind::Card, "card", &holder.card)?;
        self.files
            .manifest
            .schema
            .check_holder(holder)
            .map_err(Error::invalid)?;
        self.check_balances(holder)
    }

    /// Checks a holder's starting balances (see [`Program::check_holder`]).
    fn check_balances(&self, holder: &Holder) -> Result<()> {
        for (asset, &units) in &holder.balances {
            if !self.files.manifest.assets.iter().any(|a| a == asset) {
                return Err(Error::invalid(format!(
                    "holder `{}`: program `{}` has no asset `{asset}`",
                    holder.card,
                    self.id()
                )));
            }
            if !(0..=MAX_UNITS).contains(&units) {
                return Err(Error::invalid(format!(
                    "holder `{}`: starting balance of `{asset}` must be between 0 and {MAX_UNITS}, not {units}",
                    holder.card
                )));
            }
        }
        Ok(())
    }
}
