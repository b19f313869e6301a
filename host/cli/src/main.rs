//! The `cardrules` command: parse ([`args`]), run one function per subcommand, and map the
//! result to a documented exit code (docs/contract.md). The work is in the crates: the
//! engine (`cardrules`), the server (`cardrules-server`); here are only the command's own
//! parts: the test runner ([`mod@test`]), `--ledger` ([`ledger`]), the replay report
//! ([`replay`]), the scaffold ([`scaffold`]) and the benchmark ([`mod@bench`]).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use cardrules::{Host, MemoryLedger, Reporter, Request, Sandbox, Trust};
use clap::Parser;

mod args;
mod bench;
mod builder;
mod kit;
mod ledger;
mod personal;
mod portal;
mod publish;
mod replay;
mod scaffold;
mod test;

use args::{Cli, Command, LedgerCommand, ServeArgs};
use ledger::LedgerSpec;

/// mimalloc, not the C library's allocator: a decision allocates a few dozen small blocks
/// (the request handed to the policy, the decision, the store), and glibc's `malloc` and
/// `free` were a third of its instructions (callgrind; see the README's profile table).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit codes of docs/contract.md.
mod exit {
    /// Everything passed, or a decision was made.
    pub const OK: u8 = 0;
    /// A suite step failed.
    pub const STEP_FAILED: u8 = 1;
    /// Bad input: a suite, policy, request or flag could not be used.
    pub const BAD_INPUT: u8 = 2;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs each request; the one-shot commands only what goes wrong.
    let default_filter = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Test {
            policies,
            junit,
            coverage,
            coverage_json,
            min_coverage,
            paths,
            trust,
        } => {
            let wanted = test::CoverageWanted {
                print: coverage,
                json: coverage_json,
                min_percent: min_coverage,
            };
            trust.resolve(true).and_then(|trust| {
                test::run(
                    policies.as_deref(),
                    junit.as_deref(),
                    &wanted,
                    &paths,
                    trust,
                )
            })
        }
        Command::Decide {
            policies,
            ledger,
            dry_run,
            explain,
            request,
            lateness,
            trust,
        } => trust.resolve(false).and_then(|trust| {
            let bounded = lateness.bounded();
            decide(
                &policies,
                &ledger,
                (dry_run, explain, bounded),
                &request,
                trust,
            )
        }),
        Command::Serve(serve_args) => serve_args
            .trust
            .resolve(false)
            .and_then(|trust| serve(serve_args, trust)),
        Command::Token {
            name,
            role,
            programs,
            actions,
            cards,
            locations,
        } => token(&name, &role, &programs, &actions, &cards, &locations),
        Command::Bench {
            policies,
            program,
            seconds,
            ledger,
            json,
            baseline,
            trust,
        } => trust.resolve(true).and_then(|trust| {
            bench(
                bench::Options {
                    policies,
                    program,
                    seconds,
                    ledger,
                    trust,
                    baseline,
                },
                json,
            )
        }),
        Command::Replay {
            ledger,
            policies,
            program,
            since,
            until,
            json,
            html,
            trust,
        } => trust.resolve(true).and_then(|trust| {
            replay_ledger(
                &ledger,
                &policies,
                program.as_deref(),
                cardrules::replay::Window { since, until },
                json,
                html.as_deref(),
                trust,
            )
        }),
        Command::New {
            program,
            time_zone,
            languages,
            policies,
            guests,
            lang,
        } => lang.parse().and_then(|lang| {
            new_program(scaffold::Scaffold {
                program,
                time_zone,
                languages,
                policies,
                guests,
                lang,
            })
        }),
        Command::Build { policies, programs } => builder::build(&policies, &programs),
        Command::Keygen { out } => keygen(&out),
        Command::Publish { to, token, dir } => publish::publish(&to, &token, &dir),
        Command::Sign { key, programs } => sign(&key, &programs),
        Command::Allowances {
            program,
            card,
            at,
            action,
            offer,
            language,
            ledger,
        } => portal::allowances(
            &ledger,
            &program,
            &card,
            portal::Asked {
                at,
                action,
                offer,
                language,
            },
        ),
        Command::History {
            program,
            card,
            since,
            until,
            limit,
            after,
            ledger,
        } => portal::history(&ledger, &program, &card, [since, until, limit, after]),
        Command::Ledger { command } => match command {
            LedgerCommand::Stats { ledger, json } => ledger::stats(&ledger, json),
            LedgerCommand::Verify { ledger, programs } => ledger::verify(&ledger, &programs),
            LedgerCommand::Erase {
                read,
                program,
                card,
            } => personal::erase(&read, &program, &card),
            LedgerCommand::Restrict {
                read,
                program,
                card,
                lift,
            } => personal::restrict(&read, &program, &card, !lift),
            LedgerCommand::Export {
                read,
                program,
                card,
            } => personal::export(&read, &program, &card),
            LedgerCommand::Compact {
                read,
                at,
                vacuum,
                json,
            } => personal::compact(&read, at, vacuum, json),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(exit::BAD_INPUT)
        }
    }
}

