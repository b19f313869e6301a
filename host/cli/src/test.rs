//! `cardrules test`: runs policy suites on a scratch ledger, prints what failed beside what
//! was expected, and writes the JUnit report CI systems read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use cardrules::suite::{self, SuiteReport};
use cardrules::{Host, MemoryLedger, Sandbox, Trust};

use crate::exit;

/// Runs the suites of `paths` (every `suites/` under the policies directory if none) and
/// prints a line per suite, the failed steps and a total; with `junit`, writes the JUnit
/// report too. Returns the exit code: 0 all passed, 1 a step failed, 2 a suite or a
/// program it needs could not be loaded.
pub fn run(
    policies: &Path,
    junit: Option<&Path>,
    paths: &[PathBuf],
    trust: Trust,
) -> anyhow::Result<u8> {
    let files = suite::discover(policies, paths)?;
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
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if !load_errors.is_empty() {
        exit::BAD_INPUT
    } else if failed > 0 {
        exit::STEP_FAILED
    } else {
        exit::OK
    })
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
