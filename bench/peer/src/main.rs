//! The peer benchmark: Bergen's `redeem` eligibility rules written in Cedar (a permit plus
//! one forbid per reason, so that the denial's reason is known), decided over the same
//! requests as `cardrules bench --program bergen` (`cardrules::sample::requests`), beside
//! the cardrules policy itself, in one run on one machine — so the figures compare as
//! ratios even on a noisy, shared machine.
//!
//! Measured, each as p50/p99 over `--seconds`:
//! - `cedar, entities prebuilt`: `Authorizer::is_authorized` alone, the request, context
//!   and entities built before the clock starts (Cedar's best case);
//! - `cedar, entities per request`: the same, building the card and offer entities and
//!   the context (age, the ledger's counters for the year and semester) per request, as
//!   a host using Cedar would have to;
//! - `cardrules`: a dry-run decision on an in-memory ledger — a fresh sandboxed instance
//!   of the Bergen policy, its ledger and calendar reads, and the host's checks — as
//!   `cardrules bench` measures `evaluation`.
//!
//! Before timing anything, every request is decided both ways and the answers (allow and
//! reason) must agree; a disagreement is an error (exit 1), not a figure.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicySet, Request as CedarRequest, RestrictedExpression,
};
use clap::Parser;
use serde::Serialize;

use cardrules::ledger::View;
use cardrules::{
    AttributeValue, CardState, Holder, Host, Offer, Period, Program, Request, Sandbox, Trust,
};

/// The allocator of the `cardrules` command, so that both engines run on the same one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bergen's redeem rules against Cedar, over the same requests, in one run.
#[derive(Parser)]
#[command(name = "cardrules-peer")]
struct Args {
    /// The policies directory (the Bergen program is read from `<policies>/bergen`).
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// The empty policy's component (`guest-rules/floor`, built by `cargo build`), timed
    /// in the same run: the sandbox's own cost per decision, with no rules.
    #[arg(long, default_value = "target/guests/wasm32-wasip2/release/floor.wasm")]
    floor: PathBuf,
}

const LEISURE_ACTIVITY: &str = "leisure-activity";
const PUBLIC_EVENT: &str = "public-event";

/// The rule book's order: the first failing rule gives the reason, as in the policy.
const RULES: &[&str] = &[
    "card-inactive",
    "not-resident",
    "age-out-of-range",
    "offer-not-participating",
    "party-too-large",
    "quota-exhausted",
    "semester-limit",
    "fully-booked",
];

/// Bergen's redeem rules (docs/programs.md, rules 1–8) in Cedar, with the program's
/// `[config]` values written in, as a municipality would write them.
fn cedar_policies(config: &Config) -> String {
    let Config {
        residence,
        max_age,
        public_event_party,
        leisure_per_semester,
    } = config;
    format!(
        r#"
@id("ok")
permit (principal, action == Action::"redeem", resource);

@id("card-inactive")
forbid (principal, action == Action::"redeem", resource)
unless {{ principal.state == "active" }};

@id("not-resident")
forbid (principal, action == Action::"redeem", resource)
unless {{ principal.municipality == "{residence}" }};

@id("age-out-of-range")
forbid (principal, action == Action::"redeem", resource)
unless {{ context.age >= 0 && context.age <= {max_age} }};

@id("offer-not-participating")
forbid (principal, action == Action::"redeem", resource)
when {{ resource.participating == false }};

@id("party-too-large")
forbid (principal, action == Action::"redeem", resource)
when {{
    (resource.category == "{PUBLIC_EVENT}" && context.party > {public_event_party}) ||
    (resource.category != "{PUBLIC_EVENT}" && context.party > 1)
}};

@id("quota-exhausted")
forbid (principal, action == Action::"redeem", resource)
when {{ resource has yearly_limit && context.used_this_year >= resource.yearly_limit }};

@id("semester-limit")
forbid (principal, action == Action::"redeem", resource)
when {{
    resource.category == "{LEISURE_ACTIVITY}" &&
    context.leisure_this_semester >= {leisure_per_semester}
}};

@id("fully-booked")
forbid (principal, action == Action::"redeem", resource)
when {{
    resource.category == "{LEISURE_ACTIVITY}" && resource has capacity &&
    context.enrolled_this_semester >= resource.capacity
}};
"#
    )
}

