//! `cardrules test`: runs policy suites on a scratch ledger, prints what failed beside what
//! was expected, and writes the JUnit report CI systems read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use cardrules::coverage::Coverage;
use cardrules::suite::{self, SuiteReport};
use cardrules::{Host, MemoryLedger, Sandbox, Trust};

use crate::exit;

/// The policies directory when `--policies` is not given and no PATH is a program
/// directory.
const DEFAULT_POLICIES: &str = "policies";

/// The policies directory and the suite paths of a run. A PATH that is a program directory
/// (it has a `policy.toml`) stands for its `suites/`; without `--policies`, its parent is
/// the policies directory, so that `cardrules test somewhere/my-program` tests that
/// program wherever it is, as `cardrules test` in `somewhere/..` would. Program
/// directories in different parents need `--policies`.
fn resolve(policies: Option<&Path>, paths: &[PathBuf]) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let mut parent: Option<(PathBuf, PathBuf)> = None; // (as given, canonical)
    let mut resolved = Vec::with_capacity(paths.len());
    for path in paths {
        if !path.join("policy.toml").is_file() {
            resolved.push(path.clone());
            continue;
        }
        let suites = path.join("suites");
        if !suites.is_dir() {
            return Err(anyhow!(
                "program directory `{}` has no `suites/` directory to run",
                path.display()
            ));
        }
        resolved.push(suites);
        if policies.is_some() {
            continue;
        }
        let this = parent_dir(path)?;
        let canonical = this
            .canonicalize()
            .with_context(|| format!("cannot read `{}`", this.display()))?;
        match &parent {
            None => parent = Some((this, canonical)),
            Some((first, known)) if *known != canonical => {
                return Err(anyhow!(
                    "program directories in `{}` and `{}` have different policies \
                     directories: give `--policies DIR`",
                    first.display(),
                    this.display()
                ));
            }
            Some(_) => {}
        }
    }
    let policies = match (policies, parent) {
        (Some(policies), _) => policies.to_path_buf(),
        (None, Some((parent, _))) => parent,
        (None, None) => PathBuf::from(DEFAULT_POLICIES),
    };
    Ok((policies, resolved))
}

/// The directory holding program directory `dir`, as the user would write it (`.` for
/// `bergen`); `.` or `..` as `dir` are resolved first.
fn parent_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.file_name().is_some()
        && let Some(parent) = dir.parent()
    {
        return Ok(if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent.to_path_buf()
        });
    }
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("cannot read `{}`", dir.display()))?;
    canonical.parent().map(Path::to_path_buf).ok_or_else(|| {
        anyhow!(
            "program directory `{}` has no parent directory",
            dir.display()
        )
    })
}

