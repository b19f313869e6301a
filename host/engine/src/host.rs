//! The host: loaded programs plus a ledger, and the decision pipeline that joins them —
//! enrich the request, evaluate the policy, validate its effects, commit atomically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::ledger::{Change, Effect, Journal, Ledger, MAX_UNITS, Recorded, Staged, State, View};
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
    context: Arc<Context>,
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
            context,
            reasons,
        })
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
            context: self.context.clone(),
            reasons: self.reasons.clone(),
        })
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    ledger: Arc<Ledger>,
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
    /// A host with no programs yet, over the ledger kept in `journal`. It trusts nobody:
    /// set [`Host::with_trust`] before loading programs (programs inserted directly are
    /// not checked).
    pub fn new(sandbox: Arc<Sandbox>, journal: Arc<dyn Journal>) -> Host {
        Host {
            sandbox,
            programs: RwLock::new(HashMap::new()),
            broken: RwLock::new(HashMap::new()),
            ledger: Arc::new(Ledger::new(journal)),
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

    /// Remembers why the program in `dir` was refused, for [`Host::refused`] and for
    /// requests to a program that has no running version.
    pub(crate) fn refuse(&self, dir: &Path, error: &Error) {
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

    /// The trust programs are loaded with.
    pub(crate) fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The trust the host's own programs are loaded with, for loading candidates beside
    /// them (shadow evaluation): a candidate must be signed like a served version.
    pub fn trust_for_candidates(&self) -> Trust {
        self.trust.clone()
    }

    /// Checks the program's demo holders as registration would, without registering them.
    pub(crate) fn check_demo_holders(program: &Program) -> Result<()> {
        program
            .files
            .holders
            .iter()
            .try_for_each(|holder| check_holder(program, holder))
            .map_err(|e| Error::load(program.id(), format!("`holders.toml`: {e}")))
    }

    /// The ledger: programs' states over the journal.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Registers (or replaces) a holder; returns whether the card was new. Starting
    /// balances are only for new cards.
    pub fn register(&self, program: &str, holder: &Holder) -> Result<bool> {
        let program = self.program(program)?;
        check_holder(&program, holder)?;
        let holder = holder.clone();
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            let created = state.holder(&holder.card).is_none();
            let change = Change::Registered {
                holder: holder.clone(),
            };
            state
                .apply_change(&change)
                .map_err(|refused| Error::invalid(refused.0))?;
            Ok(Staged {
                changes: vec![change],
                answer: created,
            })
        })
    }

    /// Registers each of the program's demo holders that is not in the ledger yet.
    pub fn register_demo_holders(&self, program: &str) -> Result<usize> {
        let program = self.program(program)?;
        for holder in &program.files.holders {
            check_holder(&program, holder)?;
        }
        let demo = program.clone();
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            let mut changes = Vec::new();
            for holder in &demo.files.holders {
                if state.holder(&holder.card).is_none() {
                    let change = Change::Registered {
                        holder: holder.clone(),
                    };
                    state
                        .apply_change(&change)
                        .map_err(|refused| Error::invalid(refused.0))?;
                    changes.push(change);
                }
            }
            let added = changes.len();
            Ok(Staged {
                changes,
                answer: added,
            })
        })
    }

    /// A card's state, statuses and balances at `at`, if the card is known.
    pub fn card(&self, program: &str, card: &str, at: i64) -> Result<Option<CardView>> {
        let program = self.program(program)?;
        self.ledger.read(program.id(), |state| {
            state.holder(card).map(|holder| CardView {
                program: program.id().to_string(),
                card: card.to_string(),
                state: holder.state,
                statuses: holder.statuses.clone(),
                balances: state.balances(card, at),
            })
        })
    }

    /// Decides `request` and, unless it is a dry run, commits its effects and records it;
    /// returns once the decision is durable.
    pub fn decide(&self, request: &Request) -> Result<Decision> {
        let program = self.program(&request.program)?;
        let party = check_request(&program, request)?;
        // The fingerprint is what a decision is recorded and compared under, computed here,
        // outside the program's lane. A dry run records nothing: it needs one only if its
        // id was recorded before (to replay that decision or refuse the id), which only
        // the lane can tell, so `decide_on` computes it then.
        let fingerprint = match request.dry_run {
            true => None,
            false => Some(fingerprint(request)?),
        };
        let sandbox = self.sandbox.clone();
        let request = request.clone();
        let lane = program.clone();
        self.ledger.submit(lane.id(), move |tx| {
            decide_on(
                &sandbox,
                &program,
                &request,
                party,
                fingerprint.as_deref(),
                tx.state(),
            )
        })
    }
}

