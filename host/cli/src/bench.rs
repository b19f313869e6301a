//! `cardrules bench`: where a decision's time goes, measured in one run on one machine.
//!
//! For each program, over a mix of requests generated from its catalogue, its demo holders
//! and the actions its policy describes:
//! - `evaluation`: a dry-run decision on an in-memory ledger — a fresh instance, the call,
//!   ledger reads served from memory, nothing committed;
//! - `durable_1_thread`, `durable_2_threads`: full decisions committed to a SQLite ledger
//!   file (`synchronous = FULL`), from one and from two threads;
//!
//! plus fuel per decision, component size, compile time (no cache), load time (with the
//! on-disk cache) and instantiation time. The empty policy `floor` runs the same way, so
//! that the ratio of a program to the sandbox's own floor is visible.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use cardrules::{Error, Host, MemoryLedger, Program, Request, Result, Sandbox, Trust};
use cardrules_sqlite::SqliteLedger;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub policies: PathBuf,
    /// Only this program (and the floor).
    pub program: Option<String>,
    /// Seconds per measurement.
    pub seconds: f64,
    /// The ledger for the durable measurements; a scratch SQLite file if none.
    pub ledger: Option<crate::LedgerSpec>,
    pub trust: Trust,
    /// Another build of the same programs (e.g. of an earlier world version), timed in the
    /// same run for the ratio.
    pub baseline: Option<PathBuf>,
}

/// Latency and throughput of one measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub threads: usize,
    pub decisions: u64,
    pub per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Requests answered 'ledger unavailable' (another host kept appending first); they
    /// are not among `decisions`.
    pub unavailable: u64,
}

/// Fuel per decision.
#[derive(Debug, Clone, Serialize)]
pub struct Fuel {
    pub mean: f64,
    pub max: u64,
}

/// The figures of one program.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    pub program: String,
    pub version: String,
    /// The policy world the component was built against.
    pub world: String,
    pub component_bytes: usize,
    /// Compiling the component with no cache, and `describe`.
    pub compile_ms: f64,
    /// Loading the program (files, signature, cached compile, `describe`).
    pub load_ms: f64,
    /// Median time to instantiate the component in a fresh store.
    pub instantiate_us: f64,
    /// Distinct requests in the mix.
    pub mix: usize,
    pub evaluation: Timing,
    pub durable_1_thread: Timing,
    pub durable_2_threads: Timing,
    /// Two hosts (separate ledger handles, as two machines would have) on one ledger, a
    /// till each: what the optimistic append costs when writers race.
    pub durable_2_hosts: Timing,
    /// Durable decisions from many tills at once (`TILLS` threads): what group commit buys.
    pub durable_many_tills: Timing,
    /// The group commit during `durable_many_tills`.
    pub group_commit: GroupCommit,
    /// `durable_many_tills.per_second` over the machine's bare-fsync ceiling.
    pub durable_over_fsync_ceiling: f64,
    pub fuel: Fuel,
    /// `evaluation.p50_us` over the floor's.
    pub evaluation_p50_over_floor: Option<f64>,
    /// The same dry runs with `explain`: checks and reads kept and answered.
    pub evaluation_explained: Timing,
    /// `evaluation_explained.p50_us` over `evaluation.p50_us`.
    pub explained_p50_over_plain: f64,
    /// The same program from `--baseline`, timed in the same run.
    pub baseline: Option<Baseline>,
}

/// The evaluation of another build of a program (`--baseline`).
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub version: String,
    pub world: String,
    pub evaluation: Timing,
    /// The program's `evaluation.p50_us` over the baseline's.
    pub p50_over_baseline: f64,
}

/// What the group commit did during a measurement.
#[derive(Debug, Clone, Serialize)]
pub struct GroupCommit {
    /// Durable commits (one fsync each).
    pub commits: u64,
    pub commits_per_second: f64,
    /// Decisions per commit, on average.
    pub decisions_per_commit: f64,
    /// Batches decided again because another writer appended first.
    pub conflicts: u64,
    /// Mean time of one append (write and fsync), in microseconds.
    pub append_mean_us: f64,
}

