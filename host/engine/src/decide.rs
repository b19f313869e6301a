//! The decision pipeline, on the engine's own types: check what the caller sent, look the
//! request id up, enrich the request, evaluate the policy, check its answer, apply its
//! effects (taken back if refused or a dry run), and stage the change to commit. It runs
//! on a program's state inside the ledger's lane (see `ledger/commit.rs`); [`crate::Host`]
//! submits it there.
//!
//! The evaluation — the costly part — is first *proposed* outside the lane, by the
//! caller's own thread, on the state as it stands ([`propose`]), with the keys of every
//! ledger read it made; the lane keeps it if none of those keys changed since
//! ([`crate::ledger::Tx`]), and evaluates again otherwise. Everything after the
//! evaluation (the request id, the effects, the balances answered) runs in the lane.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::ids;
use crate::ledger::reads::{ReadSet, Seen};
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ledger::{Change, Effect, MAX_UNITS, Reader, Recorded, Staged, State, View};
use crate::model::{Check, Decision, Read, Request};
use crate::offline::{Lens, Uncovered};
use crate::policy::{
    Answer, Evaluated, Input, PolicyFault, Prepared, Reported, Sandbox, Witnessed,
};
use crate::program::{
    ERASED, HOST_MESSAGES, OFFLINE, POLICY_ERROR, Program, RESTRICTED, UNKNOWN_CARD, UNKNOWN_OFFER,
};

/// A request about to be decided, checked, with how it is decided.
pub(crate) struct Asked<'a> {
    pub request: &'a Request,
    /// The party size, defaults applied.
    pub party: u32,
    /// Whether nothing is to be committed (the request's own `dry-run`, or a shadow's).
    pub dry_run: bool,
    /// The idempotency key the decision is looked up and recorded under, if any.
    pub id: Option<&'a str>,
    /// The request's fingerprint, computed beforehand unless it is a dry run.
    pub fingerprint: Option<&'a str>,
    /// The position up to which the caller found `id` recorded nowhere in the journal,
    /// if it looked (see [`State::recorded`]).
    pub looked_up: Option<u64>,
    /// Decided by this venue alone, at this time on its clock, under its lease, with the
    /// cards whose outcome at the city it does not know yet (see `crate::offline`); none
    /// for a decision at the city.
    /// The last: whether the venue itself decides (true), or the city verifies what it
    /// uploaded (false: a lease the city recalled still held until handed back).
    pub alone: Option<(&'a str, i64, &'a Arc<BTreeSet<String>>, bool)>,
}