/// The error and its causes, joined with `: `, leaving out a cause whose text the message
/// already carries (the library's messages name their causes themselves).
fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn decide(
    policies: &Path,
    ledger: &LedgerSpec,
    (dry_run, explain, bounded): (bool, bool, bool),
    request_path: &Path,
    trust: Trust,
) -> anyhow::Result<u8> {
    let text = if request_path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the request from standard input")?;
        text
    } else {
        std::fs::read_to_string(request_path)
            .with_context(|| format!("cannot read request `{}`", request_path.display()))?
    };
    let mut request: Request = cardrules::inputs::request(&text)
        .with_context(|| format!("cannot use request `{}`", request_path.display()))?;
    request.dry_run |= dry_run;
    request.explain |= explain;

    let host = Host::new(Arc::new(Sandbox::new()?), ledger.open()?).with_trust(trust);
    // A one-shot command writes no snapshot: the thread would be cut short at its exit.
    host.ledger().snapshot_every(0);
    for error in cardrules::loader::load_dir(&host, policies)? {
        eprintln!("warning: {error}");
    }
    host.register_demo_holders(&request.program)?;
    // The command reports what a till or a desk saw: bounded like the server's tills.
    let decision = match bounded {
        true => host.decide_as(&request, Reporter::Till)?.1,
        false => {
            tracing::warn!("{}", cardrules::timing::UNBOUNDED);
            host.decide(&request)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&decision)?);
    Ok(exit::OK)
}

/// Runs the server `args` describe until SIGTERM or Ctrl-C; the server checks the whole
/// configuration before it opens the ledger or loads a program.
fn serve(args: ServeArgs, trust: Trust) -> anyhow::Result<u8> {
    let ServeArgs {
        policies,
        ledger,
        listen,
        body_limit,
        no_watch,
        auth,
        insecure_no_auth,
        shadow,
        upstream,
        upstream_token,
        upstream_ca,
        net,
        lateness,
        trust: _,
    } = args;
    let venue: Option<std::sync::Arc<dyn cardrules_server::upstream::VenueRole>> =
        match (upstream, upstream_token) {
            (Some(url), Some(token)) => Some(std::sync::Arc::new(
                cardrules_venue::Venue::new(&url, &token, upstream_ca.as_deref())
                    .map_err(|e| anyhow!(e))?,
            )),
            _ => None,
        };
    let config = cardrules_server::Config {
        policies,
        ledger: Box::new(ledger),
        trust,
        listen,
        body_limit,
        watch: !no_watch,
        auth,
        insecure_no_auth,
        shadow,
        // clap lets neither flag come without the other.
        tls: net.tls_cert.zip(net.tls_key),
        max_in_flight: net.max_in_flight,
        idle_timeout: std::time::Duration::from_secs(net.idle_timeout),
        max_connections: net.max_connections,
        max_connections_per_peer: net.max_connections_per_peer,
        max_header_bytes: net.max_header_bytes,
        queue_alarm: std::time::Duration::from_secs(net.queue_alarm),
        snapshot_every: net.snapshot_every,
        compact_every: std::time::Duration::from_secs(net.compact_every),
        bound_times: lateness.bounded(),
        venue,
    };
    cardrules_server::Server::run(config)?;
    Ok(exit::OK)
}