/// A slow policy (`guest-rules/spin`, calibrated to about 1 ms per evaluation), durable on
/// SQLite from several tills on different cards: evaluated one at a time in the program's
/// lane, and proposed in parallel by the tills (the default).
#[derive(Debug, Clone, Serialize)]
pub struct SlowPolicy {
    /// Rounds of the guest's loop per decision, after calibration.
    pub spins: u64,
    /// Median time of one evaluation (a dry run on a memory ledger).
    pub evaluation_p50_us: f64,
    /// Decisions evaluated one at a time in the lane (proposals off).
    pub one_at_a_time: Timing,
    /// Decisions proposed by the tills in parallel and checked by the lane.
    pub parallel: Timing,
    /// `parallel.per_second` over `one_at_a_time.per_second`.
    pub speedup: f64,
    /// Cores the process kept busy during each run (its CPU time over the wall time;
    /// Linux only): what the speedup is made of, and — beside other load — what it lacked.
    pub one_at_a_time_cores: Option<f64>,
    pub parallel_cores: Option<f64>,
    /// Of the parallel run's proposals, how many stood and how many were evaluated again.
    pub proposals_stood: u64,
    pub proposals_stale: u64,
}

/// A good program's durable latency alone and beside a hostile program under load.
#[derive(Debug, Clone, Serialize)]
pub struct Isolation {
    pub program: String,
    /// The hostile program: an endless loop its manifest allows `hostile_deadline_ms` per call.
    pub hostile_deadline_ms: u64,
    pub alone: Timing,
    pub beside_hostile: Timing,
    /// `beside_hostile.p50_us` over `alone.p50_us`.
    pub p50_ratio: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// Commits per second of an empty durable SQLite transaction on the scratch disk: the
    /// physical ceiling of one-fsync-per-decision designs.
    pub fsync_ceiling_per_second: f64,
    /// A good program beside a hostile one (null if the corpus is not built).
    pub isolation: Option<Isolation>,
    /// A program whose evaluation takes about 1 ms (null if its guest is not built).
    pub slow_policy: Option<SlowPolicy>,
    /// Loading every program of the policies directory with the on-disk cache warm.
    pub load_all_ms: f64,
    pub seconds_per_measurement: f64,
    pub programs: Vec<ProgramReport>,
    /// The empty policy, if its component was found.
    pub floor: Option<ProgramReport>,
}

/// Where the figures came from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub os: String,
    pub arch: String,
}

/// The empty policy's component, as `host/cli/build.rs` builds it.
fn floor_component() -> Option<PathBuf> {
    guest("floor")
}

/// A guest component `host/cli/build.rs` built, if it is there.
fn guest(name: &str) -> Option<PathBuf> {
    let dir = option_env!("CARDRULES_GUESTS_DIR")?;
    let path = Path::new(dir).join(format!("{name}.wasm"));
    path.is_file().then_some(path)
}

/// Tills deciding at once in `durable_many_tills`: a city's venues, not one terminal.
const TILLS: usize = 32;
/// The hostile program's deadline per call in `isolation`.
const HOSTILE_DEADLINE_MS: u64 = 100;
/// Tills (one card each) deciding at once in `slow_policy`: enough that, while some wait
/// for their batch's fsync, the others keep both cores evaluating.
const SLOW_TILLS: usize = 16;
/// What one evaluation of the slow policy is calibrated to take.
const SLOW_EVALUATION: Duration = Duration::from_millis(1);