/// The program's `[config]` as the rules read it (with the policy's defaults).
struct Config {
    residence: String,
    max_age: i64,
    public_event_party: i64,
    leisure_per_semester: i64,
}

impl Config {
    fn of(program: &Program) -> Config {
        let config = &program.files.manifest.config;
        let int = |key: &str, default: i64| match config.get(key) {
            Some(AttributeValue::Integer(n)) => *n,
            _ => default,
        };
        Config {
            residence: match config.get("residence") {
                Some(AttributeValue::Text(s)) => s.clone(),
                _ => "bergen".to_string(),
            },
            max_age: int("max-age", 17),
            public_event_party: int("public-event-party", 2),
            leisure_per_semester: int("leisure-per-semester", 1),
        }
    }
}

/// What Cedar is asked: built from the request, the holder, the offer and the ledger.
struct Prepared {
    request: CedarRequest,
    entities: Entities,
}

struct Peer {
    host: Host,
    program: Arc<Program>,
    policies: PolicySet,
    authorizer: Authorizer,
}

impl Peer {
    /// Builds Cedar's request and entities for `request`: the card and the offer as
    /// entities, and in the context what Cedar cannot work out itself — the holder's age
    /// on the local date, and the ledger's counters the rules read.
    fn prepare(&self, request: &Request) -> Result<Prepared> {
        let program = &self.program;
        let holder: &Holder = program
            .files
            .holders
            .iter()
            .find(|h| h.card == request.card)
            .with_context(|| format!("unknown card `{}`", request.card))?;
        let offer_id = request
            .offer
            .as_deref()
            .context("a redeem needs an offer")?;
        let offer: &Offer = program
            .files
            .catalogue
            .get(offer_id)
            .with_context(|| format!("unknown offer `{offer_id}`"))?;
        let at = request.at.as_second();
        let local = program.calendar.local(at)?;
        let birth = holder.birth_date;
        let had_birthday = (local.date.month(), local.date.day()) >= (birth.month(), birth.day());
        let age = i64::from(local.date.year() - birth.year()) - i64::from(!had_birthday);

        let (year_from, year_to) = program.calendar.period_of(Period::Year, at)?;
        let (sem_from, sem_to) = program.calendar.period_of(Period::Semester, at)?;
        let card = holder.card.as_str();
        let (used, leisure, enrolled) = self.host.ledger().read(program.id(), |state| {
            (
                state.count(Some(card), &format!("visit:{offer_id}"), year_from, year_to),
                state.count(Some(card), "leisure", sem_from, sem_to),
                state.count(None, &format!("enrolment:{offer_id}"), sem_from, sem_to),
            )
        })?;

        let card_uid = uid("Card", card)?;
        let offer_uid = uid("Offer", offer_id)?;
        let state = match holder.state {
            CardState::Active => "active",
            CardState::Blocked => "blocked",
            CardState::Stopped => "stopped",
        };
        let card_entity = Entity::new(
            card_uid.clone(),
            HashMap::from([
                (
                    "state".to_string(),
                    RestrictedExpression::new_string(state.into()),
                ),
                (
                    "municipality".to_string(),
                    RestrictedExpression::new_string(holder.municipality.clone()),
                ),
            ]),
            HashSet::new(),
        )?;
        let mut offer_attrs = HashMap::from([
            (
                "category".to_string(),
                RestrictedExpression::new_string(offer.category.clone()),
            ),
            (
                "participating".to_string(),
                RestrictedExpression::new_bool(!matches!(
                    offer.attributes.get("participating"),
                    Some(AttributeValue::Boolean(false))
                )),
            ),
        ]);
        for (key, name) in [("yearly-limit", "yearly_limit"), ("capacity", "capacity")] {
            if let Some(AttributeValue::Integer(n)) = offer.attributes.get(key) {
                offer_attrs.insert(name.to_string(), RestrictedExpression::new_long(*n));
            }
        }
        let offer_entity = Entity::new(offer_uid.clone(), offer_attrs, HashSet::new())?;
        let entities = Entities::from_entities([card_entity, offer_entity], None)?;
        let context = Context::from_pairs([
            ("age".to_string(), RestrictedExpression::new_long(age)),
            (
                "party".to_string(),
                RestrictedExpression::new_long(i64::from(request.party.unwrap_or(1))),
            ),
            ("used_this_year".to_string(), long(used)),
            ("leisure_this_semester".to_string(), long(leisure)),
            ("enrolled_this_semester".to_string(), long(enrolled)),
        ])?;
        let request =
            CedarRequest::new(card_uid, uid("Action", "redeem")?, offer_uid, context, None)?;
        Ok(Prepared { request, entities })
    }

