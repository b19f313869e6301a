//! Policy suites (docs/contract.md): TOML files of holders, extra offers and steps with their
//! expected decisions, each run against a fresh in-memory ledger.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::ledger::MemoryLedger;
use crate::model::{Decision, Holder, Moment, Offer, Request};
use crate::policy::Sandbox;
use crate::program::Program;
use crate::program::files::{collect_toml, is_program_dir, parse_toml, program_dirs, read_text};
use crate::program::manifest::{SUITES_DIR, index_offers};

mod expect;

pub use expect::{Expect, ExpectCheck, Mismatch, compare, show_check};

/// A suite file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Suite {
    pub program: String,
    #[serde(default)]
    pub holders: Vec<Holder>,
    #[serde(default)]
    pub offers: Vec<Offer>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One request of a suite and the decision expected for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Step {
    pub name: Option<String>,
    at: Moment,
    pub card: String,
    pub action: String,
    pub offer: Option<String>,
    pub party: Option<u32>,
    pub amount: Option<i64>,
    pub asset: Option<String>,
    pub to_card: Option<String>,
    pub new_card: Option<String>,
    pub id: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    pub language: Option<String>,
    /// Suites always decide with `explain` (their reports and coverage use the checks);
    /// the key is accepted for symmetry with requests.
    #[serde(default)]
    pub explain: bool,
    pub expect: Expect,
}

/// A suite read from a file, ready to run.
#[derive(Debug, Clone)]
pub struct LoadedSuite {
    pub path: PathBuf,
    pub suite: Suite,
}

/// How a step went.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// 1-based position in the suite.
    pub number: usize,
    pub name: String,
    /// The request, in one line, for the report.
    pub summary: String,
    pub mismatches: Vec<Mismatch>,
    /// The decision that came back, or the error the request met.
    pub actual: std::result::Result<Decision, String>,
}

impl StepReport {
    pub fn passed(&self) -> bool {
        self.actual.is_ok() && self.mismatches.is_empty()
    }