/// The slow policy's program with `spins` rounds per decision and `SLOW_TILLS` cards.
fn spin_program(
    sandbox: &Arc<Sandbox>,
    component: &Path,
    scratch: &Path,
    spins: u64,
) -> Result<Arc<Program>> {
    let dir = cardrules::sample::write_program(
        scratch,
        "spin",
        component,
        &format!(
            "name = \"A slow policy\"\n\n[limits]\nfuel = 500_000_000\ndeadline-ms = 2_000\n\n[config]\nspins = {spins}\n\n[schema.config.spins]\ntype = \"integer\"\nmin = 0\ndoc = \"rounds of the loop per decision\"\n"
        ),
        "# no offers\n",
        "S-0",
    )?;
    Ok(Arc::new(Program::load(
        sandbox,
        &Trust::allow_unsigned(),
        &dir,
    )?))
}

fn spin_request(card: usize, id: Option<String>, dry_run: bool) -> Request {
    Request {
        program: "spin".into(),
        card: format!("S-{card}"),
        action: "spin".into(),
        at: jiff::Timestamp::from_second(1_715_083_200).unwrap_or_default(),
        offer: None,
        party: None,
        amount: None,
        asset: None,
        to_card: None,
        new_card: None,
        id,
        dry_run,
        explain: false,
        venue: None,
        language: None,
    }
}

/// The slow policy, calibrated to about [`SLOW_EVALUATION`] per evaluation, durable on
/// SQLite from [`SLOW_TILLS`] tills on their own cards: one at a time in the lane, then
/// proposed in parallel, in the same run.
fn slow_policy(
    sandbox: &Arc<Sandbox>,
    component: &Path,
    options: &Options,
    scratch: &Path,
) -> Result<SlowPolicy> {
    let dry_p50 = |program: &Arc<Program>, seconds: f64| -> Result<Duration> {
        let memory = cardrules::sample::memory_host(sandbox.clone(), program.clone())?;
        let (timing, _) = timed(seconds, 1, |_, _| {
            memory
                .decide(&spin_request(0, None, true))
                .map(|d| Some(d.fuel))
        })?;
        Ok(Duration::from_secs_f64(timing.p50_us / 1e6))
    };
    // Calibrated twice: the second guess corrects the fixed cost the first one scaled.
    let mut spins: u64 = 100_000;
    for _ in 0..2 {
        let program = spin_program(sandbox, component, scratch, spins)?;
        let took = dry_p50(&program, options.seconds.min(0.5))?;
        let scale = SLOW_EVALUATION.as_secs_f64() / took.as_secs_f64().max(1e-9);
        spins = ((spins as f64 * scale) as u64).clamp(1_000, 100_000_000);
    }
    let program = spin_program(sandbox, component, scratch, spins)?;
    let evaluation_p50_us = dry_p50(&program, options.seconds.min(1.0))?.as_secs_f64() * 1e6;
    let run =
        |proposing: bool, file: &str| -> Result<(Timing, cardrules::ledger::Stats, Option<f64>)> {
            let host = Host::new(
                sandbox.clone(),
                Arc::new(SqliteLedger::open(&scratch.join(file))?),
            )
            .with_proposals(proposing);
            host.insert(program.clone());
            for card in 0..SLOW_TILLS {
                let holder: cardrules::Holder = serde_json::from_value(serde_json::json!({
                "card": format!("S-{card}"), "birth-date": "2010-01-01", "municipality": "nowhere"
            }))
            .map_err(|e| Error::Invalid(format!("a bench holder: {e}")))?;
                host.register("spin", &holder)?;
            }
            let prefix = run_prefix();
            let (cpu, began) = (cpu_seconds(), Instant::now());
            let (timing, _) = timed(options.seconds, SLOW_TILLS, |thread, n| {
                host.decide(&spin_request(
                    thread,
                    Some(format!("{prefix}/{thread}/{n}")),
                    false,
                ))
                .map(|d| Some(d.fuel))
            })?;
            let cores = cpu
                .zip(cpu_seconds())
                .map(|(before, after)| (after - before) / began.elapsed().as_secs_f64());
            Ok((timing, host.ledger().stats(), cores))
        };
    let (one_at_a_time, _, one_at_a_time_cores) = run(false, "spin-serial.sqlite")?;
    let (parallel, stats, parallel_cores) = run(true, "spin-parallel.sqlite")?;
    Ok(SlowPolicy {
        spins,
        evaluation_p50_us,
        one_at_a_time_cores,
        parallel_cores,
        speedup: parallel.per_second / one_at_a_time.per_second.max(f64::MIN_POSITIVE),
        one_at_a_time,
        parallel,
        proposals_stood: stats.proposals_stood,
        proposals_stale: stats.proposals_stale,
    })
}