    /// Cedar's answer: allowed, or the first rule (in the rule book's order) that forbade.
    fn decide(&self, prepared: &Prepared) -> (bool, String) {
        let response =
            self.authorizer
                .is_authorized(&prepared.request, &self.policies, &prepared.entities);
        if response.decision() == CedarDecision::Allow {
            return (true, "ok".to_string());
        }
        let forbidding: Vec<&str> = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.policies.annotation(id, "id"))
            .collect();
        let reason = RULES
            .iter()
            .find(|rule| forbidding.contains(rule))
            .map_or("denied", |rule| rule);
        (false, reason.to_string())
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid> {
    Ok(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(kind)?,
        EntityId::new(id),
    ))
}

fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

#[derive(Serialize)]
struct Timing {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    samples: usize,
}

/// Runs `step` over the requests, round and round, for `seconds`.
fn timed(seconds: f64, count: usize, mut step: impl FnMut(usize) -> Result<()>) -> Result<Timing> {
    let mut samples = Vec::new();
    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < budget || samples.len() < count {
        let start = Instant::now();
        step(n % count)?;
        samples.push(start.elapsed());
        n += 1;
    }
    let total = started.elapsed();
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    Ok(Timing {
        per_second: samples.len() as f64 / total.as_secs_f64(),
        p50_us: at(0.50),
        p99_us: at(0.99),
        samples: samples.len(),
    })
}

#[derive(Serialize)]
struct Report {
    requests: usize,
    allowed: usize,
    agreed: usize,
    cedar_prebuilt: Timing,
    cedar_per_request: Timing,
    cardrules: Timing,
    /// cardrules p50 over Cedar's prebuilt p50 (the issue's target: ≤ 1.0).
    cardrules_over_cedar_prebuilt: f64,
    /// cardrules p50 over Cedar's per-request p50.
    cardrules_over_cedar_per_request: f64,
    /// The empty policy (`floor`) over the same run, if its component was found.
    floor: Option<Timing>,
    /// The floor's p50 over Cedar's prebuilt p50 (the issue's target: ≤ 0.5).
    floor_over_cedar_prebuilt: Option<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args.policies.join("bergen");
    let sandbox = Arc::new(Sandbox::new()?);
    let program = Arc::new(
        Program::load(&sandbox, &Trust::allow_unsigned(), &dir)
            .with_context(|| format!("cannot load `{}`", dir.display()))?,
    );
    let host = cardrules::sample::memory_host(sandbox, program.clone())?;

    let policies = PolicySet::from_str(&cedar_policies(&Config::of(&program)))
        .context("the Cedar policies do not parse")?;
    let peer = Peer {
        host,
        program: program.clone(),
        policies,
        authorizer: Authorizer::new(),
    };

    // The same requests as `cardrules bench --program bergen`, redeems only (the rules
    // written in Cedar are the redeem rules), as dry runs.
    let requests: Vec<Request> = cardrules::sample::dry_runs(cardrules::sample::requests(&program))
        .into_iter()
        .filter(|r| r.action == "redeem")
        .collect();
    if requests.is_empty() {
        bail!("the Bergen program gave no redeem requests to benchmark with");
    }

