//! Coverage of a program's rules by its suites: which checks the steps saw both passing
//! and failing, and which of the policy's reasons they saw as a denial. Suites decide
//! with `explain`, so every step's checks are at hand (see [`crate::suite`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::host::Host;
use crate::suite::SuiteReport;

/// How often the steps saw one check pass and fail.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckCoverage {
    pub rule: String,
    pub reason: String,
    /// Steps in which the check held.
    pub passed: u64,
    /// Steps in which it did not.
    pub failed: u64,
}

impl CheckCoverage {
    /// Whether it was seen both ways.
    pub fn both_ways(&self) -> bool {
        self.passed > 0 && self.failed > 0
    }
}

/// How often the steps were denied with one of the policy's reasons.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCoverage {
    pub reason: String,
    pub denied: u64,
}

/// One program's coverage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramCoverage {
    pub program: String,
    /// Every check any step reported, by rule and reason.
    pub checks: Vec<CheckCoverage>,
    /// Every reason the policy declares but `ok`.
    pub reasons: Vec<ReasonCoverage>,
}

impl ProgramCoverage {
    /// Checks seen both passing and failing.
    pub fn checks_both_ways(&self) -> usize {
        self.checks.iter().filter(|c| c.both_ways()).count()
    }

    /// Reasons seen as a denial.
    pub fn reasons_denied(&self) -> usize {
        self.reasons.iter().filter(|r| r.denied > 0).count()
    }

    /// The share of checks seen both ways, in percent; 0 when the policy reported no
    /// checks at all (a world 0.1.0 policy cannot say which rules it evaluated).
    pub fn percent(&self) -> f64 {
        if self.checks.is_empty() {
            return 0.0;
        }
        100.0 * self.checks_both_ways() as f64 / self.checks.len() as f64
    }
}

/// Coverage of every program the reports ran, sorted by program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub programs: Vec<ProgramCoverage>,
}

/// Steps in which a check, by rule and reason, held and did not.
type Seen<'a> = BTreeMap<(&'a str, &'a str), (u64, u64)>;

/// The coverage of `program`'s rules by its own suites (run now, each on a fresh in-memory
/// ledger), and how many of their steps passed: what a host shows of a program it serves
/// (`GET /v1/programs/{program}/coverage`).
pub fn of_program(
    sandbox: &std::sync::Arc<crate::policy::Sandbox>,
    program: &std::sync::Arc<crate::program::Program>,
) -> crate::Result<OwnSuites> {
    let reports = crate::suite::run_own(sandbox, program)?;
    let host = Host::new(
        sandbox.clone(),
        std::sync::Arc::new(crate::ledger::MemoryLedger::new()),
    );
    host.insert(program.clone());
    let steps: Vec<_> = reports.iter().flat_map(|r| &r.steps).collect();
    let coverage = of(&host, &reports)
        .programs
        .into_iter()
        .find(|c| c.program == program.id())
        .unwrap_or_else(|| ProgramCoverage {
            program: program.id().to_string(),
            checks: Vec::new(),
            reasons: Vec::new(),
        });
    Ok(OwnSuites {
        suites: reports.len(),
        steps: steps.len(),
        passed: steps.iter().filter(|s| s.passed()).count(),
        checks_both_ways: coverage.checks_both_ways(),
        reasons_denied: coverage.reasons_denied(),
        percent: coverage.percent(),
        coverage,
    })
}

/// A program's own suites as run now: their steps, and the coverage of its rules.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OwnSuites {
    /// Suite files run.
    pub suites: usize,
    /// Their steps, and how many passed.
    pub steps: usize,
    pub passed: usize,
    /// Checks seen both passing and failing, of `coverage.checks`.
    pub checks_both_ways: usize,
    /// Reasons seen as a denial, of `coverage.reasons`.
    pub reasons_denied: usize,
    /// The share of checks seen both ways, in percent.
    pub percent: f64,
    pub coverage: ProgramCoverage,
}

/// Counts what the steps of `reports` saw, per program served by `host`.
pub fn of(host: &Host, reports: &[SuiteReport]) -> Coverage {
    // program → (rule, reason) → (passed, failed); program → reason → denied.
    let mut checks: BTreeMap<&str, Seen<'_>> = BTreeMap::new();
    let mut denied: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for report in reports {
        let program = report.program.as_str();
        let seen = checks.entry(program).or_default();
        let denials = denied.entry(program).or_default();
        for decision in report.steps.iter().filter_map(|s| s.actual.as_ref().ok()) {
            for check in decision.checks.iter().flatten() {
                let counts = seen.entry((&check.rule, &check.reason)).or_default();
                if check.passed {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
            if !decision.allow {
                *denials.entry(&decision.reason).or_default() += 1;
            }
        }
    }
    let programs = checks
        .into_iter()
        .map(|(program, seen)| {
            let declared = host
                .program(program)
                .map(|p| p.policy.info.reasons.clone())
                .unwrap_or_default();
            let denials = denied.get(program);
            ProgramCoverage {
                program: program.to_string(),
                checks: seen
                    .into_iter()
                    .map(|((rule, reason), (passed, failed))| CheckCoverage {
                        rule: rule.to_string(),
                        reason: reason.to_string(),
                        passed,
                        failed,
                    })
                    .collect(),
                reasons: declared
                    .into_iter()
                    .filter(|reason| reason != "ok")
                    .map(|reason| ReasonCoverage {
                        denied: denials
                            .and_then(|d| d.get(reason.as_str()))
                            .copied()
                            .unwrap_or(0),
                        reason,
                    })
                    .collect(),
            }
        })
        .collect();
    Coverage { programs }
}