/// The directory of program `id` under `policies`.
fn dirs_by_id(policies: &Path, id: &str) -> Result<PathBuf> {
    cardrules::program_dirs(policies)?
        .into_iter()
        .find(|d| d.file_name().is_some_and(|n| n == id))
        .ok_or_else(|| Error::UnknownProgram(id.to_string()))
}

/// The good program's durable decisions from one till, alone and while another till keeps
/// the hostile endless loop busy on the same host and ledger.
fn isolation(
    sandbox: &Arc<Sandbox>,
    trust: &Trust,
    good: &Path,
    component: &Path,
    options: &Options,
    scratch: &Path,
) -> Result<Isolation> {
    let dir = cardrules::sample::write_program(
        scratch,
        "hostile-loop",
        component,
        &format!(
            "name = \"An endless loop\"\n\n[limits]\nfuel = 1_000_000_000\ndeadline-ms = {HOSTILE_DEADLINE_MS}\n"
        ),
        "# no offers\n",
        "H-1",
    )?;
    let program = Arc::new(Program::load(sandbox, trust, good)?);
    let hostile = Arc::new(Program::load(sandbox, &Trust::allow_unsigned(), &dir)?);
    let host = Arc::new(Host::new(
        sandbox.clone(),
        Arc::new(SqliteLedger::open(&scratch.join("isolation.sqlite"))?),
    ));
    host.insert(program.clone());
    host.insert(hostile);
    host.register_demo_holders(program.id())?;
    host.register_demo_holders("hostile-loop")?;
    let lasting = lasting_mix(&host, &program);
    let alone = durable_run(&host, &lasting, options.seconds, 1)?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let beside_hostile = std::thread::scope(|scope| {
        let attacker = scope.spawn(|| {
            let attack = Request {
                program: "hostile-loop".into(),
                card: "H-1".into(),
                action: "attack".into(),
                at: jiff::Timestamp::UNIX_EPOCH,
                offer: None,
                party: None,
                amount: None,
                asset: None,
                to_card: None,
                new_card: None,
                id: None,
                dry_run: false,
                explain: false,
                venue: None,
                language: None,
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = host.decide(&attack);
            }
        });
        // Let the attacker get going before measuring.
        std::thread::sleep(Duration::from_millis(HOSTILE_DEADLINE_MS));
        let timing = durable_run(&host, &lasting, options.seconds, 1);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = attacker.join();
        timing
    })?;
    Ok(Isolation {
        program: program.id().to_string(),
        hostile_deadline_ms: HOSTILE_DEADLINE_MS,
        p50_ratio: beside_hostile.p50_us / alone.p50_us.max(f64::MIN_POSITIVE),
        alone,
        beside_hostile,
    })
}

/// The requests of the program's mix that leave the card active when committed, so that a
/// durable run does not end on blocked or moved cards.
fn lasting_mix(host: &Host, program: &Program) -> Vec<Request> {
    let mix = cardrules::sample::requests(program);
    let lasting: Vec<Request> = mix
        .iter()
        .filter(|request| {
            let mut dry = (*request).clone();
            dry.dry_run = true;
            host.decide(&dry)
                .is_ok_and(|d| d.state == Some(cardrules::CardState::Active))
        })
        .cloned()
        .collect();
    if lasting.is_empty() { mix } else { lasting }
}

/// The CPU time this process has used (user and system), from `/proc/self/stat`; `None`
/// where there is no such file.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (in parentheses, which may hold spaces): state is field 3,
    // utime and stime fields 14 and 15, in clock ticks of 1/100 s on Linux.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// Runs every measurement.