fn token(
    name: &str,
    role: &str,
    programs: &[String],
    actions: &[String],
    cards: &[String],
    locations: &[String],
) -> anyhow::Result<u8> {
    use cardrules_server::auth::{self, Role};
    let role: Role = role.parse()?;
    if !actions.is_empty() && !matches!(role, Role::Terminal | Role::Guardian) {
        return Err(anyhow!(
            "`--action` is for roles `terminal` and `guardian` only; role `{role}` may ask for every action"
        ));
    }
    if role == Role::Guardian && actions.is_empty() {
        return Err(anyhow!(
            "role `guardian` needs `--action`: with every action a guardian could `purchase` \
             with its child's card; give what the portal does, e.g. `--action top-up --action \
             enable-auto-top-up --action block-card`"
        ));
    }
    if !cards.is_empty() && role != Role::Guardian {
        return Err(anyhow!(
            "`--card` is for role `guardian` only; role `{role}` acts for every card of its programs"
        ));
    }
    if role == Role::Guardian && cards.is_empty() {
        return Err(anyhow!(
            "role `guardian` needs `--card`: the only cards it may act for (repeat for more)"
        ));
    }
    if !locations.is_empty() && role != Role::Venue {
        return Err(anyhow!(
            "`--location` is for role `venue` only; role `{role}` is not a venue"
        ));
    }
    if role == Role::Venue && locations.is_empty() {
        return Err(anyhow!(
            "role `venue` needs `--location`: the catalogue locations the venue is (repeat for more)"
        ));
    }
    let made = auth::new_token(name, role, programs, actions, cards, locations)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "token: {}", made.token)?;
    writeln!(
        out,
        "# The token above is shown once and stored nowhere: give it to the caller, who sends\n\
         # `Authorization: Bearer <token>`. Append this entry (the token's SHA-256) to the\n\
         # auth file of `cardrules serve --auth FILE`, then restart the server:"
    )?;
    write!(out, "{}", made.entry)?;
    Ok(exit::OK)
}

fn replay_ledger(
    ledger: &LedgerSpec,
    policies: &Path,
    only: Option<&str>,
    window: cardrules::replay::Window,
    json: bool,
    html: Option<&Path>,
    trust: Trust,
) -> anyhow::Result<u8> {
    if let LedgerSpec::Sqlite(path) = ledger
        && !path.is_file()
    {
        return Err(anyhow!("no ledger at `{}`", path.display()));
    }
    let original = ledger.open()?;
    let sandbox = Arc::new(Sandbox::new()?);
    let loader = Host::new(sandbox.clone(), Arc::new(MemoryLedger::new())).with_trust(trust);
    if let Some(e) = cardrules::loader::load_dir(&loader, policies)?
        .into_iter()
        .next()
    {
        return Err(e.into());
    }
    let mut programs = loader.programs();
    if let Some(only) = only {
        programs.retain(|p| p.id() == only);
        if programs.is_empty() {
            return Err(anyhow!(
                "no program `{only}` under `{}`",
                policies.display()
            ));
        }
    }
    let report = cardrules::replay::replay(&sandbox, &original, &programs, window)?;
    if let Some(path) = html {
        let page = replay::html(
            &report,
            &format!("Replay of {ledger} against {}", policies.display()),
        );
        std::fs::write(path, page).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", replay::table(&report));
    }
    Ok(exit::OK)
}

fn new_program(s: scaffold::Scaffold) -> anyhow::Result<u8> {
    let written =
        scaffold::create(&s).with_context(|| format!("cannot scaffold program `{}`", s.program))?;
    for path in &written {
        println!("created {}", path.display());
    }
    let dir = s.policies.join(&s.program);
    let in_checkout = written.iter().any(|path| !path.starts_with(&s.policies));
    match s.lang {
        builder::Language::Rust if in_checkout => println!(
            "build with `cargo build --release`, then run its suite: `cardrules test {}`",
            dir.display()
        ),
        lang => println!(
            "build with `cardrules build --policies {} {}` (the first build installs {}), then run its suite: `cardrules test {}`",
            s.policies.display(),
            s.program,
            match lang {
                builder::Language::Rust =>
                    "the `wasm32-wasip2` target if your Rust toolchain lacks it",
                builder::Language::Python => "the pinned Python toolchain",
                builder::Language::Js => "the pinned JavaScript toolchain",
            },
            dir.display()
        ),
    }
    Ok(exit::OK)
}

