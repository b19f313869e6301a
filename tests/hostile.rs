//! The hostile-guest corpus (`guest-rules/hostile/`): real components that loop, hoard
//! memory, recurse, trap, flood their answer, remember, snoop, overspend, read the clock or
//! are not policies at all. Each is loaded beside the real `bergen` and `albertslund`
//! programs over one SQLite ledger; the host survives every one, names the limit hit with
//! the numbers, commits nothing for it, and keeps serving the good programs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cardrules::ledger::View;
use cardrules::{Decision, Error, Holder, Host, Request, Sandbox, Trust};
use cardrules_sqlite::SqliteLedger;

mod support;
use support::files::shipped_policies;
use support::hostile::hostile_program;

fn copy_program(policies: &Path, program: &str) {
    let to = policies.join(program);
    std::fs::create_dir_all(&to).unwrap();
    let shipped = shipped_policies().join(program);
    for file in ["policy.toml", "catalogue.toml", "holders.toml"] {
        std::fs::copy(shipped.join(file), to.join(file)).unwrap();
    }
    let component = format!("{program}.wasm");
    std::fs::copy(shipped.join(&component), to.join(&component)).unwrap();
}

struct World {
    host: Arc<Host>,
    dir: tempfile::TempDir,
}

impl World {
    fn program_dir(&self, program: &str) -> PathBuf {
        self.dir.path().join("policies").join(program)
    }
}

/// `bergen` and `albertslund` with their demo holders, beside the hostile programs that
/// load; returns the world and the load errors of those that do not.
fn world(hostile: &[(&str, &str)]) -> (World, Vec<Error>) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_program(&policies, "bergen");
    copy_program(&policies, "albertslund");
    for (name, extra) in hostile {
        hostile_program(&policies, name, extra);
    }
    let ledger = Arc::new(SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap());
    let host =
        Host::new(Arc::new(Sandbox::new().unwrap()), ledger).with_trust(Trust::allow_unsigned());
    let errors = cardrules::loader::load_dir(&host, &policies).unwrap();
    for program in host.programs() {
        host.register_demo_holders(program.id()).unwrap();
    }
    let world = World {
        host: Arc::new(host),
        dir,
    };
    (world, errors)
}

fn attack(program: &str, action: &str) -> Request {
    serde_json::from_value(serde_json::json!({
        "program": program, "card": "H-1", "action": action,
        "at": "2024-03-01T18:00:00+01:00",
    }))
    .unwrap()
}

fn kino(card: &str) -> Request {
    serde_json::from_value(serde_json::json!({
        "program": "bergen", "card": card, "action": "redeem", "offer": "bergen-kino",
        "at": "2024-03-01T18:00:00+01:00",
    }))
    .unwrap()
}

/// Decides an attack, expects a `policy-error` whose error contains every one of `expected`,
/// and checks that the good program is served normally right after.
fn survives(world: &World, request: &Request, expected: &[&str]) -> Decision {
    let decision = world.host.decide(request).unwrap();
    assert!(!decision.allow, "{decision:?}");
    assert_eq!(decision.reason, "policy-error", "{decision:?}");
    let error = decision.error.clone().unwrap_or_default();
    for part in expected {
        assert!(error.contains(part), "{error:?} lacks {part:?}");
    }
    println!("{}: {error}", request.program);
    let mut probe = kino("AK-1002");
    probe.dry_run = true;
    let good = world.host.decide(&probe).unwrap();
    assert!(
        good.allow,
        "bergen still serves after `{}`: {good:?}",
        request.program
    );
    decision
}

