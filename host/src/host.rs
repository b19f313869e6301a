//! The host: loaded programs plus a ledger, and the decision pipeline that joins them —
//! enrich the request, evaluate the policy, validate its effects, commit atomically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::ledger::{self, Effect, Ledger, Record, Txn};
use crate::manifest::{self, ProgramFiles};
use crate::model::{AttributeValue, CardState, Decision, Holder, Offer, PolicyRef, Request};
use crate::sandbox::{CompiledPolicy, Context, Sandbox};
use crate::signing::Trust;
use crate::world::{self, wit};

/// Reasons the host gives itself, before or instead of the policy.
pub const UNKNOWN_CARD: &str = "unknown-card";
pub const UNKNOWN_OFFER: &str = "unknown-offer";
pub const POLICY_ERROR: &str = "policy-error";

/// English messages for the host's own reasons, used when a manifest has none.
const HOST_MESSAGES: &[(&str, &str)] = &[
    (UNKNOWN_CARD, "This card is not known to the program."),
    (
        UNKNOWN_OFFER,
        "This offer is not in the program's catalogue.",
    ),
    (
        POLICY_ERROR,
        "The program's rules could not be applied; please try again later.",
    ),
];

/// A loaded program: its files, its calendar and its compiled policy.
pub struct Program {
    pub files: ProgramFiles,
    pub calendar: Calendar,
    pub policy: Arc<CompiledPolicy>,
    /// When this version was loaded.
    pub loaded_at: jiff::Timestamp,
    config: Arc<BTreeMap<String, String>>,
    reasons: HashSet<String>,
}

impl Program {
    /// The program id.
    pub fn id(&self) -> &str {
        &self.files.manifest.program
    }

    /// Reads the program in `dir`, checks its signature against `trust`, compiles it, and
    /// checks that its parts agree.
    pub fn load(sandbox: &Sandbox, trust: &Trust, dir: &Path) -> Result<Program> {
        let files = manifest::read_program(dir)?;
        let id = files.manifest.program.clone();
        let fail = |e: String| Error::load(&id, e);
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
        let config = Arc::new(config);
        let bytes = std::fs::read(&files.component_path).map_err(|e| {
            fail(format!(
                "cannot read component `{}`: {e} (build the policies with `cargo build --release`)",
                files.component_path.display()
            ))
        })?;
        let manifest_bytes = std::fs::read(dir.join("policy.toml"))
            .map_err(|e| fail(format!("cannot read `policy.toml`: {e}")))?;
        trust
            .verify(&id, dir, &bytes, &manifest_bytes)
            .map_err(fail)?;
        let context = Context {
            calendar: calendar.clone(),
            config: config.clone(),
            limits: files.manifest.limits,
        };
        let policy = sandbox.compile(&bytes, context).map_err(fail)?;
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
        reasons.extend(HOST_MESSAGES.iter().map(|(code, _)| code.to_string()));
        for reason in files.manifest.messages.keys() {
            if !reasons.contains(reason) {
                return Err(fail(format!(
                    "`policy.toml` has a message for reason `{reason}`, which the policy never gives"
                )));
            }
        }
        Ok(Program {
            files,
            calendar,
            policy: Arc::new(policy),
            loaded_at: jiff::Timestamp::now(),
            config,
            reasons,
        })
    }

    /// The same program with `offers` added to, or replacing entries of, its catalogue.
    pub fn with_offers(&self, offers: &[Offer]) -> Program {
        let mut files = self.files.clone();
        for offer in offers {
            files.catalogue.insert(offer.id.clone(), offer.clone());
        }
        Program {
            files,
            calendar: self.calendar.clone(),
            policy: self.policy.clone(),
            loaded_at: self.loaded_at,
            config: self.config.clone(),
            reasons: self.reasons.clone(),
        }
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
}

/// A card as `GET …/cards/{card}` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CardView {
    pub program: String,
    pub card: String,
    pub state: CardState,
    pub statuses: Vec<String>,
    pub balances: BTreeMap<String, i64>,
}