/// Checks what the caller sent before anything is decided; returns the party size.
pub(crate) fn check_request(program: &Program, request: &Request) -> Result<u32> {
    ids::check(ids::Kind::Program, "program", &request.program)?;
    ids::check(ids::Kind::Card, "card", &request.card)?;
    let optional = [
        (ids::Kind::Card, "to-card", &request.to_card),
        (ids::Kind::Card, "new-card", &request.new_card),
        (ids::Kind::Offer, "offer", &request.offer),
        (ids::Kind::Request, "id", &request.id),
    ];
    for (kind, field, value) in optional {
        if let Some(value) = value {
            ids::check(kind, field, value)?;
        }
    }
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

/// What `program` would decide for `request` on `state`, as a dry run that ignores the
/// request's id (a recorded id would answer with the recorded decision; a candidate
/// decides afresh): nothing of it stays in the state. (Shadow evaluation: see
/// [`crate::shadow`].)
pub(crate) fn dry_run_on(
    sandbox: &Sandbox,
    program: &Program,
    request: &Request,
    state: &mut State,
) -> Result<Decision> {
    let party = check_request(program, request)?;
    let asked = Asked {
        request,
        party,
        dry_run: true,
        id: None,
        fingerprint: None,
        looked_up: None,
        alone: None,
    };
    decide_on(sandbox, program, &asked, state, None).map(|staged| staged.answer)
}

/// What the policy answers to the host's own `request` on `state` (its checks held to
/// what the host saw, or its fault), with nothing applied and nothing recorded: the
/// question behind an allowance (see [`crate::allowance`]). The request is not checked as
/// a caller's would be: an allowance asks with `amount` 0, which no caller may send.
pub(crate) fn ask_on(
    sandbox: &Sandbox,
    program: &Program,
    request: &Request,
    state: &mut State,
) -> Result<std::result::Result<Answer, PolicyFault>> {
    let asked = Asked {
        request,
        party: request.party.unwrap_or(1),
        dry_run: true,
        id: None,
        fingerprint: None,
        looked_up: None,
        alone: None,
    };
    let (outcome, _, _) = evaluate(
        sandbox,
        program,
        &asked,
        request.at.as_second(),
        state,
        None,
    )?
    .0;
    Ok(outcome)
}

/// A decision evaluated outside the lane, on the program's state as it stood: what it
/// read, where the state stood when it began, and what the policy concluded.
pub(crate) struct Proposal {
    pub seen: Seen,
    pub reads: ReadSet,
    pub evaluation: Evaluation,
}

/// Evaluates `asked` on the lane's state through `reader`, keeping the keys of every
/// ledger read, for the lane to check and keep ([`decide_on`]'s `proposed`). Each read
/// sees the state as it stands then; if any read key changed after the proposal began
/// (`seen`), the lane finds it changed and decides again, so a proposal that stands read
/// everything as it stood at `seen`. `None` when there is nothing worth proposing: the
/// request id is recorded already (the lane answers from the record), the host failed
/// (the lane meets the same error, or not), or the policy faulted. A fault is never kept:
/// a proposal's evaluation may meet its wall-clock deadline while a read waits for the
/// lane's leader, which deciding in order would not have met; the lane decides again.
pub(crate) fn propose(
    sandbox: &Sandbox,
    program: &Program,
    asked: &Asked<'_>,
    reader: Reader,
) -> Option<Proposal> {
    let request = asked.request;
    // The host's own read, before the policy's: the acting card's holder.
    let mut reads = ReadSet::default();
    reads.holder(&request.card);
    let (seen, prepared) = reader.read(|state, seen| {
        // The caller found the id nowhere in the journal; one committed or staged since
        // (perhaps by a twin request racing it) is for the lane to answer from.
        if let Some(id) = asked.id
            && state.may_have_recorded(id)
        {
            return None;
        }
        let prepared = prepare(program, asked, request.at.as_second(), state).ok()?;
        Some((seen, prepared))
    })?;
    let prepared = match prepared {
        Ready::Concluded(evaluation) => {
            return Some(Proposal {
                seen,
                reads,
                evaluation,
            });
        }
        Ready::Prepared(prepared) => prepared,
    };
    let mut evaluated = sandbox.evaluate_shared(
        &program.policy,
        &program.context,
        reader,
        prepared,
        request.explain,
        reads,
    );
    let reads = evaluated.keys.take()?;
    let evaluation = conclude(program, asked, evaluated).ok()?;
    if evaluation.0.is_err() {
        return None;
    }
    Some(Proposal {
        seen,
        reads,
        evaluation,
    })
}

/// Decides one request on the program's state: the idempotency check, the policy, the
/// host's checks, the effects (taken back if refused or a dry run), and the change to
/// commit. `proposed` is the evaluation of a proposal whose reads are unchanged on
/// `state` (see [`propose`]): the policy's answer here, which is not asked again.
pub(crate) fn decide_on(
    sandbox: &Sandbox,
    program: &Program,
    asked: &Asked<'_>,
    state: &mut State,
    proposed: Option<Evaluation>,
) -> Result<Staged<Decision>> {
    decide_concluded(sandbox, program, asked, state, proposed, false)
}

/// [`decide_on`]; with `concluded`, `proposed` is the answer to keep whatever is lent.
fn decide_concluded(
    sandbox: &Sandbox,
    program: &Program,
    asked: &Asked<'_>,
    state: &mut State,
    proposed: Option<Evaluation>,
    concluded: bool,
) -> Result<Staged<Decision>> {
    let request = asked.request;
    if let Some(id) = asked.id
        && let Some(earlier) = state.recorded(id, asked.looked_up)?
    {
        return replayed(id, &earlier, asked.fingerprint, request).map(Staged::nothing);
    }
    let at = request.at.as_second();
    let mark = state.mark();
    let explain = asked.request.explain;
    // What is lent to venues shapes what this side may read and change (see
    // `crate::offline`); a proposal was read without it, so none is kept then.
    let lens = match asked.alone {
        Some((venue, now, tainted, at_venue)) => Some(Arc::new(Lens::venue(
            state.tenures(),
            venue,
            now,
            tainted.clone(),
            at_venue,
        ))),
        None => Lens::city(state.tenures(), request.venue.as_deref()).map(Arc::new),
    };
    // A decision the venue alone may not make comes concluded (see [`denied_offline`]).
    let (mut outcome, fuel, reads) = match proposed.filter(|_| lens.is_none() || concluded) {
        Some(evaluation) => evaluation,
        None => {
            let (evaluation, uncovered) =
                evaluate(sandbox, program, asked, at, state, lens.clone())?;
            let uncovered = uncovered.or_else(|| match (&lens, &evaluation.0) {
                (Some(lens), Ok(answer)) if answer.allow => {
                    lens.effects(&request.card, &answer.effects).err()
                }
                _ => None,
            });
            match (uncovered, asked.alone) {
                (None, _) => evaluation,
                // The venue cannot decide it alone: denied `offline`, saying why.
                (Some(why), Some(_)) => {
                    let mut answer = denied(OFFLINE);
                    answer.notes.push(why.0);
                    answer.checks.push(Reported {
                        rule: "covered-by-lease".to_string(),
                        passed: false,
                        reason: OFFLINE.to_string(),
                        used: None,
                        limit: None,
                        until: None,
                    });
                    (Ok(answer), evaluation.1, evaluation.2)
                }
                // The city holds off: what it would read or change is a venue's now.
                (Some(why), None) => {
                    return Err(Error::Held {
                        program: program.id().to_string(),
                        card: request.card.clone(),
                        why: why.0,
                        venues: lens
                            .as_ref()
                            .map(|l| l.venues_on(&request.card))
                            .unwrap_or_default(),
                    });
                }
            }
        }
    };
    if let Ok(answer) = &mut outcome
        && answer.allow
        && let Err(refused) = state
            .apply(&request.card, at, &answer.effects)
            .and_then(|()| match state.lends() {
                true => {
                    state.spend_escrow(request.venue.as_deref(), &request.card, &answer.effects)
                }
                false => Ok(()),
            })
    {
        state.rollback(mark); // whatever part of the effects was applied
        outcome = Err(PolicyFault::answer(format!(
            "the policy's effects were refused: {refused}"
        )));
    }
    let (mut answer, fault) = match outcome {
        Ok(answer) => (answer, None),
        Err(fault) => {
            tracing::warn!(
                program = program.id(),
                card = request.card,
                action = request.action,
                fault = fault.kind().as_str(),
                "policy error: {fault}"
            );
            (denied(POLICY_ERROR), Some(fault))
        }
    };
    let checks: Vec<Check> = std::mem::take(&mut answer.checks)
        .into_iter()
        .map(shown)
        .collect();
    let mut decision = Decision {
        allow: answer.allow,
        message: program.message(&answer.reason, request.language.as_deref()),
        reason: answer.reason,
        admitted: answer.admitted,
        price: answer.price,
        notes: answer.notes,
        balances: state.balances(&request.card, at),
        state: state.holder(&request.card).map(|h| h.state),
        policy: program.policy_ref(),
        id: request.id.clone(),
        dry_run: asked.dry_run,
        replayed: false,
        fault: fault.as_ref().map(PolicyFault::kind),
        error: fault.map(PolicyFault::into_message),
        fuel,
        checks: None,
        reads: None,
        venue: request.venue.clone(),
        offline: asked.alone.is_some(),
        pending: false,
    };
    if asked.dry_run {
        state.rollback(mark);
        return Ok(Staged::nothing(explained(decision, explain, checks, reads)));
    }
    // The journal keeps the decision as answered, without its explanation.
    let encoded = serde_json::to_string(&decision)
        .map_err(|e| Error::ledger("cannot encode a decision", e))?;
    let fingerprint = known_or_computed(asked.fingerprint, request)?.into_owned();
    // A fault is not a result: a retry of the same id decides afresh.
    let request_id = asked
        .id
        .filter(|_| decision.fault.is_none())
        .map(str::to_string);
    if let Some(id) = &request_id {
        state.record(
            id,
            Recorded {
                request: fingerprint.clone(),
                decision: encoded.clone(),
            },
        );
        // Decided at last: it waits for no venue's lease any more.
        if !state.tenures().is_empty() {
            state.stop_waiting(id);
        }
    }
    let effects = if decision.allow {
        answer.effects
    } else {
        Vec::new()
    };
    decision = explained(decision, explain, checks, reads);
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

/// `asked` denied with `reason` and `notes`, as a decision to keep, without asking the
/// policy: an action a venue may not decide alone (`offline`), or a venue's denial taken
/// in as it was answered (a denial changes nothing).
pub(crate) fn denied_with(
    sandbox: &Sandbox,
    program: &Program,
    asked: &Asked<'_>,
    state: &mut State,
    reason: &str,
    notes: Vec<String>,
) -> Result<Staged<Decision>> {
    let mut answer = denied(reason);
    answer.notes = notes;
    decide_concluded(
        sandbox,
        program,
        asked,
        state,
        Some((Ok(answer), 0, Vec::new())),
        true,
    )
}

/// The decision recorded under `id`, answered again to a retry of the same request; a
/// different request under the same id is refused.
pub(crate) fn replayed(
    id: &str,
    earlier: &Recorded,
    fingerprint: Option<&str>,
    request: &Request,
) -> Result<Decision> {
    if earlier.request != known_or_computed(fingerprint, request)? {
        return Err(Error::IdReused(id.to_string()));
    }
    let mut decision: Decision = serde_json::from_str(&earlier.decision)
        .map_err(|e| Error::ledger(format!("corrupt decision record `{id}`"), e))?;
    decision.replayed = true;
    Ok(decision)
}

/// The decision with its explanation, when the caller asked for one.
fn explained(
    mut decision: Decision,
    explain: bool,
    checks: Vec<Check>,
    reads: Vec<Read>,
) -> Decision {
    if explain {
        decision.checks = Some(checks);
        decision.reads = Some(reads);
    }
    decision
}

/// A denial with `reason` and nothing else.
fn denied(reason: &str) -> Answer {
    Answer {
        allow: false,
        reason: reason.to_string(),
        admitted: 0,
        price: None,
        notes: Vec::new(),
        effects: Vec::new(),
        checks: Vec::new(),
    }
}

/// What the policy concluded (its checked answer with its checks held to what the host
/// saw, or its fault), the fuel it burnt, and what it read when asked to explain.
pub(crate) type Evaluation = (std::result::Result<Answer, PolicyFault>, u64, Vec<Read>);

/// A request ready for the policy, or concluded without it.
#[allow(clippy::large_enum_variant)] // returned once per decision, never stored
enum Ready {
    Prepared(Prepared),
    Concluded(Evaluation),
}

/// Runs the policy on the request, or denies it here when the card or offer is unknown.
/// An error is the host's.
fn evaluate(
    sandbox: &Sandbox,
    program: &Program,
    asked: &Asked<'_>,
    at: i64,
    state: &mut State,
    lens: Option<Arc<Lens>>,
) -> Result<(Evaluation, Option<Uncovered>)> {
    // The host's own read of the acting card's holder, held to the lens as the policy's.
    if let Some(lens) = &lens
        && let Err(why) = lens.holder(
            &asked.request.card,
            state.holder(&asked.request.card).is_some(),
        )
    {
        return Ok(((Ok(denied(OFFLINE)), 0, Vec::new()), Some(why)));
    }
    match prepare(program, asked, at, state)? {
        Ready::Concluded(evaluation) => Ok((evaluation, None)),
        Ready::Prepared(prepared) => {
            let mut evaluated = sandbox.evaluate(
                &program.policy,
                &program.context,
                state,
                prepared,
                asked.request.explain,
                lens,
            );
            let uncovered = evaluated.uncovered.take();
            Ok((conclude(program, asked, evaluated)?, uncovered))
        }
    }
}

/// The policy's input for the request, converted to its world (so that nothing of it
/// borrows from `state` when the state is lent to the policy), or the denial when the
/// card or offer is unknown. It reads the acting card's holder.
fn prepare(program: &Program, asked: &Asked<'_>, at: i64, state: &State) -> Result<Ready> {
    let request = asked.request;
    let Some(holder) = state.holder(&request.card) else {
        let reason = if state.erased(&request.card).is_some() {
            ERASED
        } else {
            UNKNOWN_CARD
        };
        return Ok(Ready::Concluded((Ok(denied(reason)), 0, Vec::new())));
    };
    if state.restricted(&request.card) {
        return Ok(Ready::Concluded((Ok(denied(RESTRICTED)), 0, Vec::new())));
    }
    let offer = match &request.offer {
        None => None,
        Some(id) => match program.files.catalogue.get(id) {
            Some(offer) => Some(offer),
            None => {
                return Ok(Ready::Concluded((Ok(denied(UNKNOWN_OFFER)), 0, Vec::new())));
            }
        },
    };
    let input = Input {
        action: &request.action,
        at,
        local: program.calendar.local(at)?,
        holder,
        offer,
        party: asked.party,
        amount: request.amount,
        asset: request.asset.as_deref(),
        to_card: request.to_card.as_deref(),
        new_card: request.new_card.as_deref(),
        explain: request.explain,
    };
    // Converted to the policy's world before the state is lent to it.
    Ok(Ready::Prepared(program.policy.prepare(&input)))
}

/// The policy's answer checked (its checks held to what the host saw), or its fault, with
/// the fuel it burnt and what it read when asked to explain. An error is the host's.
fn conclude(program: &Program, asked: &Asked<'_>, evaluated: Evaluated) -> Result<Evaluation> {
    let request = asked.request;
    let witnessed = evaluated.witnessed.unwrap_or_default();
    let answer = evaluated
        .answer?
        .and_then(|a| check_answer(program, a, asked.party))
        .and_then(|a| check_checks(program, a, request, &witnessed));
    Ok((answer, evaluated.fuel, witnessed.reads))
}

/// The longest rule name a check may carry: each is copied into the answer.
const MAX_RULE_BYTES: usize = 64;

/// Holds an explained answer's checks to what happened: each names a declared reason and a
/// short rule; a failed check denies with its own reason, and one that held cannot be the
/// reason of a denial; `used` is a number the host answered (or the request's `amount`)
/// and `until` the end of a window the host computed, never the guest's own. Unexplained
/// answers carry no checks.
fn check_checks(
    program: &Program,
    mut answer: Answer,
    request: &Request,
    witnessed: &Witnessed,
) -> Result<Answer, PolicyFault> {
    if !request.explain {
        answer.checks.clear();
        return Ok(answer);
    }
    let bad = |why: String| Err(PolicyFault::answer(why));
    for (index, check) in answer.checks.iter().enumerate() {
        let n = index + 1;
        if check.rule.is_empty() || check.rule.len() > MAX_RULE_BYTES {
            return bad(format!(
                "check {n} has a rule name of {} bytes (1 to {MAX_RULE_BYTES} allowed)",
                check.rule.len()
            ));
        }
        // As for the decision's own reason: `unknown-card` may be a policy's declared
        // reason (a transfer's receiver), `policy-error` never is.
        if check.reason == POLICY_ERROR || !program.policy.info.reasons.contains(&check.reason) {
            return bad(format!(
                "check {n} (`{}`) gives reason `{}`, which the policy does not declare",
                check.rule, check.reason
            ));
        }
        if let Some(used) = check.used
            && used != 0
            && request.amount != Some(used)
            && !witnessed.numbers.contains(&used)
        {
            return bad(format!(
                "check {n} (`{}`) reports `used` = {used}, which is neither a number the host answered nor the request's amount",
                check.rule
            ));
        }
        if let Some(until) = check.until
            && !witnessed.ends.contains(&until)
        {
            return bad(format!(
                "check {n} (`{}`) reports `until` = {until}, which is not the end of a window the host computed",
                check.rule
            ));
        }
    }
    match answer.checks.iter().find(|c| !c.passed) {
        Some(failed) if answer.allow => {
            return bad(format!(
                "the policy allowed, but its check `{}` did not pass",
                failed.rule
            ));
        }
        Some(failed) if failed.reason != answer.reason => {
            return bad(format!(
                "the policy denied with `{}`, but its first failed check `{}` gives `{}`",
                answer.reason, failed.rule, failed.reason
            ));
        }
        None if !answer.allow => {
            if let Some(held) = answer.checks.iter().find(|c| c.reason == answer.reason) {
                return bad(format!(
                    "the policy denied with `{}`, but reports its check `{}` for that reason as passed",
                    answer.reason, held.rule
                ));
            }
        }
        _ => {}
    }
    Ok(answer)
}

/// A check as the answer shows it. Its `until` was held to a window the host computed,
/// which is always a valid time.
pub(crate) fn shown(check: Reported) -> Check {
    Check {
        rule: check.rule,
        passed: check.passed,
        reason: check.reason,
        used: check.used,
        limit: check.limit,
        until: check
            .until
            .and_then(|at| jiff::Timestamp::from_second(at).ok()),
    }
}

/// Refuses answers that make no sense.
fn check_answer(program: &Program, answer: Answer, party: u32) -> Result<Answer, PolicyFault> {
    // The host's reasons are the host's: a policy never claims a fault, and gives
    // `unknown-card` or `unknown-offer` (e.g. for a transfer's other card) only as a
    // denial it declares.
    let reason = &answer.reason;
    let host_reason = HOST_MESSAGES.iter().any(|(code, _)| code == reason);
    let declared = program.policy.info.reasons.contains(reason);
    if reason == POLICY_ERROR || (host_reason && (answer.allow || !declared)) {
        return Err(PolicyFault::answer(format!(
            "the policy returned reason `{reason}`{}, which only the host may give",
            if answer.allow { " with allow" } else { "" }
        )));
    }
    if !program.reasons.contains(reason) {
        return Err(PolicyFault::answer(format!(
            "the policy returned reason `{reason}`, which it does not declare"
        )));
    }
    // A price is an amount like any other: the host bounds it as it bounds requests and
    // balances, whatever the policy's language could hold (an i64::MIN, a -1).
    if let Some(price) = answer.price
        && !(0..=MAX_UNITS).contains(&price)
    {
        return Err(PolicyFault::answer(format!(
            "the policy returned price {price}, outside 0..={MAX_UNITS}"
        )));
    }
    if !answer.allow {
        // A denial keeps its notes and its checks, and nothing else.
        return Ok(Answer {
            notes: answer.notes,
            checks: answer.checks,
            ..denied(reason)
        });
    }
    if answer.admitted > party {
        return Err(PolicyFault::answer(format!(
            "the policy admitted {} persons for a party of {party}",
            answer.admitted
        )));
    }
    let assets = &program.files.manifest.assets;
    // The card the acting card moved to, once an effect moved it.
    let mut moved: Option<&str> = None;
    for (index, effect) in answer.effects.iter().enumerate() {
        let n = index + 1;
        if let Some(asset) = effect.asset()
            && !assets.iter().any(|declared| declared == asset)
        {
            return Err(PolicyFault::answer(format!(
                "effect {n} names asset `{asset}`, which program `{}` does not declare in `assets`",
                program.id()
            )));
        }
        // Card numbers a policy names enter the ledger as a caller's do: by the same rule.
        let named = match effect {
            Effect::Transfer { to_card, .. } => Some(("to-card", to_card)),
            Effect::MoveCard { new_card } => Some(("new-card", new_card)),
            _ => None,
        };
        if let Some((field, card)) = named
            && let Some(why) = ids::problem(ids::Kind::Card, card)
        {
            return Err(PolicyFault::answer(format!("effect {n}: `{field}` {why}")));
        }
        // Effects act on the acting card. Once it has moved, the holder, its balances and
        // its usage are on the new card and the old one stays blocked for good: only a
        // count may still be recorded on it (a marker that it was replaced, as
        // Albertslund's `replaced`); a state, a grant, a consumption, a transfer, a
        // forfeit or another move would bring the replaced card back to life.
        if let Some(new_card) = moved
            && !matches!(effect, Effect::Count { .. })
        {
            return Err(PolicyFault::answer(format!(
                "effect {n} (`{}`) comes after `move-card` to `{new_card}`: after a move, \
                 effects may only count on the replaced card",
                effect.name()
            )));
        }
        if let Effect::MoveCard { new_card } = effect {
            moved = Some(new_card);
        }
    }
    Ok(answer)
}

/// The request's fingerprint: `known` if it was computed beforehand, else computed now.
fn known_or_computed<'a>(known: Option<&'a str>, request: &Request) -> Result<Cow<'a, str>> {
    match known {
        Some(known) => Ok(Cow::Borrowed(known)),
        None => fingerprint(request).map(Cow::Owned),
    }
}