fn keygen(out: &Path) -> anyhow::Result<u8> {
    let keys = cardrules::signing::keygen()?;
    let secret = out.with_extension("key");
    let public = out.with_extension("pub");
    for path in [&secret, &public] {
        if path.exists() {
            return Err(anyhow!(
                "`{}` exists already; not overwriting a key",
                path.display()
            ));
        }
    }
    write_secret(&secret, &format!("{}\n", keys.secret))
        .with_context(|| format!("cannot write `{}`", secret.display()))?;
    std::fs::write(&public, format!("{}\n", keys.public))
        .with_context(|| format!("cannot write `{}`", public.display()))?;
    println!(
        "secret key: {} (keep it secret; sign with `cardrules sign --key {}`)",
        secret.display(),
        secret.display()
    );
    println!("public key: {}", keys.public);
    println!("operators trust it for a program with, in their trust file:");
    println!("  [programs]\n  <program> = [\"{}\"]", keys.public);
    Ok(exit::OK)
}

/// Writes a secret key readable by its owner only.
fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

fn sign(key: &Path, programs: &[PathBuf]) -> anyhow::Result<u8> {
    let secret = std::fs::read_to_string(key)
        .with_context(|| format!("cannot read key `{}`", key.display()))?;
    for dir in programs {
        let signed = cardrules::signing::sign(&secret, dir)?;
        let files: Vec<&str> = signed.files.keys().map(String::as_str).collect();
        println!(
            "signed `{}`: program `{}`, {} files: {}",
            dir.join(cardrules::signing::SIGNATURE_FILE).display(),
            signed.program,
            files.len(),
            files.join(", ")
        );
    }
    Ok(exit::OK)
}

fn bench(options: bench::Options, json: bool) -> anyhow::Result<u8> {
    if !(options.seconds > 0.0 && options.seconds <= 600.0) {
        return Err(anyhow!("`--seconds` must be between 0 and 600"));
    }
    let report = bench::run(&options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(exit::OK);
    }
    let m = &report.machine;
    println!(
        "{} cpus, {} {}; {} s per measurement; loading all programs (cached): {:.1} ms",
        m.cpus, m.os, m.arch, report.seconds_per_measurement, report.load_all_ms
    );
    let rows = report.floor.iter().chain(&report.programs);
    for p in rows {
        println!(
            "\n{} {} — component {} KiB, compile {:.0} ms, load {:.1} ms, instantiate {:.1} µs, fuel mean {:.0} max {}, mix of {}",
            p.program,
            p.version,
            p.component_bytes / 1024,
            p.compile_ms,
            p.load_ms,
            p.instantiate_us,
            p.fuel.mean,
            p.fuel.max,
            p.mix
        );
        for (label, t) in [
            ("evaluation", &p.evaluation),
            ("explained", &p.evaluation_explained),
            ("durable, 1 thread", &p.durable_1_thread),
            ("durable, 2 threads", &p.durable_2_threads),
        ] {
            println!(
                "  {label:<20} {:>9.0}/s  p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs",
                t.per_second, t.p50_us, t.p99_us, t.max_us
            );
        }
        if let Some(ratio) = p.evaluation_p50_over_floor {
            println!("  evaluation p50 is {ratio:.1}× the empty policy's");
        }
        println!(
            "  explained p50 is {:.2}× the plain evaluation's (world {})",
            p.explained_p50_over_plain, p.world
        );
        if let Some(base) = &p.baseline {
            println!(
                "  baseline {} (world {}): evaluation p50 {:.1} µs; this build is {:.2}× it",
                base.version, base.world, base.evaluation.p50_us, base.p50_over_baseline
            );
        }
    }
    if let Some(slow) = &report.slow_policy {
        println!(
            "\nslow policy ({:.0} µs per evaluation), {} tills on their own cards, durable:",
            slow.evaluation_p50_us, slow.parallel.threads
        );
        for (label, t) in [
            ("one at a time", &slow.one_at_a_time),
            ("proposed in parallel", &slow.parallel),
        ] {
            println!(
                "  {label:<20} {:>9.0}/s  p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs",
                t.per_second, t.p50_us, t.p99_us, t.max_us
            );
        }
        println!(
            "  {:.2}× (proposals: {} stood, {} evaluated again; cores busy {} and {})",
            slow.speedup,
            slow.proposals_stood,
            slow.proposals_stale,
            slow.one_at_a_time_cores
                .map_or("?".into(), |c| format!("{c:.2}")),
            slow.parallel_cores
                .map_or("?".into(), |c| format!("{c:.2}"))
        );
    }
    Ok(exit::OK)
}