/// Programs and a ledger: what answers requests.
pub struct Host {
    sandbox: Arc<Sandbox>,
    programs: RwLock<HashMap<String, Arc<Program>>>,
    /// Programs that could not be loaded, with why; requests for them get that error.
    broken: RwLock<HashMap<String, String>>,
    ledger: Arc<dyn Ledger>,
    /// Whose signatures make a program loadable.
    trust: Trust,
}

/// What the policy (or the host in its place) concluded, before it is committed.
struct Verdict {
    allow: bool,
    reason: String,
    admitted: u32,
    price: Option<i64>,
    notes: Vec<String>,
    effects: Vec<Effect>,
    error: Option<String>,
}

impl Verdict {
    fn denied(reason: &str) -> Verdict {
        Verdict {
            allow: false,
            reason: reason.to_string(),
            admitted: 0,
            price: None,
            notes: Vec::new(),
            effects: Vec::new(),
            error: None,
        }
    }

    fn policy_error(why: String) -> Verdict {
        Verdict {
            error: Some(why),
            ..Verdict::denied(POLICY_ERROR)
        }
    }
}

impl Host {
    /// A host with no programs yet, over `ledger`. It trusts nobody: set [`Host::with_trust`]
    /// before loading programs (programs inserted directly are not checked).
    pub fn new(sandbox: Arc<Sandbox>, ledger: Arc<dyn Ledger>) -> Host {
        Host {
            sandbox,
            programs: RwLock::new(HashMap::new()),
            broken: RwLock::new(HashMap::new()),
            ledger,
            trust: Trust::nobody(),
        }
    }

    /// The same host, loading only programs signed by keys `trust` trusts (or unsigned
    /// ones, with [`Trust::allow_unsigned`]).
    pub fn with_trust(mut self, trust: Trust) -> Host {
        self.trust = trust;
        self
    }

    /// The sandbox policies are compiled in.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// Loads every program under `policies`. A program that fails to load is left out
    /// and its error returned; the others are served.
    pub fn load_dir(&self, policies: &Path) -> Result<Vec<Error>> {
        let mut errors = Vec::new();
        for dir in manifest::program_dirs(policies)? {
            if let Err(e) =
                Program::load(&self.sandbox, &self.trust, &dir).map(|p| self.insert(Arc::new(p)))
            {
                self.refuse(&dir, &e);
                errors.push(e);
            }
        }
        Ok(errors)
    }

    /// Loads the program in `dir`, checks it against its own suites (`dir/suites`), and
    /// only then serves it in place of the running version; also registers its new demo
    /// holders. Requests already deciding finish on the version they started with. A
    /// program that fails is refused: the running version, if any, keeps serving.
    pub fn update(&self, dir: &Path) -> Result<Arc<Program>> {
        let checked = Program::load(&self.sandbox, &self.trust, dir).and_then(|program| {
            let program = Arc::new(program);
            crate::suite::check(&self.sandbox, &program)?;
            Ok(program)
        });
        match checked {
            Ok(program) => {
                self.insert(program.clone());
                self.register_demo_holders(program.id())?;
                Ok(program)
            }
            Err(e) => {
                self.refuse(dir, &e);
                Err(e)
            }
        }
    }

    /// Remembers why the program in `dir` was refused, for [`Host::refused`] and for
    /// requests to a program that has no running version.
    fn refuse(&self, dir: &Path, error: &Error) {
        let (name, reason) = match error {
            Error::Load { program, reason } => (program.clone(), reason.clone()),
            other => (
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                other.to_string(),
            ),
        };
        self.broken.write().insert(name, reason);
    }

    /// Programs whose latest files were refused, with why (sorted by program). A refused
    /// program may still be served in its previous version.
    pub fn refused(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .broken
            .read()
            .iter()
            .map(|(program, why)| (program.clone(), why.clone()))
            .collect();
        all.sort();
        all
    }

    /// Serves `program` (replacing an earlier version of it).
    pub fn insert(&self, program: Arc<Program>) {
        self.broken.write().remove(program.id());
        self.programs
            .write()
            .insert(program.id().to_string(), program);
    }