/// What `program` would decide for `request` on `state`, as a dry run: nothing of it
/// stays in the state. (Shadow evaluation: see [`crate::shadow`].)
pub(crate) fn dry_run_on(
    sandbox: &Sandbox,
    program: &Program,
    request: &Request,
    state: &mut State,
) -> Result<Decision> {
    let mut request = request.clone();
    request.dry_run = true;
    // A recorded id would answer with the recorded decision: the candidate decides afresh.
    request.id = None;
    let party = check_request(program, &request)?;
    decide_on(sandbox, program, &request, party, None, state).map(|staged| staged.answer)
}

/// Checks what the caller sent before anything is decided; returns the party size.
fn check_request(program: &Program, request: &Request) -> Result<u32> {
    let party = request.party.unwrap_or(1);
    if party == 0 {
        return Err(Error::invalid("`party` must be at least 1"));
    }
    if let Some(amount) = request.amount
        && !(1..=MAX_UNITS).contains(&amount)
    {
        return Err(Error::invalid(format!(
            "`amount` must be between 1 and {MAX_UNITS}, not {amount}"
        )));
    }
    if let Some(language) = &request.language
        && !program.files.manifest.languages.contains(language)
    {
        return Err(Error::invalid(format!(
            "program `{}` has no messages in language `{language}`",
            program.id()
        )));
    }
    Ok(party)
}