pub fn run(options: &Options) -> Result<Report> {
    let sandbox = Arc::new(Sandbox::new()?);
    let uncached = Sandbox::with_disk_cache(false)?;
    let scratch = tempfile_dir()?;

    // Loading all programs, twice: the first run fills the on-disk cache if it was cold.
    let mut load_all_ms = f64::MAX;
    for _ in 0..2 {
        let host = Host::new(sandbox.clone(), Arc::new(MemoryLedger::new()))
            .with_trust(options.trust.clone());
        let start = Instant::now();
        let errors = cardrules::loader::load_dir(&host, &options.policies)?;
        load_all_ms = load_all_ms.min(ms(start.elapsed()));
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
    }

    let mut dirs = cardrules::program_dirs(&options.policies)?;
    if let Some(only) = &options.program {
        dirs.retain(|d| d.file_name().is_some_and(|n| n == only.as_str()));
        if dirs.is_empty() {
            return Err(Error::UnknownProgram(only.clone()));
        }
    }
    let fsync_ceiling_per_second = cardrules_sqlite::bare_commits_per_second(
        &scratch.0.join("fsync.sqlite"),
        options.seconds,
    )?;
    let floor = match floor_component() {
        Some(component) => {
            let dir = cardrules::sample::write_floor(&scratch.0, &component)?;
            let trust = Trust::allow_unsigned();
            Some(measure(
                &sandbox,
                &uncached,
                &trust,
                &dir,
                options,
                &scratch.0,
                fsync_ceiling_per_second,
            )?)
        }
        None => None,
    };
    let mut programs = Vec::new();
    for dir in dirs {
        let mut report = measure(
            &sandbox,
            &uncached,
            &options.trust,
            &dir,
            options,
            &scratch.0,
            fsync_ceiling_per_second,
        )?;
        report.evaluation_p50_over_floor = floor
            .as_ref()
            .map(|f| report.evaluation.p50_us / f.evaluation.p50_us);
        if let Some(other) = &options.baseline
            && let Ok(dir) = dirs_by_id(other, &report.program)
        {
            let mut base = baseline(&sandbox, &options.trust, &dir, options.seconds)?;
            base.p50_over_baseline =
                report.evaluation.p50_us / base.evaluation.p50_us.max(f64::MIN_POSITIVE);
            report.baseline = Some(base);
        }
        programs.push(report);
    }
    let isolation = match (programs.first(), guest("hostile_loop")) {
        (Some(good), Some(component)) => {
            let good = dirs_by_id(&options.policies, &good.program)?;
            Some(isolation(
                &sandbox,
                &options.trust,
                &good,
                &component,
                options,
                &scratch.0,
            )?)
        }
        _ => None,
    };
    let slow_policy = match guest("spin") {
        Some(component) => Some(slow_policy(&sandbox, &component, options, &scratch.0)?),
        None => None,
    };
    Ok(Report {
        fsync_ceiling_per_second,
        isolation,
        slow_policy,
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        },
        load_all_ms,
        seconds_per_measurement: options.seconds,
        programs,
        floor,
    })
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<Scratch> {
    let dir = std::env::temp_dir().join(format!("cardrules-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Invalid(format!("cannot create `{}`: {e}", dir.display())))?;
    Ok(Scratch(dir))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn measure(
    sandbox: &Arc<Sandbox>,
    uncached: &Sandbox,
    trust: &Trust,
    dir: &Path,
    options: &Options,
    scratch: &Path,
    fsync_ceiling_per_second: f64,
) -> Result<ProgramReport> {
    let start = Instant::now();
    Program::load(uncached, trust, dir)?;
    let compile_ms = ms(start.elapsed());
    let start = Instant::now();
    let program = Arc::new(Program::load(sandbox, trust, dir)?);
    let load_ms = ms(start.elapsed());
    let id = program.id().to_string();

    let mut instantiations: Vec<Duration> = (0..200)
        .map(|_| {
            let start = Instant::now();
            sandbox
                .instantiate(&program.policy, program.files.manifest.limits)
                .map(|()| start.elapsed())
        })
        .collect::<Result<_>>()?;
    instantiations.sort();
    let instantiate_us = us(instantiations[instantiations.len() / 2]);

    let mix = cardrules::sample::requests(&program);
    if mix.is_empty() {
        return Err(Error::Invalid(format!(
            "program `{id}` has no demo holders to benchmark with"
        )));
    }

    // (a) Evaluation alone: dry runs on a memory ledger, plain and explained.
    let memory = cardrules::sample::memory_host(sandbox.clone(), program.clone())?;
    let dry_runs = cardrules::sample::dry_runs(mix.clone());
    let (evaluation, fuel) = timed(options.seconds, 1, |_, n| {
        memory
            .decide(&dry_runs[n % dry_runs.len()])
            .map(|d| Some(d.fuel))
    })?;
    let explained: Vec<Request> = dry_runs
        .iter()
        .cloned()
        .map(|mut r| {
            r.explain = true;
            r
        })
        .collect();
    let (evaluation_explained, _) = timed(options.seconds, 1, |_, n| {
        memory
            .decide(&explained[n % explained.len()])
            .map(|d| Some(d.fuel))
    })?;
    // Committed, actions that block or move a card would leave the rest of the run
    // deciding on dead cards; the durable mix keeps the requests that leave it active.
    let lasting = lasting_mix(&memory, &program);
    let durable_mix = &lasting;

    // (b) Durable decisions on a SQLite file (or the given ledger), from one thread, from
    // two threads, and — for `--ledger` — from two hosts, each with its own connections.
    let open = || -> Result<Arc<dyn cardrules::Journal>> {
        match &options.ledger {
            Some(spec) => spec.open(),
            None => Ok(Arc::new(SqliteLedger::open(
                &scratch.join(format!("{id}.sqlite")),
            )?)),
        }
    };
    let durable = Arc::new(Host::new(sandbox.clone(), open()?));
    durable.insert(program.clone());
    durable.register_demo_holders(&id)?;
    let durable_1_thread = durable_run(&durable, durable_mix, options.seconds, 1)?;
    let durable_2_threads = durable_run(&durable, durable_mix, options.seconds, 2)?;
    let second = Arc::new(Host::new(sandbox.clone(), open()?));
    second.insert(program.clone());
    let durable_2_hosts = durable_hosts(&[durable.clone(), second], durable_mix, options.seconds)?;
    let before = durable.ledger().stats();
    let durable_many_tills = durable_run(&durable, durable_mix, options.seconds, TILLS)?;
    let after = durable.ledger().stats();
    let commits = after.commits - before.commits;
    let elapsed =
        durable_many_tills.decisions as f64 / durable_many_tills.per_second.max(f64::MIN_POSITIVE);
    let group_commit = GroupCommit {
        commits,
        commits_per_second: commits as f64 / elapsed.max(f64::MIN_POSITIVE),
        decisions_per_commit: (after.changes - before.changes) as f64 / commits.max(1) as f64,
        conflicts: after.conflicts - before.conflicts,
        append_mean_us: (after.append_us - before.append_us) as f64 / commits.max(1) as f64,
    };

    let fuel = Fuel {
        mean: fuel.iter().sum::<u64>() as f64 / fuel.len().max(1) as f64,
        max: fuel.iter().copied().max().unwrap_or(0),
    };
    let explained_p50_over_plain =
        evaluation_explained.p50_us / evaluation.p50_us.max(f64::MIN_POSITIVE);
    Ok(ProgramReport {
        program: id,
        version: program.policy.info.version.clone(),
        world: program.policy.world().to_string(),
        component_bytes: program.policy.size,
        compile_ms,
        load_ms,
        instantiate_us,
        mix: mix.len(),
        evaluation,
        durable_1_thread,
        durable_2_threads,
        durable_2_hosts,
        durable_over_fsync_ceiling: durable_many_tills.per_second
            / fsync_ceiling_per_second.max(f64::MIN_POSITIVE),
        durable_many_tills,
        group_commit,
        fuel,
        evaluation_p50_over_floor: None,
        evaluation_explained,
        explained_p50_over_plain,
        baseline: None,
    })
}

/// Times the dry runs of the program in `dir` (another build), as [`measure`] times the
/// evaluation.
fn baseline(sandbox: &Arc<Sandbox>, trust: &Trust, dir: &Path, seconds: f64) -> Result<Baseline> {
    let program = Arc::new(Program::load(sandbox, trust, dir)?);
    let memory = cardrules::sample::memory_host(sandbox.clone(), program.clone())?;
    let dry_runs = cardrules::sample::dry_runs(cardrules::sample::requests(&program));
    let (evaluation, _) = timed(seconds, 1, |_, n| {
        memory
            .decide(&dry_runs[n % dry_runs.len()])
            .map(|d| Some(d.fuel))
    })?;
    Ok(Baseline {
        version: program.policy.info.version.clone(),
        world: program.policy.world().to_string(),
        evaluation,
        p50_over_baseline: 0.0,
    })
}

/// A prefix no earlier run used, so that request ids on a kept ledger are new.
fn run_prefix() -> String {
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("bench/{}-{started}/{run}", std::process::id())
}

/// Durable decisions from `threads` threads, each on its own run of request ids.
fn durable_run(host: &Arc<Host>, mix: &[Request], seconds: f64, threads: usize) -> Result<Timing> {
    durable_hosts(&vec![host.clone(); threads], mix, seconds)
}

/// Durable decisions from one thread per entry of `hosts`.
fn durable_hosts(hosts: &[Arc<Host>], mix: &[Request], seconds: f64) -> Result<Timing> {
    let prefix = run_prefix();
    let unavailable = std::sync::atomic::AtomicU64::new(0);
    let (mut timing, fuel) = timed(seconds, hosts.len(), |thread, n| {
        let mut request = mix[(n * 7 + thread) % mix.len()].clone();
        request.id = Some(format!("{prefix}/{thread}/{n}"));
        match hosts[thread].decide(&request) {
            Ok(decision) => Ok(Some(decision.fuel)),
            // A till would retry later; the figure says how often it had to.
            Err(Error::Unavailable { .. }) => {
                unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    })?;
    drop(fuel);
    timing.unavailable = unavailable.into_inner();
    Ok(timing)
}

/// Calls `decide(thread, n)` from `threads` threads for `seconds`, timing each call;
/// returns the timing and the fuel each decision reported.
fn timed<F>(seconds: f64, threads: usize, decide: F) -> Result<(Timing, Vec<u64>)>
where
    F: Fn(usize, usize) -> Result<Option<u64>> + Sync,
{
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let decide = &decide;
    let results: Vec<Result<(Vec<Duration>, Vec<u64>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let (mut latencies, mut fuel) = (Vec::new(), Vec::new());
                    let mut n = 0;
                    while start.elapsed() < budget {
                        let began = Instant::now();
                        if let Some(used) = decide(thread, n)? {
                            fuel.push(used);
                            latencies.push(began.elapsed());
                        }
                        n += 1;
                    }
                    Ok((latencies, fuel))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a benchmark thread panicked".into())))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let (mut latencies, mut fuel) = (Vec::new(), Vec::new());
    for result in results {
        let (l, f) = result?;
        latencies.extend(l);
        fuel.extend(f);
    }
    latencies.sort();
    let pick = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .map_or(0.0, us)
    };
    let timing = Timing {
        threads,
        decisions: latencies.len() as u64,
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        max_us: latencies.last().copied().map_or(0.0, us),
        unavailable: 0,
    };
    Ok((timing, fuel))
}