#[test]
fn every_limit_is_enforced_and_named_with_its_numbers() {
    let (world, errors) = world(&[
        ("loop", ""),
        ("memory", ""),
        ("recursion", ""),
        ("trap", ""),
        ("output", ""),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    survives(
        &world,
        &attack("hostile-loop", "attack"),
        &[
            "fuel limit of 10000000 instructions exhausted",
            "fuel used 10000000 of 10000000",
        ],
    );
    survives(
        &world,
        &attack("hostile-memory", "attack"),
        &[
            "memory limit of 16777216 bytes exceeded",
            "memory reached",
            "of 16777216 bytes",
        ],
    );
    survives(
        &world,
        &attack("hostile-recursion", "attack"),
        &["stack overflow", "512 KiB wasm stack", "fuel used"],
    );
    survives(
        &world,
        &attack("hostile-trap", "attack"),
        &[
            "trap",
            "guest said",
            "hostile policy gave up on action `attack`",
        ],
    );
    survives(
        &world,
        &attack("hostile-output", "notes"),
        &["more than the limit of 65536 bytes"],
    );
    survives(
        &world,
        &attack("hostile-output", "effects"),
        &["decision has 5000 effects, more than the limit of 256"],
    );
    // The card the attacks acted on is untouched.
    let card = world
        .host
        .card("hostile-output", "H-1", 0)
        .unwrap()
        .unwrap();
    assert_eq!(card.balances.get("DKK"), Some(&100));
    let spam = world.host.ledger().read("hostile-output", |s| {
        s.count(Some("H-1"), "spam", 0, i64::MAX)
    });
    assert_eq!(spam.unwrap(), 0);
}

#[test]
fn the_wall_clock_deadline_stops_a_loop_that_has_fuel_to_spare() {
    let (world, errors) = world(&[("loop", "[limits]\nfuel = 1_000_000_000\ndeadline-ms = 10")]);
    assert!(errors.is_empty(), "{errors:?}");
    survives(
        &world,
        &attack("hostile-loop", "attack"),
        &["deadline of 10 ms exceeded", "memory reached"],
    );
}

/// A decision's proposal (its evaluation by the caller's thread, outside the lane) that
/// faulted is never kept: its wall-clock deadline may have run out while a read waited for
/// the lane's leader, which deciding in order would not have met. The lane decides it
/// again; a proposal that answered stands as before. The deadline here is met by the loop
/// itself, every time, so what is kept does not depend on timing.
#[test]
fn a_proposal_whose_policy_faulted_is_decided_again_in_the_lane() {
    let (world, errors) = world(&[("loop", "[limits]\nfuel = 1_000_000_000\ndeadline-ms = 10")]);
    assert!(errors.is_empty(), "{errors:?}");
    let ledger = world.host.ledger();
    let stood = || ledger.stats().proposals_stood;
    let before = stood();
    let decision = world
        .host
        .decide(&attack("hostile-loop", "attack"))
        .unwrap();
    assert_eq!(
        decision.fault,
        Some(cardrules::FaultKind::Deadline),
        "{decision:?}"
    );
    assert_eq!(
        stood(),
        before,
        "a faulted proposal was kept as the decision"
    );
    // The counter does count: an answered proposal on the same host stands.
    let mut probe = kino("AK-1002");
    probe.dry_run = true;
    assert!(world.host.decide(&probe).unwrap().allow);
    assert_eq!(stood(), before + 1);
}

#[test]
fn no_state_survives_between_decisions() {
    let (world, _) = world(&[("counter", "")]);
    for _ in 0..3 {
        let decision = world
            .host
            .decide(&attack("hostile-counter", "attack"))
            .unwrap();
        assert!(decision.allow);
        assert_eq!(decision.notes, ["call-1"], "a fresh instance every time");
    }
}

/// What the snoop reports when the ledger view hides every other program.
const SAW_NOTHING: [&str; 4] = [
    "holder:false",
    "card-count:0",
    "program-count:0",
    "balance:0",
];

#[test]
fn a_policy_sees_only_its_own_programs_ledger() {
    let (world, _) = world(&[("snoop", "")]);
    // The victim: bergen's card AK-1001 has a visit recorded; albertslund's BK-2001 holds DKK.
    assert!(world.host.decide(&kino("AK-1001")).unwrap().allow);
    let seen = world
        .host
        .decide(&attack("hostile-snoop", "attack"))
        .unwrap();
    assert_eq!(seen.notes, SAW_NOTHING);
    // And aimed at albertslund's money instead:
    let holder: Holder = serde_json::from_value(serde_json::json!({
        "card": "H-2", "birth-date": "2010-01-01", "municipality": "nowhere",
        "attributes": {"victim-card": "BK-2001", "victim-counter": "spent", "victim-asset": "DKK"},
    }))
    .unwrap();
    world.host.register("hostile-snoop", &holder).unwrap();
    let mut request = attack("hostile-snoop", "attack");
    request.card = "H-2".into();
    let seen = world.host.decide(&request).unwrap();
    assert_eq!(seen.notes, SAW_NOTHING);
    let victim = world
        .host
        .card("albertslund", "BK-2001", 0)
        .unwrap()
        .unwrap();
    assert_eq!(victim.balances.get("DKK"), Some(&20000));
}

#[test]
fn effects_that_overspend_or_name_undeclared_assets_commit_nothing() {
    let (world, _) = world(&[("effects", "assets = [\"DKK\"]")]);
    survives(
        &world,
        &attack("hostile-effects", "overspend"),
        &["the policy's effects were refused", "effect 2", "DKK"],
    );
    survives(
        &world,
        &attack("hostile-effects", "unknown-asset"),
        &[
            "effect 2 names asset `GOLD`",
            "does not declare in `assets`",
        ],
    );
    // Neither the tally of effect 1 nor any money moved.
    let tries = world.host.ledger().read("hostile-effects", |s| {
        s.count(Some("H-1"), "tries", 0, i64::MAX)
    });
    assert_eq!(tries.unwrap(), 0);
    let card = world
        .host
        .card("hostile-effects", "H-1", 0)
        .unwrap()
        .unwrap();
    assert_eq!(card.balances, [("DKK".to_string(), 100)].into());
}

#[test]
fn components_with_a_clock_or_of_another_world_are_refused_at_load() {
    let (world, errors) = world(&[("clock", ""), ("not-a-policy", "")]);
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("cannot load policy `hostile-clock`: ")
                && m.contains("wasi:clocks/")
                && m.contains("no clock, randomness, files or network")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(
            |m| m.starts_with("cannot load policy `hostile-not-a-policy`: ")
                && m.contains("does not export `evaluate`")
        ),
        "{messages:#?}"
    );
    // Requests for them are refused with that reason; the good programs serve.
    let refused = world.host.decide(&attack("hostile-clock", "attack"));
    assert!(matches!(refused, Err(Error::Load { .. })), "{refused:?}");
    assert!(world.host.decide(&kino("AK-1001")).unwrap().allow);
}

#[test]
fn good_programs_keep_serving_while_hostile_ones_are_attacking() {
    let (world, errors) = world(&[
        ("loop", ""),
        ("memory", ""),
        ("recursion", ""),
        ("trap", ""),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = [
        "hostile-loop",
        "hostile-memory",
        "hostile-recursion",
        "hostile-trap",
    ]
    .into_iter()
    .map(|program| {
        let (host, stop) = (world.host.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut attacks = 0;
            while !stop.load(Ordering::Relaxed) {
                let decision = host.decide(&attack(program, "attack")).unwrap();
                assert_eq!(decision.reason, "policy-error");
                attacks += 1;
            }
            attacks
        })
    })
    .collect();
    // Meanwhile the tills of Bergen and Albertslund are served, every one correctly: the
    // yearly limit of 4 cinema visits admits exactly the first 4 of 40.
    let mut reasons = Vec::new();
    for i in 0..40 {
        let decision = world.host.decide(&kino("AK-1001")).unwrap();
        reasons.push(decision.reason.clone());
        let purchase: Request = serde_json::from_value(serde_json::json!({
            "program": "albertslund", "card": "BK-2002", "action": "purchase",
            "offer": "sg-perler", "amount": 10, "at": "2024-05-07T16:00:00+02:00",
            "id": format!("alongside-{i}"),
        }))
        .unwrap();
        assert!(world.host.decide(&purchase).unwrap().allow);
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        assert!(attacker.join().unwrap() > 0);
    }
    let expected: Vec<&str> = [["ok"; 4].as_slice(), &["quota-exhausted"; 36]].concat();
    assert_eq!(reasons, expected);
    let card = world
        .host
        .card("albertslund", "BK-2002", 0)
        .unwrap()
        .unwrap();
    assert_eq!(card.balances.get("DKK"), Some(&(7500 - 40 * 10)));
}

#[test]
fn a_policy_cannot_answer_with_the_hosts_own_reasons() {
    let (world, _) = world(&[("effects", "")]);
    survives(
        &world,
        &attack("hostile-effects", "claim-fault"),
        &["reason `policy-error` with allow, which only the host may give"],
    );
    survives(
        &world,
        &attack("hostile-effects", "claim-unknown-card"),
        &["reason `unknown-card`, which only the host may give"],
    );
    // The 1 000 DKK the lie tried to grant were not committed.
    let card = world
        .host
        .card("hostile-effects", "H-1", 0)
        .unwrap()
        .unwrap();
    assert_eq!(card.balances, [("DKK".to_string(), 100)].into());
}

#[test]
fn a_fault_is_not_remembered_under_its_request_id() {
    let (world, _) = world(&[("effects", "")]);
    let mut request = attack("hostile-effects", "overspend");
    request.id = Some("till-1/0001".into());
    let first = world.host.decide(&request).unwrap();
    assert_eq!(first.reason, "policy-error");
    // The retry decides afresh instead of replaying "please try again later" for good.
    let retry = world.host.decide(&request).unwrap();
    assert_eq!(retry.reason, "policy-error");
    assert!(!retry.replayed, "{retry:?}");
}

#[test]
fn every_effect_guard_turns_a_bad_effect_into_a_policy_error_and_commits_nothing() {
    let (world, _) = world(&[("effects", "")]);
    let other: Holder = serde_json::from_value(serde_json::json!({
        "card": "H-2", "birth-date": "2010-01-01", "municipality": "nowhere",
        "balances": {"DKK": 100},
    }))
    .unwrap();
    world.host.register("hostile-effects", &other).unwrap();
    let guards = [
        // Without the guard, spending −50 would add 50.
        ("negative-consume", "amount -50 of `DKK` is not positive"),
        ("negative-transfer", "amount -50 of `DKK` is not positive"),
        ("zero-grant", "grant of 0 `DKK` is not positive"),
        ("negative-grant", "grant of -50 `DKK` is not positive"),
        (
            "transfer-to-unknown",
            "transfer to unknown card `NO-SUCH-CARD`",
        ),
        (
            "transfer-to-self",
            "transfer to the acting card `H-1` itself",
        ),
        (
            "move-to-existing",
            "new card `H-2` already belongs to a holder",
        ),
        (
            "undeclared-reason",
            "reason `free-money`, which it does not declare",
        ),
        ("over-admit", "admitted 2 persons for a party of 1"),
    ];
    for (action, expected) in guards {
        survives(&world, &attack("hostile-effects", action), &[expected]);
    }
    // Nothing of any of them stayed: no count, no money moved, no card blocked.
    let tries = world.host.ledger().read("hostile-effects", |s| {
        s.count(Some("H-1"), "tries", 0, i64::MAX)
    });
    assert_eq!(tries.unwrap(), 0);
    for card in ["H-1", "H-2"] {
        let view = world
            .host
            .card("hostile-effects", card, 0)
            .unwrap()
            .unwrap();
        assert_eq!(view.balances, [("DKK".to_string(), 100)].into(), "{card}");
        assert_eq!(view.state, cardrules::CardState::Active.as_str(), "{card}");
    }
}

/// Within one decision, a `move-card` leaves the old card replaced: a later effect that
/// would make it active again, give it money or move it again is the policy's error and
/// nothing of the decision stays; a count (a marker) may still be recorded on it.
#[test]
fn after_a_move_no_effect_brings_the_replaced_card_back() {
    let (world, _) = world(&[("effects", "")]);
    let guards = [
        (
            "move-then-activate",
            "effect 3 (`set-state`) comes after `move-card` to `H-NEW`",
        ),
        (
            "move-then-grant",
            "effect 3 (`grant`) comes after `move-card` to `H-NEW`",
        ),
        (
            "move-then-move",
            "effect 3 (`move-card`) comes after `move-card` to `H-NEW`",
        ),
        (
            "move-to-path",
            "effect 2: `new-card` `../H-2` holds `/`: a card number is a path segment",
        ),
        ("transfer-to-empty", "effect 2: `to-card` is empty"),
    ];
    for (action, expected) in guards {
        survives(&world, &attack("hostile-effects", action), &[expected]);
    }
    // Nothing of them stayed: H-1 active with its money, no new card.
    let view = world
        .host
        .card("hostile-effects", "H-1", 0)
        .unwrap()
        .unwrap();
    assert_eq!(view.state, cardrules::CardState::Active.as_str());
    assert_eq!(view.balances, [("DKK".to_string(), 100)].into());
    for card in ["H-NEW", "H-OTHER"] {
        assert!(
            world
                .host
                .card("hostile-effects", card, 0)
                .unwrap()
                .is_none()
        );
    }
    // A count after the move is allowed and stays on the old card, which stays blocked.
    let moved = world
        .host
        .decide(&attack("hostile-effects", "move-then-count"))
        .unwrap();
    assert!(moved.allow, "{moved:?}");
    assert_eq!(moved.state, Some(cardrules::CardState::Blocked));
    let (old, new) = world
        .host
        .ledger()
        .read("hostile-effects", |s| {
            (
                s.count(Some("H-1"), "replaced", 0, i64::MAX),
                s.count(Some("H-NEW"), "replaced", 0, i64::MAX),
            )
        })
        .unwrap();
    assert_eq!((old, new), (1, 0));
    let new_card = world
        .host
        .card("hostile-effects", "H-NEW", 0)
        .unwrap()
        .unwrap();
    assert_eq!(new_card.state, cardrules::CardState::Active.as_str());
    assert_eq!(new_card.balances, [("DKK".to_string(), 100)].into());
}

/// How long deciding `request` takes, and the decision.
fn timed(world: &World, request: &Request) -> (Duration, Decision) {
    let started = Instant::now();
    let decision = world.host.decide(request).unwrap();
    (started.elapsed(), decision)
}

#[test]
fn a_policy_looping_on_host_calls_runs_out_of_fuel_long_before_its_deadline() {
    let (world, errors) = world(&[("loop", ""), ("hostcalls", "")]);
    assert!(errors.is_empty(), "{errors:?}");
    // What 10 000 000 fuel is worth in pure wasm: the yardstick.
    let (wasm, _) = timed(&world, &attack("hostile-loop", "attack"));
    // Roughly what one `count-in` costs the host, from 3 000 calls less the decision
    // around them (dry runs: no commit; the best of five).
    let dry = |action: &str| {
        let mut request = attack("hostile-hostcalls", action);
        request.dry_run = true;
        (0..5)
            .map(|_| timed(&world, &request))
            .min_by_key(|(took, _)| *took)
            .unwrap()
    };
    let (none, _) = dry("measure-0");
    let (many, measured) = dry("measure-3000");
    assert!(measured.allow, "{measured:?}");
    let per_call_us = (many.saturating_sub(none)).as_secs_f64() * 1e6 / 3_000.0;
    let fuel_per_call = measured.fuel as f64 / 3_000.0;
    let wasm_fuel_per_us = 10_000_000.0 / (wasm.as_secs_f64() * 1e6);
    println!(
        "pure wasm: 10000000 fuel in {wasm:?} ({wasm_fuel_per_us:.0} fuel/µs); count-in: \
         {per_call_us:.2} µs and {fuel_per_call:.0} fuel per call ({:.0} fuel/µs)",
        fuel_per_call / per_call_us.max(1e-3)
    );
    for action in [
        "count-in",
        "count-in-all",
        "count-within",
        "last-use",
        "balance",
        "find-holder",
        "config",
        "local",
        "period-of",
        "add-months",
    ] {
        let started = Instant::now();
        survives(
            &world,
            &attack("hostile-hostcalls", action),
            &[
                "fuel limit of 10000000 instructions exhausted",
                "fuel used 10000000 of 10000000",
            ],
        );
        let took = started.elapsed();
        println!("{action}: out of fuel after {took:?} (deadline 500 ms, pure wasm {wasm:?})");
        // Ended on fuel, and in about the time its fuel is worth in wasm: far from the
        // 500 ms deadline that alone stopped it when host calls cost ~1 fuel.
        assert!(
            took < Duration::from_millis(150).max(wasm * 4),
            "{action} took {took:?} on 10000000 fuel; pure wasm {wasm:?}"
        );
    }
}

#[test]
fn a_reload_that_outlasts_its_time_box_is_refused_and_the_running_version_keeps_serving() {
    let (world, errors) = world(&[("loop", "[limits]\nfuel = 1_000_000_000\ndeadline-ms = 50")]);
    assert!(errors.is_empty(), "{errors:?}");
    let running = world.host.program("hostile-loop").unwrap();
    // A suite of 20 steps, each stopped by the 50 ms deadline: about a second to run.
    let dir = world.program_dir("hostile-loop");
    let mut suite = String::from(
        "program = \"hostile-loop\"\n[[holders]]\ncard = \"H-1\"\nbirth-date = \"2010-01-01\"\nmunicipality = \"nowhere\"\n",
    );
    for _ in 0..20 {
        suite.push_str(
            "[[steps]]\nat = \"2024-03-01T18:00:00+01:00\"\ncard = \"H-1\"\naction = \"attack\"\nexpect = { allow = false, reason = \"policy-error\" }\n",
        );
    }
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("suites/slow.toml"), suite).unwrap();

    let started = Instant::now();
    let error = cardrules::loader::update_within(&world.host, &dir, Duration::from_millis(300))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    println!("refused after {took:?}: {error}");
    assert!(
        error.starts_with("cannot load policy `hostile-loop`: the reload took longer than its time box of 300 ms (while running its suites: ")
            && error.contains("out of time after")
            && error.ends_with("the running version, if any, keeps serving"),
        "{error}"
    );
    assert!(took < Duration::from_millis(900), "stopped early: {took:?}");
    assert!(Arc::ptr_eq(
        &world.host.program("hostile-loop").unwrap(),
        &running
    ));
    assert!(
        world
            .host
            .refused()
            .iter()
            .any(|(program, why)| program == "hostile-loop" && why.contains("time box")),
        "{:?}",
        world.host.refused()
    );
    // With time enough, the same files serve.
    let served =
        cardrules::loader::update_within(&world.host, &dir, Duration::from_secs(30)).unwrap();
    assert!(!Arc::ptr_eq(&served, &running));
    assert!(world.host.refused().is_empty());
}

/// A full instance pool is the host's fault, not the policy's: the decision fails with
/// `Error::Unavailable` (a 503 over HTTP), nothing is journaled, and once a slot is free
/// the same request is decided as usual.
#[test]
fn a_full_instance_pool_is_a_host_fault_never_a_journaled_policy_error() {
    use cardrules::Journal as _;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_program(&policies, "bergen");
    hostile_program(
        &policies,
        "loop",
        "[limits]\nfuel = 1_000_000_000\ndeadline-ms = 2_000",
    );
    let ledger = Arc::new(SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap());
    // Room for one running policy only.
    let sandbox = Arc::new(Sandbox::with_pool_size(1).unwrap());
    let host = Arc::new(Host::new(sandbox, ledger.clone()).with_trust(Trust::allow_unsigned()));
    let errors = cardrules::loader::load_dir(&host, &policies).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    for program in host.programs() {
        host.register_demo_holders(program.id()).unwrap();
    }
    let journaled = || ledger.read("bergen", 0).unwrap().len();
    let before = journaled();

    // The looping guest holds the only slot until it runs out of fuel, while a probe asks
    // for a slot. On a busy machine the probe may not run at all while the loop holds the
    // slot: then the loop ends first, and the round is tried again.
    let mut probe = kino("AK-1001");
    probe.dry_run = true;
    let mut rounds = 0;
    let (looping, refused) = loop {
        rounds += 1;
        let looping = {
            let host = host.clone();
            // Until it has the slot (the probe may hold it for a moment).
            std::thread::spawn(move || {
                loop {
                    match host.decide(&attack("hostile-loop", "attack")) {
                        Err(Error::Unavailable { .. }) => std::thread::yield_now(),
                        other => return other,
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let refused = loop {
            match host.decide(&probe) {
                Err(e) => break Some(e),
                Ok(_) if !looping.is_finished() => std::thread::sleep(Duration::from_millis(5)),
                Ok(_) => break None,
            }
        };
        match refused {
            Some(refused) => break (looping, refused),
            None => {
                let spun = looping.join().unwrap().unwrap();
                assert_eq!(spun.reason, "policy-error", "{spun:?}");
                assert!(rounds < 20, "the pool never filled in {rounds} rounds");
            }
        }
    };
    assert!(
        matches!(refused, Error::Unavailable { .. }) && !refused.is_bad_input(),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("no instance slot is free"),
        "{refused}"
    );
    // A committing request meets the same full pool: refused, and nothing is journaled
    // (no `policy-error` blamed on bergen's policy).
    let committing = host.decide(&kino("AK-1001"));
    if !looping.is_finished() {
        assert!(
            matches!(committing, Err(Error::Unavailable { .. })),
            "{committing:?}"
        );
    }
    let spun = looping.join().unwrap().unwrap();
    assert_eq!(spun.reason, "policy-error");
    assert_eq!(spun.fault, Some(cardrules::FaultKind::Fuel), "{spun:?}");
    if committing.is_err() {
        assert_eq!(journaled(), before, "a host fault was journaled");
    }

    // With the slot free again, the same request is decided, and committed once.
    let decided = host.decide(&kino("AK-1001")).unwrap();
    assert!(decided.allow, "{decided:?}");
    assert!(journaled() > before);
}

/// A policy that explains decisions with checks it did not evaluate gets a `policy-error`
/// for each lie, with what the lie was; the honest explanation is accepted, and its
/// numbers are the host's.
#[test]
fn a_policy_that_lies_in_its_checks_gets_a_policy_error() {
    let (world, errors) = world(&[("liar", "")]);
    assert!(errors.is_empty(), "{errors:?}");
    let explained = |action: &str| {
        let mut request = attack("hostile-liar", action);
        request.explain = true;
        request
    };
    for (action, expected) in [
        (
            "passed-for-its-denial",
            "reports its check `well-formed` for that reason as passed",
        ),
        (
            "allowed-but-failed",
            "the policy allowed, but its check `well-formed` did not pass",
        ),
        (
            "made-up-count",
            "reports `used` = 7, which is neither a number the host answered",
        ),
        (
            "own-clock",
            "which is not the end of a window the host computed",
        ),
        (
            "too-many",
            "decision reports 100 checks, more than the limit of 64",
        ),
        (
            "long-rule",
            "has a rule name of 1000 bytes (1 to 64 allowed)",
        ),
    ] {
        let decision = survives(&world, &explained(action), &[expected]);
        assert!(decision.fault.is_some(), "{decision:?}");
        // A fault shows no checks: none of the lie reaches the caller.
        assert_eq!(decision.checks.as_deref(), Some(&[][..]), "{action}");
    }
    let honest = world.host.decide(&explained("honest")).unwrap();
    assert_eq!(honest.reason, "bad-request", "{honest:?}");
    let checks = honest.checks.unwrap();
    assert_eq!(checks.len(), 2);
    assert_eq!((checks[0].used, checks[0].limit), (Some(0), Some(4)));
    assert!(!checks[1].passed);
}

#[test]
fn the_host_bounds_a_policys_price_like_every_amount() {
    let (world, _) = world(&[("effects", "")]);
    for (action, price) in [
        ("negative-price", "-1"),
        ("lowest-price", "-9223372036854775808"),
        ("huge-price", "1000000000000001"),
    ] {
        survives(
            &world,
            &attack("hostile-effects", action),
            &[&format!(
                "the policy returned price {price}, outside 0..=1000000000000000"
            )],
        );
    }
    // Nothing of them stayed.
    let tries = world.host.ledger().read("hostile-effects", |s| {
        s.count(Some("H-1"), "tries", 0, i64::MAX)
    });
    assert_eq!(tries.unwrap(), 0);
    // The bounds themselves are prices.
    for (action, price) in [("free", 0), ("dearest", 1_000_000_000_000_000)] {
        let decision = world
            .host
            .decide(&attack("hostile-effects", action))
            .unwrap();
        assert!(decision.allow, "{decision:?}");
        assert_eq!(decision.price, Some(price));
    }
}

#[test]
fn a_failed_host_call_keeps_its_real_cause_in_the_error() {
    let (world, _) = world(&[("hostcalls", "")]);
    // Months beyond any date the calendar computes.
    let decision = survives(
        &world,
        &attack("hostile-hostcalls", "beyond-the-calendar"),
        &["host call `calendar.add-months` failed: date out of range: "],
    );
    let error = decision.error.unwrap_or_default();
    assert!(!error.contains("wasm backtrace"), "{error}");
}