/// Checks a holder about to be registered: its attributes must be declared in the
/// manifest's `[schema.holder]` with values of their declared type (and range or words),
/// required ones present; starting balances must be in assets the program declares and
/// within the ledger's range. A failure is the caller's (bad input: HTTP 400, exit 2).
fn check_holder(program: &Program, holder: &Holder) -> Result<()> {
    program
        .files
        .manifest
        .schema
        .check_holder(holder)
        .map_err(Error::invalid)?;
    for (asset, &units) in &holder.balances {
        if !program.files.manifest.assets.iter().any(|a| a == asset) {
            return Err(Error::invalid(format!(
                "holder `{}`: program `{}` has no asset `{asset}`",
                holder.card,
                program.id()
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

/// Decides one request on the program's state: the idempotency check, the policy, the
/// host's checks, the effects (taken back if refused or a dry run), and the change to
/// commit. `fingerprint` is the request's, computed beforehand unless it is a dry run.
fn decide_on(
    sandbox: &Sandbox,
    program: &Program,
    request: &Request,
    party: u32,
    fingerprint: Option<&str>,
    state: &mut State,
) -> Result<Staged<Decision>> {
    if let Some(id) = &request.id
        && let Some(earlier) = state.recorded(id)
    {
        if earlier.request != known_or_computed(fingerprint, request)? {
            return Err(Error::IdReused(id.clone()));
        }
        let mut decision: Decision = serde_json::from_str(&earlier.decision)
            .map_err(|e| Error::ledger(format!("corrupt decision record `{id}`"), e))?;
        decision.replayed = true;
        return Ok(Staged::nothing(decision));
    }
    let at = request.at.as_second();
    let mark = state.mark();
    let (mut verdict, fuel) = evaluate(sandbox, program, request, party, at, state)?;
    if verdict.allow
        && let Err(refused) = state.apply(&request.card, at, &verdict.effects)
    {
        state.rollback(mark); // whatever part of the effects was applied
        verdict = Verdict::policy_error(format!("the policy's effects were refused: {refused}"));
    }
    if let Some(why) = &verdict.error {
        tracing::warn!(
            program = program.id(),
            card = request.card,
            action = request.action,
            "policy error: {why}"
        );
    }
    let decision = Decision {
        allow: verdict.allow,
        message: program.message(&verdict.reason, request.language.as_deref()),
        reason: verdict.reason,
        admitted: verdict.admitted,
        price: verdict.price,
        notes: verdict.notes,
        balances: state.balances(&request.card, at),
        state: state.holder(&request.card).map(|h| h.state),
        policy: program.policy_ref(),
        id: request.id.clone(),
        dry_run: request.dry_run,
        replayed: false,
        error: verdict.error.clone(),
        fuel,
    };
    if request.dry_run {
        state.rollback(mark);
        return Ok(Staged::nothing(decision));
    }
    let encoded = serde_json::to_string(&decision)
        .map_err(|e| Error::ledger("cannot encode a decision", e))?;
    let fingerprint = known_or_computed(fingerprint, request)?.into_owned();
    // A fault is not a result: a retry of the same id decides afresh.
    let request_id = request.id.clone().filter(|_| verdict.error.is_none());
    if let Some(id) = &request_id {
        state.record(
            id,
            Recorded {
                request: fingerprint.clone(),
                decision: encoded.clone(),
            },
        );
    }
    let effects = if verdict.allow {
        verdict.effects
    } else {
        Vec::new()
    };
    Ok(Staged {
        changes: vec![Change::Decided {
            card: request.card.clone(),
            at,
            request_id,
            request: fingerprint,
            decision: encoded,
            effects,
            digest: program.policy.digest.clone(),
            fuel,
        }],
        answer: decision,
    })
}

/// Runs the policy on `request`, or denies it here when the card or offer is unknown.
/// The state is lent to the sandbox as a read-only view for the call.
fn evaluate(
    sandbox: &Sandbox,
    program: &Program,
    request: &Request,
    party: u32,
    at: i64,
    state: &mut State,
) -> Result<(Verdict, u64)> {
    let Some(holder) = state.holder(&request.card) else {
        return Ok((Verdict::denied(UNKNOWN_CARD), 0));
    };
    let offer = match &request.offer {
        None => None,
        Some(id) => match program.files.catalogue.get(id) {
            Some(offer) => Some(world::offer(offer)),
            None => return Ok((Verdict::denied(UNKNOWN_OFFER), 0)),
        },
    };
    let wit_request = wit::Request {
        action: request.action.clone(),
        at,
        local: world::local_time(program.calendar.local(at)?),
        holder: world::holder(holder),
        offer,
        party,
        amount: request.amount,
        asset: request.asset.clone(),
        to_card: request.to_card.clone(),
        new_card: request.new_card.clone(),
    };
    let lent: Box<dyn crate::ledger::View> = Box::new(std::mem::take(state));
    let evaluated = sandbox.evaluate(&program.policy, &program.context, lent, &wit_request)?;
    let view: Box<dyn std::any::Any> = evaluated.view;
    *state = *view
        .downcast::<State>()
        .map_err(|_| Error::host("evaluation", "the ledger view came back as something else"))?;
    let verdict = match evaluated.decision {
        Err(why) => Verdict::policy_error(why),
        Ok(d) => check_decision(program, d, party),
    };
    Ok((verdict, evaluated.fuel))
}

/// Turns the policy's answer into a verdict, refusing answers that make no sense.
fn check_decision(program: &Program, d: wit::Decision, party: u32) -> Verdict {
    // The host's reasons are the host's: a policy never claims a fault, and gives
    // `unknown-card` or `unknown-offer` (e.g. for a transfer's other card) only as a
    // denial it declares.
    let host_reason = HOST_MESSAGES.iter().any(|(code, _)| *code == d.reason);
    let declared = program.policy.info.reasons.contains(&d.reason);
    if d.reason == POLICY_ERROR || (host_reason && (d.allow || !declared)) {
        return Verdict::policy_error(format!(
            "the policy returned reason `{}`{}, which only the host may give",
            d.reason,
            if d.allow { " with allow" } else { "" }
        ));
    }
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

/// The request's fingerprint: `known` if it was computed beforehand, else computed now.
fn known_or_computed<'a>(
    known: Option<&'a str>,
    request: &Request,
) -> Result<std::borrow::Cow<'a, str>> {
    match known {
        Some(known) => Ok(std::borrow::Cow::Borrowed(known)),
        None => fingerprint(request).map(std::borrow::Cow::Owned),
    }
}

/// The request as recorded: what a retry with the same id must repeat exactly.
fn fingerprint(request: &Request) -> Result<String> {
    let mut canonical = request.clone();
    canonical.dry_run = false;
    canonical.language = None;
    // Compared after defaults are applied: `"party": 1` is the same request as no party.
    canonical.party = Some(request.party.unwrap_or(1));
    serde_json::to_string(&canonical)
        .map_err(|e| Error::invalid(format!("cannot encode request: {e}")))
}