/// Runs the suites of `paths` (every `suites/` under the policies directory if none) and
/// prints a line per suite, the failed steps and a total; with `junit`, writes the JUnit
/// report too. Returns the exit code: 0 all passed, 1 a step failed, 2 a suite or a
/// program it needs could not be loaded.
pub fn run(
    policies: Option<&Path>,
    junit: Option<&Path>,
    coverage: &CoverageWanted,
    paths: &[PathBuf],
    trust: Trust,
) -> anyhow::Result<u8> {
    let (policies, paths) = resolve(policies, paths)?;
    let policies = policies.as_path();
    let files = suite::discover(policies, &paths)?;
    if files.is_empty() {
        return Err(anyhow!("no suites found under `{}`", policies.display()));
    }
    let mut suites = Vec::new();
    let mut load_errors = Vec::new();
    for file in &files {
        match suite::load(file) {
            Ok(loaded) => suites.push(loaded),
            Err(e) => load_errors.push(e.to_string()),
        }
    }
    let host =
        Host::new(Arc::new(Sandbox::new()?), Arc::new(MemoryLedger::new())).with_trust(trust);
    let program_errors = cardrules::loader::load_dir(&host, policies)?;
    for error in &program_errors {
        // Only the programs a suite needs are fatal; the rest are reported as warnings.
        let needed = suites.iter().any(|s| matches!(error, cardrules::Error::Load { program, .. } if *program == s.suite.program));
        if !needed {
            eprintln!("warning: {error}");
        }
    }
    let mut reports = Vec::new();
    for loaded in &suites {
        match suite::run(&host, loaded) {
            Ok(report) => reports.push(report),
            Err(e) => load_errors.push(e.to_string()),
        }
    }

    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for report in &reports {
        let ok = report.steps.iter().filter(|s| s.passed()).count();
        let status = if ok == report.steps.len() {
            "ok  "
        } else {
            "FAIL"
        };
        writeln!(
            out,
            "{status} {} ({}: {ok}/{} steps)",
            report.path.display(),
            report.program,
            report.steps.len()
        )?;
        for step in report.steps.iter().filter(|s| !s.passed()) {
            write!(out, "{step}")?;
        }
        passed += ok;
        failed += report.steps.len() - ok;
    }
    for error in &load_errors {
        writeln!(out, "error: {error}")?;
    }
    if let Some(path) = junit {
        write_junit(path, &reports, &load_errors)
            .with_context(|| format!("cannot write junit report `{}`", path.display()))?;
    }
    let mut below = false;
    if coverage.wanted() {
        let covered = cardrules::coverage::of(&host, &reports);
        if coverage.print {
            print_coverage(&mut out, &covered)?;
        }
        if let Some(path) = &coverage.json {
            let json = serde_json::to_string_pretty(&covered)?;
            std::fs::write(path, json + "\n")
                .with_context(|| format!("cannot write coverage report `{}`", path.display()))?;
        }
        if let Some(min) = coverage.min_percent {
            for program in covered.programs.iter().filter(|p| p.percent() < min) {
                writeln!(
                    out,
                    "coverage `{}`: {:.1} % of checks seen both ways, below the minimum of {min} %",
                    program.program,
                    program.percent()
                )?;
                below = true;
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if !load_errors.is_empty() {
        exit::BAD_INPUT
    } else if failed > 0 || below {
        exit::STEP_FAILED
    } else {
        exit::OK
    })
}

/// What coverage the caller asked for (`--coverage`, `--coverage-json`, `--min-coverage`).
#[derive(Debug, Default)]
pub struct CoverageWanted {
    pub print: bool,
    pub json: Option<PathBuf>,
    pub min_percent: Option<f64>,
}

impl CoverageWanted {
    fn wanted(&self) -> bool {
        self.print || self.json.is_some() || self.min_percent.is_some()
    }
}

/// One line per program, then each check not yet seen both ways and each reason never
/// seen as a denial.
fn print_coverage(out: &mut impl Write, coverage: &Coverage) -> anyhow::Result<()> {
    for program in &coverage.programs {
        writeln!(
            out,
            "coverage `{}`: {} of {} checks seen both passing and failing, {} of {} reasons",
            program.program,
            program.checks_both_ways(),
            program.checks.len(),
            program.reasons_denied(),
            program.reasons.len()
        )?;
        for check in program.checks.iter().filter(|c| !c.both_ways()) {
            let never = if check.passed == 0 {
                "passing"
            } else {
                "failing"
            };
            writeln!(
                out,
                "  never seen {never}: `{}` (`{}`)",
                check.rule, check.reason
            )?;
        }
        for reason in program.reasons.iter().filter(|r| r.denied == 0) {
            writeln!(out, "  never denied with: `{}`", reason.reason)?;
        }
    }
    Ok(())
}

/// Writes the JUnit report: one test suite per suite file, one test case per step, and
/// one erroring test case per suite that could not be loaded or run (CI must see those
/// too, not only the steps that ran).
fn write_junit(path: &Path, reports: &[SuiteReport], load_errors: &[String]) -> anyhow::Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("cardrules");
    if !load_errors.is_empty() {
        let mut test_suite = TestSuite::new("suites that could not be loaded");
        for (index, error) in load_errors.iter().enumerate() {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(error.clone());
            status.set_description(error.clone());
            let mut case = TestCase::new(format!("load error {}", index + 1), status);
            case.set_classname("cardrules");
            test_suite.add_test_case(case);
        }
        report.add_test_suite(test_suite);
    }
    for suite_report in reports {
        let mut test_suite = TestSuite::new(suite_report.path.display().to_string());
        for step in &suite_report.steps {
            let name = if step.name.is_empty() {
                format!("step {}: {}", step.number, step.summary)
            } else {
                format!("step {}: {}", step.number, step.name)
            };
            let status = if step.passed() {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_description(step.to_string());
                status
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(suite_report.program.clone());
            test_suite.add_test_case(case);
        }
        report.add_test_suite(test_suite);
    }
    let file = std::fs::File::create(path)?;
    report.serialize(file)?;
    Ok(())
}