    // Both must give the same answer to every request before either is timed.
    let prepared: Vec<Prepared> = requests
        .iter()
        .map(|r| peer.prepare(r))
        .collect::<Result<_>>()?;
    let mut agreed = 0;
    let mut allowed = 0;
    for (request, prepared) in requests.iter().zip(&prepared) {
        let ours = peer.host.decide(request)?;
        let (allow, reason) = peer.decide(prepared);
        if (ours.allow, ours.reason.as_str()) != (allow, reason.as_str()) {
            bail!(
                "Cedar and cardrules disagree on card `{}` at offer `{}`: cardrules says {} `{}`, Cedar {} `{}`",
                request.card,
                request.offer.as_deref().unwrap_or("-"),
                if ours.allow { "allow" } else { "deny" },
                ours.reason,
                if allow { "allow" } else { "deny" },
                reason
            );
        }
        agreed += 1;
        allowed += usize::from(allow);
    }

    let count = requests.len();
    let cedar_prebuilt = timed(args.seconds, count, |n| {
        std::hint::black_box(peer.decide(&prepared[n]));
        Ok(())
    })?;
    let cedar_per_request = timed(args.seconds, count, |n| {
        let prepared = peer.prepare(&requests[n])?;
        std::hint::black_box(peer.decide(&prepared));
        Ok(())
    })?;
    let cardrules = timed(args.seconds, count, |n| {
        std::hint::black_box(peer.host.decide(&requests[n])?);
        Ok(())
    })?;
    let floor = match args.floor.is_file() {
        true => Some(time_floor(&args.floor, args.seconds)?),
        false => {
            eprintln!(
                "the empty policy `{}` is not built (`cargo build --release` builds it): not timed",
                args.floor.display()
            );
            None
        }
    };
    let report = Report {
        floor_over_cedar_prebuilt: floor.as_ref().map(|f| f.p50_us / cedar_prebuilt.p50_us),
        floor,
        requests: count,
        allowed,
        agreed,
        cardrules_over_cedar_prebuilt: cardrules.p50_us / cedar_prebuilt.p50_us,
        cardrules_over_cedar_per_request: cardrules.p50_us / cedar_per_request.p50_us,
        cedar_prebuilt,
        cedar_per_request,
        cardrules,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "bergen redeem: {} requests ({} allowed), Cedar and cardrules agree on all; {} s per measurement",
        report.requests, report.allowed, args.seconds
    );
    for (name, t) in [
        ("cedar, entities prebuilt", &report.cedar_prebuilt),
        ("cedar, entities per request", &report.cedar_per_request),
        ("cardrules (sandboxed, ledger)", &report.cardrules),
    ] {
        println!(
            "  {name:<31} {:>9.0}/s  p50 {:>8.1} µs  p99 {:>8.1} µs",
            t.per_second, t.p50_us, t.p99_us
        );
    }
    if let Some(t) = &report.floor {
        println!(
            "  {:<31} {:>9.0}/s  p50 {:>8.1} µs  p99 {:>8.1} µs",
            "cardrules, empty policy (floor)", t.per_second, t.p50_us, t.p99_us
        );
    }
    println!(
        "  cardrules p50 is {:.2}× Cedar's prebuilt p50, {:.2}× its per-request p50",
        report.cardrules_over_cedar_prebuilt, report.cardrules_over_cedar_per_request
    );
    if let Some(ratio) = report.floor_over_cedar_prebuilt {
        println!("  the empty policy's p50 is {ratio:.2}× Cedar's prebuilt p50");
    }
    Ok(())
}

/// Dry runs of the empty policy over its own request mix, as `cardrules bench` times it.
fn time_floor(component: &std::path::Path, seconds: f64) -> Result<Timing> {
    let scratch = std::env::temp_dir().join(format!("cardrules-peer-{}", std::process::id()));
    let dir = cardrules::sample::write_floor(&scratch, component)?;
    let timing = (|| {
        let sandbox = Arc::new(Sandbox::new()?);
        let program = Arc::new(Program::load(&sandbox, &Trust::allow_unsigned(), &dir)?);
        let host = cardrules::sample::memory_host(sandbox, program.clone())?;
        let requests = cardrules::sample::dry_runs(cardrules::sample::requests(&program));
        timed(seconds, requests.len(), |n| {
            std::hint::black_box(host.decide(&requests[n])?);
            Ok(())
        })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    timing
}
