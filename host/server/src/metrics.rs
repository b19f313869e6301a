//! `GET /metrics`: what the server has done, in the Prometheus text format.
//!
//! Every label takes its values from a small, known set — program ids that are loaded,
//! actions and reasons the program's policy declares, the kinds of
//! [`cardrules::observe::policy_error_kind`] — never from what a caller sent, so a caller
//! cannot grow the output.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cardrules::ledger::ProgramSnapshots;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use cardrules::{Decision, Program};

use crate::limits::Gate;
use crate::listen::Connections;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    program: String,
    action: String,
    allow: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabel {
    program: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyErrorLabels {
    program: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    program: String,
    outcome: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

fn fuel_histogram() -> Histogram {
    // 1 000 to about 4·10⁹ instructions (the ceiling is 10⁹).
    Histogram::new(exponential_buckets(1000.0, 4.0, 12))
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    replayed: Family<ProgramLabel, Counter>,
    latency: Family<ProgramLabel, Histogram>,
    fuel: Family<ProgramLabel, Histogram>,
    policy_errors: Family<PolicyErrorLabels, Counter>,
    overloaded: Counter,
    reloads: Family<ReloadLabels, Counter>,
    commit_seconds: Histogram,
    commit_batches: Histogram,
    commit_changes: Counter,
    commit_conflicts: Counter,
    commit_failures: Counter,
    allowance_queries: Family<ProgramLabel, Counter>,
    allowance_seconds: Family<ProgramLabel, Histogram>,
    history_reads: Family<ProgramLabel, Counter>,
    history_seconds: Family<ProgramLabel, Histogram>,
    /// The venue hosts that call this host, once the server knows them.
    venues: Arc<parking_lot::Mutex<Option<Arc<crate::venues::Venues>>>>,
}

/// What a holder's portal reads of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardRead {
    /// `GET …/allowances`
    Allowances,
    /// `GET …/history`
    History,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Figures read when scraped: work in flight, connections, the shadow's tallies.
struct Live {
    gate: Arc<Gate>,
    connections: Arc<Connections>,
    shadow: Option<Arc<cardrules::shadow::Shadow>>,
    ledger: Arc<cardrules::Ledger>,
    venues: Arc<parking_lot::Mutex<Option<Arc<crate::venues::Venues>>>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl prometheus_client::collector::Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "in_flight",
                "Host work (decisions, registrations, card reads) in flight.",
                self.gate.in_flight() as i64,
            ),
            (
                "max_in_flight",
                "The bound on host work in flight (`--max-in-flight`).",
                self.gate.max() as i64,
            ),
            (
                "connections",
                "Open connections.",
                self.connections.open.load(Ordering::Relaxed) as i64,
            ),
            (
                "max_connections",
                "The cap on open connections (`--max-connections`).",
                self.connections.cap.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        let metric = encoder.encode_descriptor(
            "connections_refused",
            "Connections closed at once because their peer had `--max-connections-per-peer` open.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.connections.refused.load(Ordering::Relaxed)).encode(metric)?;
        self.encode_snapshots(&mut encoder)?;
        let venues = self.venues.lock().clone();
        if let Some(venues) = venues {
            encode_venues(&venues, &mut encoder)?;
        }
        if let Some(shadow) = &self.shadow {
            let tallies = shadow.tallies();
            let mut metric = encoder.encode_descriptor(
                "shadow_comparisons",
                "Decisions a `--shadow` candidate was compared on, by whether it decided the same.",
                None,
                MetricType::Counter,
            )?;
            for (program, tally) in &tallies {
                for (outcome, count) in [("same", tally.agreed), ("changed", tally.differed)] {
                    let labels = [("program", program.as_str()), ("outcome", outcome)];
                    ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// By venue: whether it is online, seconds since it last called, and, by program, the
/// version it serves (an info gauge), the journal position it holds and its refusals.
fn encode_venues(
    venues: &crate::venues::Venues,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let list = venues.list();
    let ages = venues.ages();
    let mut metric = encoder.encode_descriptor(
        "venue_online",
        "Whether the venue host called within the last 45 seconds (1) or not (0).",
        None,
        MetricType::Gauge,
    )?;
    for venue in &list {
        let labels = [("venue", venue.venue.as_str())];
        ConstGauge::new(i64::from(venue.online)).encode(metric.encode_family(&labels)?)?;
    }
    let mut metric = encoder.encode_descriptor(
        "venue_last_contact_seconds",
        "Seconds since the venue host last called this host.",
        None,
        MetricType::Gauge,
    )?;
    for (venue, age) in &ages {
        if let Some(age) = age {
            let labels = [("venue", venue.as_str())];
            ConstGauge::new(*age).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "venue_program",
        "The version of a program a venue host serves (always 1; the version and digest are labels).",
        None,
        MetricType::Gauge,
    )?;
    for venue in &list {
        for served in &venue.programs {
            let labels = [
                ("venue", venue.venue.as_str()),
                ("program", served.program.as_str()),
                ("version", served.version.as_str()),
                ("digest", served.digest.as_str()),
            ];
            ConstGauge::new(1).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "venue_position",
        "The last position of the program's journal the venue host holds.",
        None,
        MetricType::Gauge,
    )?;
    for venue in &list {
        for (program, position) in &venue.position {
            let labels = [
                ("venue", venue.venue.as_str()),
                ("program", program.as_str()),
            ];
            ConstGauge::new(*position as i64).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "venue_refused_versions",
        "Versions of the program the venue host refused to serve.",
        None,
        MetricType::Gauge,
    )?;
    for venue in &list {
        let mut by_program: std::collections::BTreeMap<&str, i64> = Default::default();
        for refused in &venue.refused {
            *by_program.entry(refused.program.as_str()).or_default() += 1;
        }
        for (program, count) in by_program {
            let labels = [("venue", venue.venue.as_str()), ("program", program)];
            ConstGauge::new(count).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "venue_backlog",
        "Requests the venue host decided alone or kept while it could not reach this city, not yet taken in.",
        None,
        MetricType::Gauge,
    )?;
    for venue in &list {
        let labels = [("venue", venue.venue.as_str())];
        ConstGauge::new(i64::try_from(venue.backlog).unwrap_or(i64::MAX))
            .encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One gauge's value for a program, if it has one.
type Figure<'a> = dyn Fn(&str, &ProgramSnapshots) -> Option<i64> + 'a;

impl Live {
    /// By program: the ledger's position, its latest snapshot's position and age, and what
    /// its start read from the journal.
    fn encode_snapshots(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let programs = self.ledger.snapshot_info();
        let now = jiff::Timestamp::now().as_second();
        let figures: [(&str, &str, &Figure<'_>); 4] = [
            (
                "ledger_position",
                "The program's last journal position its state includes.",
                &|program, _| Some(self.ledger.position(program) as i64),
            ),
            (
                "snapshot_position",
                "The journal position of the program's latest snapshot (0: none yet).",
                &|_, info| Some(info.latest.map_or(0, |s| s.seq as i64)),
            ),
            (
                "snapshot_age_seconds",
                "Seconds since the program's latest snapshot was written.",
                &|_, info| info.latest.map(|s| now.saturating_sub(s.written)),
            ),
            (
                "events_replayed_at_start",
                "Events the program's start read from the journal after its snapshot (all of them without one).",
                &|_, info| info.start.map(|s| s.replayed as i64),
            ),
        ];
        for (name, help, value) in figures {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (program, info) in &programs {
                if let Some(value) = value(program, info) {
                    let labels = [("program", program.as_str())];
                    ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(
        gate: Arc<Gate>,
        connections: Arc<Connections>,
        shadow: Option<Arc<cardrules::shadow::Shadow>>,
        ledger: Arc<cardrules::Ledger>,
    ) -> Metrics {
        // `register` ends each help text with a period itself: the texts below have none.
        let mut registry = Registry::with_prefix("cardrules");
        let metrics = Metrics {
            decisions: Family::default(),
            replayed: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            fuel: Family::new_with_constructor(fuel_histogram),
            policy_errors: Family::default(),
            overloaded: Counter::default(),
            reloads: Family::default(),
            commit_seconds: latency_histogram(),
            // 1 to 1 024 batches in one append.
            commit_batches: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            commit_changes: Counter::default(),
            commit_conflicts: Counter::default(),
            commit_failures: Counter::default(),
            allowance_queries: Family::default(),
            allowance_seconds: Family::new_with_constructor(latency_histogram),
            history_reads: Family::default(),
            history_seconds: Family::new_with_constructor(latency_histogram),
            registry: Registry::default(),
            venues: Arc::default(),
        };
        registry.register(
            "decisions",
            "Decisions made (dry runs included, replays counted apart), by program, action, allow and reason",
            metrics.decisions.clone(),
        );
        registry.register(
            "decisions_replayed",
            "Requests answered with the recorded decision of an earlier request with the same id",
            metrics.replayed.clone(),
        );
        registry.register(
            "decision_seconds",
            "Time from a decision's start to its durable answer, waiting for its program's lane included",
            metrics.latency.clone(),
        );
        registry.register(
            "decision_fuel",
            "Wasm instructions a policy used for one decision",
            metrics.fuel.clone(),
        );
        registry.register(
            "policy_errors",
            "`policy-error` decisions, by the limit or fault behind them (fuel, deadline, memory, table, stack, trap, output, answer, other)",
            metrics.policy_errors.clone(),
        );
        registry.register(
            "overload_rejections",
            "Requests answered 503 at once because `--max-in-flight` host work was already in flight",
            metrics.overloaded.clone(),
        );
        registry.register(
            "reloads",
            "Hot reloads of a program's files, by outcome (accepted, refused)",
            metrics.reloads.clone(),
        );
        registry.register(
            "ledger_commit_seconds",
            "Time of one durable append of the group commit",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "ledger_commit_batches",
            "Batches (of one program's decisions) in one append of the group commit",
            metrics.commit_batches.clone(),
        );
        registry.register(
            "ledger_changes",
            "Changes appended to the ledger",
            metrics.commit_changes.clone(),
        );
        registry.register(
            "ledger_conflicts",
            "Batches decided again because another host appended first",
            metrics.commit_conflicts.clone(),
        );
        registry.register(
            "ledger_commit_failures",
            "Appends the journal failed (nothing appended)",
            metrics.commit_failures.clone(),
        );
        registry.register(
            "allowance_queries",
            "Allowance queries answered (`GET …/allowances`), by program",
            metrics.allowance_queries.clone(),
        );
        registry.register(
            "allowance_seconds",
            "Time to answer one allowance query (every offer and action asked), by program",
            metrics.allowance_seconds.clone(),
        );
        registry.register(
            "history_reads",
            "Pages of card statements answered (`GET …/history`), by program",
            metrics.history_reads.clone(),
        );
        registry.register(
            "history_seconds",
            "Time to answer one page of a card statement, by program",
            metrics.history_seconds.clone(),
        );
        registry.register_collector(Box::new(Live {
            gate,
            connections,
            shadow,
            ledger,
            venues: metrics.venues.clone(),
        }));
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts a decision `program` answered after `took`.
    pub fn decided(&self, program: &Program, action: &str, decision: &Decision, took: Duration) {
        let id = program.id().to_string();
        if decision.replayed {
            self.replayed
                .get_or_create(&ProgramLabel { program: id })
                .inc();
            return;
        }
        let action = if program.policy.info.actions.iter().any(|a| a == action) {
            action
        } else {
            "other"
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                program: id.clone(),
                action: action.to_string(),
                allow: decision.allow.to_string(),
                reason: decision.reason.clone(),
            })
            .inc();
        let label = ProgramLabel { program: id };
        self.latency
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if decision.fuel > 0 {
            self.fuel
                .get_or_create(&label)
                .observe(decision.fuel as f64);
        }
        if let Some(kind) = cardrules::observe::policy_error_kind(decision) {
            self.policy_errors
                .get_or_create(&PolicyErrorLabels {
                    program: label.program,
                    kind: kind.to_string(),
                })
                .inc();
        }
    }

    /// Counts a read of a card of `program` (a loaded program) answered after `took`.
    pub fn read_card(&self, read: CardRead, program: &str, took: Duration) {
        let (count, seconds) = match read {
            CardRead::Allowances => (&self.allowance_queries, &self.allowance_seconds),
            CardRead::History => (&self.history_reads, &self.history_seconds),
        };
        let label = ProgramLabel {
            program: program.to_string(),
        };
        count.get_or_create(&label).inc();
        seconds.get_or_create(&label).observe(took.as_secs_f64());
    }

    /// Shows the venue hosts of `venues` in the metrics.
    pub fn watch_venues(&self, venues: Arc<crate::venues::Venues>) {
        *self.venues.lock() = Some(venues);
    }

    /// Counts a request refused because the bound on work in flight was reached.
    pub fn overloaded(&self) {
        self.overloaded.inc();
    }

    /// Counts a hot reload of `program` (its directory name when it did not load).
    pub fn reloaded(&self, program: &str, accepted: bool) {
        let outcome = if accepted { "accepted" } else { "refused" };
        self.reloads
            .get_or_create(&ReloadLabels {
                program: program.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Every metric in the OpenMetrics text format (which Prometheus scrapes), ending with
    /// `# EOF`.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

impl cardrules::ledger::CommitObserver for Metrics {
    fn committed(&self, commit: &cardrules::ledger::Commit) {
        self.commit_seconds.observe(commit.took.as_secs_f64());
        self.commit_batches.observe(commit.batches as f64);
        self.commit_changes.inc_by(commit.changes as u64);
        if commit.failed {
            self.commit_failures.inc();
        } else {
            self.commit_conflicts
                .inc_by(commit.batches.saturating_sub(commit.appended) as u64);
        }
    }
}