    /// The loaded program `id`.
    pub fn program(&self, id: &str) -> Result<Arc<Program>> {
        if let Some(program) = self.programs.read().get(id) {
            return Ok(program.clone());
        }
        match self.broken.read().get(id) {
            Some(why) => Err(Error::Load {
                program: id.to_string(),
                reason: why
                    .trim_start_matches(&format!("cannot load policy `{id}`: "))
                    .to_string(),
            }),
            None => Err(Error::UnknownProgram(id.to_string())),
        }
    }

    /// Every loaded program, by id.
    pub fn programs(&self) -> Vec<Arc<Program>> {
        let mut all: Vec<_> = self.programs.read().values().cloned().collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    /// Registers (or replaces) a holder; returns whether the card was new.
    pub fn register(&self, program: &str, holder: &Holder) -> Result<bool> {
        let program = self.program(program)?;
        let mut txn = self.ledger.begin(program.id())?;
        let created = txn.holder(&holder.card)?.is_none();
        if !created && !holder.balances.is_empty() {
            return Err(Error::invalid(format!(
                "holder `{}` exists already: starting balances are only for new cards",
                holder.card
            )));
        }
        ledger::register(&mut *txn, holder)?;
        txn.commit()?;
        Ok(created)
    }

    /// Registers each of the program's demo holders that is not in the ledger yet.
    pub fn register_demo_holders(&self, program: &str) -> Result<usize> {
        let program = self.program(program)?;
        let mut txn = self.ledger.begin(program.id())?;
        let mut added = 0;
        for holder in &program.files.holders {
            if txn.holder(&holder.card)?.is_none() {
                ledger::register(&mut *txn, holder)?;
                added += 1;
            }
        }
        txn.commit()?;
        Ok(added)
    }

    /// A card's state, statuses and balances at `at`, if the card is known.
    pub fn card(&self, program: &str, card: &str, at: i64) -> Result<Option<CardView>> {
        let program = self.program(program)?;
        let mut txn = self.ledger.begin(program.id())?;
        let Some(holder) = txn.holder(card)? else {
            return Ok(None);
        };
        Ok(Some(CardView {
            program: program.id().to_string(),
            card: card.to_string(),
            state: holder.state,
            statuses: holder.statuses,
            balances: ledger::balances(&mut *txn, card, at)?,
        }))
    }

    /// Decides `request` and, unless it is a dry run, commits its effects and records it.
    pub fn decide(&self, request: &Request) -> Result<Decision> {
        let program = self.program(&request.program)?;
        let party = request.party.unwrap_or(1);
        if party == 0 {
            return Err(Error::invalid("`party` must be at least 1"));
        }
        if let Some(language) = &request.language
            && !program.files.manifest.languages.contains(language)
        {
            return Err(Error::invalid(format!(
                "program `{}` has no messages in language `{language}`",
                program.id()
            )));
        }
        let at = request.at.as_second();
        let fingerprint = fingerprint(request)?;

        let mut txn = self.ledger.begin(program.id())?;
        if let Some(id) = &request.id
            && let Some(earlier) = txn.recorded(id)?
        {
            if earlier.request != fingerprint {
                return Err(Error::IdReused(id.clone()));
            }
            let mut decision: Decision = serde_json::from_str(&earlier.decision)
                .map_err(|e| Error::Ledger(format!("corrupt decision record `{id}`: {e}")))?;
            decision.replayed = true;
            return Ok(decision);
        }

        let (verdict, fuel, returned) = self.evaluate(&program, request, party, at, txn)?;
        txn = returned;
        let mut verdict = verdict;
        if verdict.allow
            && let Err(refused) = ledger::apply(&mut *txn, &request.card, at, &verdict.effects)?
        {
            drop(txn); // rolls back whatever part of the effects was applied
            verdict =
                Verdict::policy_error(format!("the policy's effects were refused: {refused}"));
            txn = self.ledger.begin(program.id())?;
        }
        if let Some(why) = &verdict.error {
            tracing::warn!(
                program = program.id(),
                card = request.card,
                action = request.action,
                "policy error: {why}"
            );
        }

        let holder = txn.holder(&request.card)?;
        let decision = Decision {
            allow: verdict.allow,
            message: program.message(&verdict.reason, request.language.as_deref()),
            reason: verdict.reason,
            admitted: verdict.admitted,
            price: verdict.price,
            notes: verdict.notes,
            balances: ledger::balances(&mut *txn, &request.card, at)?,
            state: holder.map(|h| h.state),
            policy: program.policy_ref(),
            id: request.id.clone(),
            dry_run: request.dry_run,
            replayed: false,
            error: verdict.error,
            fuel,
        };
        if request.dry_run {
            return Ok(decision); // dropping the transaction commits nothing
        }
        let record = Record {
            request_id: request.id.clone(),
            card: request.card.clone(),
            at,
            request: fingerprint,
            decision: serde_json::to_string(&decision).map_err(|e| Error::Ledger(e.to_string()))?,
            digest: program.policy.digest.clone(),
            fuel,
        };
        txn.record(&record)?;
        txn.commit()?;
        Ok(decision)
    }

    /// Runs the policy on `request`, or denies it here when the card or offer is unknown.
    fn evaluate(
        &self,
        program: &Program,
        request: &Request,
        party: u32,
        at: i64,
        mut txn: Box<dyn Txn>,
    ) -> Result<(Verdict, u64, Box<dyn Txn>)> {
        let Some(holder) = txn.holder(&request.card)? else {
            return Ok((Verdict::denied(UNKNOWN_CARD), 0, txn));
        };
        let offer = match &request.offer {
            None => None,
            Some(id) => match program.files.catalogue.get(id) {
                Some(offer) => Some(world::offer(offer)),
                None => return Ok((Verdict::denied(UNKNOWN_OFFER), 0, txn)),
            },
        };
        let wit_request = wit::Request {
            action: request.action.clone(),
            at,
            local: world::local_time(program.calendar.local(at)?),
            holder: world::holder(&holder),
            offer,
            party,
            amount: request.amount,
            asset: request.asset.clone(),
            to_card: request.to_card.clone(),
            new_card: request.new_card.clone(),
        };
        let context = Context {
            calendar: program.calendar.clone(),
            config: program.config.clone(),
            limits: program.files.manifest.limits,
        };
        let evaluated = self
            .sandbox
            .evaluate(&program.policy, context, txn, &wit_request)?;
        let verdict = match evaluated.decision {
            Err(why) => Verdict::policy_error(why),
            Ok(d) => check_decision(program, d, party),
        };
        Ok((verdict, evaluated.fuel, evaluated.txn))
    }
}

/// Turns the policy's answer into a verdict, refusing answers that make no sense.
fn check_decision(program: &Program, d: wit::Decision, party: u32) -> Verdict {
    if !program.reasons.contains(&d.reason) {
        return Verdict::policy_error(format!(
            "the policy returned reason `{}`, which it does not declare",
            d.reason
        ));
    }
    if !d.allow {
        return Verdict {
            notes: d.notes,
            ..Verdict::denied(&d.reason)
        };
    }
    if d.admitted > party {
        return Verdict::policy_error(format!(
            "the policy admitted {} persons for a party of {party}",
            d.admitted
        ));
    }
    let effects: Vec<Effect> = d.effects.into_iter().map(world::effect).collect();
    let assets = &program.files.manifest.assets;
    for (index, effect) in effects.iter().enumerate() {
        if let Some(asset) = effect.asset()
            && !assets.iter().any(|declared| declared == asset)
        {
            return Verdict::policy_error(format!(
                "effect {} names asset `{asset}`, which program `{}` does not declare in `assets`",
                index + 1,
                program.id()
            ));
        }
    }
    Verdict {
        allow: true,
        reason: d.reason,
        admitted: d.admitted,
        price: d.price,
        notes: d.notes,
        effects,
        error: None,
    }
}

/// The request as recorded: what a retry with the same id must repeat exactly.
fn fingerprint(request: &Request) -> Result<String> {
    let mut canonical = request.clone();
    canonical.dry_run = false;
    canonical.language = None;
    serde_json::to_string(&canonical)
        .map_err(|e| Error::invalid(format!("cannot encode request: {e}")))
}