    /// What went wrong, in one line: each failed expectation, or the error met.
    pub fn brief(&self) -> String {
        match &self.actual {
            Err(e) => format!("error: {e}"),
            Ok(_) => self
                .mismatches
                .iter()
                .map(|m| format!("{} expected {}, got {}", m.key, m.expected, m.actual))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// How a suite went.
#[derive(Debug, Clone)]
pub struct SuiteReport {
    pub path: PathBuf,
    pub program: String,
    pub steps: Vec<StepReport>,
}

/// Finds the suite files named by `paths` (files, program directories — their `suites/` —
/// or other directories searched for `*.toml`); with no paths, every `suites/` directory of
/// every program under `policies`.
pub fn discover(policies: &Path, paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if paths.is_empty() {
        for dir in program_dirs(policies)? {
            let suites = dir.join(SUITES_DIR);
            if suites.is_dir() {
                collect_toml(&suites, &mut found)?;
            }
        }
        return Ok(found);
    }
    for path in paths {
        if is_program_dir(path) {
            // A program's directory: its suites, not its manifest and catalogue.
            let suites = path.join(SUITES_DIR);
            if suites.is_dir() {
                collect_toml(&suites, &mut found)?;
            }
        } else if path.is_dir() {
            collect_toml(path, &mut found)?;
        } else if path.is_file() {
            found.push(path.clone());
        } else {
            return Err(Error::invalid(format!(
                "cannot read suite `{}`: no such file or directory",
                path.display()
            )));
        }
    }
    Ok(found)
}

/// Reads and checks a suite file.
pub fn load(path: &Path) -> Result<LoadedSuite> {
    let text = read_text(path).map_err(|e| Error::invalid(format!("cannot load suite: {e}")))?;
    Ok(LoadedSuite {
        path: path.to_path_buf(),
        suite: parse(&text, path)?,
    })
}

/// Parses and checks the text of a suite read from `source`: its offers index (no empty or
/// repeated ids) and it has at least one step.
pub(crate) fn parse(text: &str, source: &Path) -> Result<Suite> {
    let suite: Suite =
        parse_toml(text, source).map_err(|e| Error::invalid(format!("cannot load suite: {e}")))?;
    index_offers(suite.offers.clone(), source)?;
    if suite.steps.is_empty() {
        return Err(Error::invalid(format!(
            "cannot load suite `{}`: it has no steps",
            source.display()
        )));
    }
    Ok(suite)
}

/// Runs a suite against its program, as loaded in `host`, on a fresh in-memory ledger.
pub fn run(host: &Host, loaded: &LoadedSuite) -> Result<SuiteReport> {
    let program = host
        .program(&loaded.suite.program)
        .map_err(|e| cannot_run(loaded, e))?;
    run_against(host.sandbox(), &program, loaded)
}

/// Runs a suite against `program` (which need not be served yet) on a fresh in-memory
/// ledger.
pub fn run_against(
    sandbox: &Arc<Sandbox>,
    program: &Program,
    loaded: &LoadedSuite,
) -> Result<SuiteReport> {
    run_on(sandbox, program, loaded, Arc::new(MemoryLedger::new())).map(|(report, _)| report)
}

/// Runs a suite against `program` on the ledger kept in `journal`, which should be empty;
/// returns the report and the host, whose ledger holds what the steps left.
pub fn run_on(
    sandbox: &Arc<Sandbox>,
    program: &Program,
    loaded: &LoadedSuite,
    journal: Arc<dyn crate::Journal>,
) -> Result<(SuiteReport, Host)> {
    run_on_within(sandbox, program, loaded, journal, None)
}

/// [`run_against`], stopping with an error between steps once `deadline` has passed.
fn run_within(
    sandbox: &Arc<Sandbox>,
    program: &Program,
    loaded: &LoadedSuite,
    deadline: Option<std::time::Instant>,
) -> Result<SuiteReport> {
    run_on_within(
        sandbox,
        program,
        loaded,
        Arc::new(MemoryLedger::new()),
        deadline,
    )
    .map(|(report, _)| report)
}

fn run_on_within(
    sandbox: &Arc<Sandbox>,
    program: &Program,
    loaded: &LoadedSuite,
    journal: Arc<dyn crate::Journal>,
    deadline: Option<std::time::Instant>,
) -> Result<(SuiteReport, Host)> {
    let suite = &loaded.suite;
    if suite.program != program.id() {
        return Err(cannot_run(
            loaded,
            format!("it is for program `{}`", suite.program),
        ));
    }
    let isolated = Host::new(sandbox.clone(), journal);
    let program = program
        .with_offers(&suite.offers)
        .map_err(|e| cannot_run(loaded, e))?;
    isolated.insert(Arc::new(program));
    for holder in &suite.holders {
        isolated
            .register(&suite.program, holder)
            .map_err(|e| cannot_run(loaded, e))?;
    }
    let mut steps = Vec::with_capacity(suite.steps.len());
    for (index, step) in suite.steps.iter().enumerate() {
        if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
            return Err(cannot_run(
                loaded,
                format!(
                    "out of time after {index} of its {} steps",
                    suite.steps.len()
                ),
            ));
        }
        steps.push(run_step(&isolated, &suite.program, index + 1, step));
    }
    let report = SuiteReport {
        path: loaded.path.clone(),
        program: suite.program.clone(),
        steps,
    };
    Ok((report, isolated))
}

fn cannot_run(loaded: &LoadedSuite, why: impl fmt::Display) -> Error {
    Error::invalid(format!(
        "cannot run suite `{}`: {why}",
        loaded.path.display()
    ))
}

/// Checks `program` against its own suites (every `*.toml` under its `suites/`, as read
/// with its other files when it was loaded): the gate a new version passes before it is
/// served. The error names the first failing step. `deadline` bounds the whole check: past
/// it, the check stops between steps and refuses the version.
pub fn check(
    sandbox: &Arc<Sandbox>,
    program: &Program,
    deadline: Option<std::time::Instant>,
) -> Result<()> {
    let fail = |why: String| Error::load(program.id(), why);
    let (mut steps, mut failed, mut first) = (0, 0, None);
    for (file, text) in program.files.suites.iter() {
        let loaded = LoadedSuite {
            path: file.clone(),
            suite: parse(text, file).map_err(|e| fail(e.to_string()))?,
        };
        let report =
            run_within(sandbox, program, &loaded, deadline).map_err(|e| fail(e.to_string()))?;
        steps += report.steps.len();
        for step in report.steps.iter().filter(|s| !s.passed()) {
            failed += 1;
            first.get_or_insert_with(|| (file.clone(), step.clone()));
        }
    }
    match first {
        None => Ok(()),
        Some((file, step)) => Err(fail(format!(
            "its own suites fail ({failed} of {steps} steps); first: `{}` step {}{}: {}",
            file.display(),
            step.number,
            if step.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", step.name)
            },
            step.brief()
        ))),
    }
}

/// Runs `program`'s own suites (as read with its other files) against it, each on a fresh
/// in-memory ledger, and returns their reports: what its coverage is counted from
/// ([`crate::coverage::of_program`]).
pub fn run_own(sandbox: &Arc<Sandbox>, program: &Program) -> Result<Vec<SuiteReport>> {
    program
        .files
        .suites
        .iter()
        .map(|(file, text)| {
            let loaded = LoadedSuite {
                path: file.clone(),
                suite: parse(text, file)?,
            };
            run_against(sandbox, program, &loaded)
        })
        .collect()
}

fn run_step(host: &Host, program: &str, number: usize, step: &Step) -> StepReport {
    let request = Request {
        program: program.to_string(),
        card: step.card.clone(),
        action: step.action.clone(),
        at: step.at.0,
        offer: step.offer.clone(),
        party: step.party,
        amount: step.amount,
        asset: step.asset.clone(),
        to_card: step.to_card.clone(),
        new_card: step.new_card.clone(),
        id: step.id.clone(),
        dry_run: step.dry_run,
        language: step.language.clone(),
        // Always: a failing step shows the checks beside its expectations, and coverage
        // counts them.
        explain: true,
        venue: None,
    };
    let mut summary = format!("{} `{}` at {}", step.action, step.card, step.at.0);
    if let Some(offer) = &step.offer {
        summary.push_str(&format!(", offer `{offer}`"));
    }
    let actual = host.decide(&request).map_err(|e| e.to_string());
    let mismatches = match &actual {
        Ok(decision) => compare(&step.expect, decision),
        Err(_) => Vec::new(),
    };
    StepReport {
        number,
        name: step.name.clone().unwrap_or_default(),
        summary,
        mismatches,
        actual,
    }
}

impl fmt::Display for StepReport {
    /// The failure report of a step: which expectations failed, beside what came back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() {
            String::new()
        } else {
            format!(" `{}`", self.name)
        };
        writeln!(f, "  FAIL step {}{name}: {}", self.number, self.summary)?;
        match &self.actual {
            Err(e) => writeln!(f, "       error: {e}")?,
            Ok(decision) => {
                let width = self
                    .mismatches
                    .iter()
                    .map(|m| m.key.len())
                    .max()
                    .unwrap_or(0)
                    .max(8);
                writeln!(f, "       {:width$}  {:<24}  actual", "", "expected")?;
                for m in &self.mismatches {
                    writeln!(
                        f,
                        "     ✗ {:width$}  {:<24}  {}",
                        m.key, m.expected, m.actual
                    )?;
                }
                let mut line = format!("reason \"{}\"", decision.reason);
                if let Some(error) = &decision.error {
                    line.push_str(&format!(" ({error})"));
                }
                writeln!(f, "       decision: {line}: {}", decision.message)?;
                for check in decision.checks.iter().flatten() {
                    writeln!(f, "         {}", show_check(check))?;
                }
            }
        }
        Ok(())
    }
}