/// The request as recorded: what a retry with the same id must repeat exactly. Whether it
/// is a dry run and the language of its message are not part of it, and `"party": 1` is
/// the same request as no party.
pub(crate) fn fingerprint(request: &Request) -> Result<String> {
    /// The request's recorded fields, borrowed: serialized exactly as [`Request`] is
    /// (the same names, order and omissions), without copying it.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Recorded<'a> {
        program: &'a str,
        card: &'a str,
        action: &'a str,
        at: &'a jiff::Timestamp,
        #[serde(skip_serializing_if = "Option::is_none")]
        offer: Option<&'a str>,
        party: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        amount: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        asset: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        to_card: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_card: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    }
    serde_json::to_string(&Recorded {
        program: &request.program,
        card: &request.card,
        action: &request.action,
        at: &request.at,
        offer: request.offer.as_deref(),
        party: request.party.unwrap_or(1),
        amount: request.amount,
        asset: request.asset.as_deref(),
        to_card: request.to_card.as_deref(),
        new_card: request.new_card.as_deref(),
        id: request.id.as_deref(),
    })
    .map_err(|e| Error::invalid(format!("cannot encode request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint is the request's own JSON with defaults applied: ledgers recorded
    /// before it was computed without a copy must still match it byte for byte.
    #[test]
    fn the_fingerprint_is_the_canonical_request_json() {
        let mut request: Request = serde_json::from_str(
            r#"{"program":"bergen","card":"B-1","action":"redeem","at":"2024-03-01T18:00:00+01:00",
                "offer":"bergen-kino","amount":5,"asset":"x","to-card":"T","new-card":"N",
                "id":"r-1","dry-run":true,"language":"nb"}"#,
        )
        .unwrap();
        let mut canonical = request.clone();
        canonical.dry_run = false;
        canonical.language = None;
        canonical.party = Some(1);
        assert_eq!(
            fingerprint(&request).unwrap(),
            serde_json::to_string(&canonical).unwrap()
        );
        request.party = Some(3);
        request.offer = None;
        request.id = None;
        let mut canonical = request.clone();
        canonical.dry_run = false;
        canonical.language = None;
        assert_eq!(
            fingerprint(&request).unwrap(),
            serde_json::to_string(&canonical).unwrap()
        );
    }
}
