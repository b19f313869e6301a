//! Checks: every rule a policy evaluates with the SDK's helpers is recorded, in order, so
//! that a decision can say why (world 0.2.0's `decision.checks`, given when the request
//! asks to `explain`).
//!
//! The recorder is a static list of small entries — `&'static str` names, flags and
//! integers — which costs a push per rule. WIT strings are built, and window ends asked
//! of the host, only in [`decide`] and only when the request asks to explain. A policy
//! instance is single-threaded and runs one call at a time, so a static is all it needs.

use alloc::string::ToString;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

use crate::{Check, Decision, Instant, Period, Request, Window, calendar, denial};

/// Until when a counted rule's count runs: the `until` of its check.
///
/// The host accepts only the end of a window it computed during the evaluation, never a
/// moment the policy worked out itself. [`Until::EndOf`] is the way to say it: the SDK
/// asks the host (`calendar::period_of`) in [`decide`], and only when the decision is
/// explained, so an unexplained decision makes no extra host call.
#[derive(Clone, Copy)]
pub enum Until {
    /// The rule counts over no window (a limit per purchase, a balance): no `until`.
    None,
    /// The end of the local `period` that contains the instant, e.g.
    /// `Until::EndOf(Period::Year, req.at)`: the next 1 January. Use the period and the
    /// instant of the `ledger::count_in` whose answer is `used`.
    EndOf(Period, Instant),
    /// The end of a window `calendar::period_of` answered during this evaluation; a window
    /// the policy built itself is refused by the host.
    WindowEnd(Window),
}

impl Until {
    /// The instant, asking the host for a period's end unless `seen` has it: rules of one
    /// action often count over the same period.
    fn instant(self, seen: &mut Vec<(Period, Instant, Instant)>) -> Option<Instant> {
        match self {
            Until::None => None,
            Until::WindowEnd(window) => Some(window.end),
            Until::EndOf(period, at) => {
                let known = seen.iter().find(|(p, a, _)| *p == period && *a == at);
                let end = match known {
                    Some(&(_, _, end)) => end,
                    None => {
                        let end = calendar::period_of(period, at).end;
                        seen.push((period, at, end));
                        end
                    }
                };
                Some(end)
            }
        }
    }
}

/// A count or an amount as the host answers it (`u64` from `ledger::count_in`, `i64`
/// from `ledger::balance` and the request's `amount`), for [`within`] and friends.
pub trait Quantity: Copy {
    /// The number as the check reports it.
    fn quantity(self) -> i64;
}

impl Quantity for i64 {
    fn quantity(self) -> i64 {
        self
    }
}

impl Quantity for u64 {
    fn quantity(self) -> i64 {
        i64::try_from(self).unwrap_or(i64::MAX)
    }
}

impl Quantity for i32 {
    fn quantity(self) -> i64 {
        i64::from(self)
    }
}

impl Quantity for u32 {
    fn quantity(self) -> i64 {
        i64::from(self)
    }
}

/// One recorded rule: what becomes a [`Check`] when the decision is explained.
#[derive(Clone, Copy)]
struct Entry {
    rule: &'static str,
    reason: &'static str,
    passed: bool,
    used: Option<i64>,
    limit: Option<i64>,
    until: Until,
}

impl Entry {
    fn to_check(self, seen: &mut Vec<(Period, Instant, Instant)>) -> Check {
        Check {
            rule: self.rule.to_string(),
            passed: self.passed,
            reason: self.reason.to_string(),
            used: self.used,
            limit: self.limit,
            until: self.until.instant(seen),
        }
    }
}

struct Recorder(UnsafeCell<Vec<Entry>>);

// SAFETY: a policy instance has one thread and runs one call at a time; the recorder is
// only touched inside this module, never across a call into policy code.
unsafe impl Sync for Recorder {}

static RECORDER: Recorder = Recorder(UnsafeCell::new(Vec::new()));

fn record(entry: Entry) {
    // SAFETY: see `Recorder`; the borrow ends before the function returns.
    unsafe { (*RECORDER.0.get()).push(entry) }
}

fn take() -> Vec<Entry> {
    // SAFETY: see `Recorder`; the borrow ends before the function returns.
    unsafe { core::mem::take(&mut *RECORDER.0.get()) }
}

/// Records `entry` and stops the action with its denial if it did not pass.
fn apply(entry: Entry) -> Result<(), crate::Decision> {
    record(entry);
    if entry.passed {
        Ok(())
    } else {
        Err(denial(entry.reason))
    }
}

/// Records the rule named `rule` and passes when `holds`, else stops the action with a
/// denial for `reason`.
pub fn check(rule: &'static str, holds: bool, reason: &'static str) -> Result<(), Decision> {
    apply(Entry {
        rule,
        reason,
        passed: holds,
        used: None,
        limit: None,
        until: Until::None,
    })
}

/// Passes when `holds`, else stops the action with a denial for `reason`; the check is
/// recorded under the name `reason`. Use [`check`] to give the rule its own name.
pub fn ensure(holds: bool, reason: &'static str) -> Result<(), Decision> {
    check(reason, holds, reason)
}

/// A rule that counts against a bound, with its numbers given as they are: passes when
/// `holds`. `used` must be a number the host answered during this evaluation (a `ledger`
/// read) or the request's `amount`, and `until` a window end of the host ([`Until`]); the
/// host refuses anything else as a `policy-error` when the decision is explained. Prefer
/// [`within`], [`within_amount`] and [`at_most`], which also work out `holds`.
pub fn check_counted(
    rule: &'static str,
    holds: bool,
    reason: &'static str,
    used: Option<i64>,
    limit: Option<i64>,
    until: Until,
) -> Result<(), Decision> {
    apply(Entry {
        rule,
        reason,
        passed: holds,
        used,
        limit,
        until,
    })
}

/// A count with room for one more: passes when `used < limit`, e.g. visits this year
/// against a yearly limit. Records `used`, `limit` and `until` (see [`check_counted`]).
pub fn within(
    rule: &'static str,
    reason: &'static str,
    used: impl Quantity,
    limit: i64,
    until: Until,
) -> Result<(), Decision> {
    let used = used.quantity();
    check_counted(rule, used < limit, reason, Some(used), Some(limit), until)
}

/// A running total with room for `amount` more: passes when `used + amount <= limit`,
/// e.g. øre spent today plus this purchase against a daily limit. Records `used` (before
/// this request), `limit` and `until` (see [`check_counted`]).
pub fn within_amount(
    rule: &'static str,
    reason: &'static str,
    used: impl Quantity,
    amount: i64,
    limit: i64,
    until: Until,
) -> Result<(), Decision> {
    let used = used.quantity();
    let holds = used.saturating_add(amount) <= limit;
    check_counted(rule, holds, reason, Some(used), Some(limit), until)
}

/// An amount against a bound: passes when `used <= limit`, e.g. the amount asked against
/// a limit per purchase or against the balance. Records `used`, `limit` and `until` (see
/// [`check_counted`]).
pub fn at_most(
    rule: &'static str,
    reason: &'static str,
    used: impl Quantity,
    limit: i64,
    until: Until,
) -> Result<(), Decision> {
    let used = used.quantity();
    check_counted(rule, used <= limit, reason, Some(used), Some(limit), until)
}

/// The value, when there is one; else stops the action with a denial for `reason`. The
/// rule named `rule` is recorded either way, e.g. `present("receiver",
/// ledger::find_holder(&to_card), "unknown-card")?`.
pub fn present<T>(
    rule: &'static str,
    value: Option<T>,
    reason: &'static str,
) -> Result<T, Decision> {
    self::check(rule, value.is_some(), reason)?;
    value.ok_or_else(|| denial(reason))
}

/// A denied decision for `reason`, recorded as the failed check named `rule`: for a rule
/// that always denies, e.g. `refuse("refund", "no-refund")`.
pub fn refuse(rule: &'static str, reason: &'static str) -> Decision {
    record(Entry {
        rule,
        reason,
        passed: false,
        used: None,
        limit: None,
        until: Until::None,
    });
    denial(reason)
}

/// What [`decide`] accepts: a checked action ([`crate::Rule`]) or a finished decision.
pub trait Outcome {
    /// The decision, allowed or denied.
    fn into_decision(self) -> Decision;
}

impl Outcome for Decision {
    fn into_decision(self) -> Decision {
        self
    }
}

impl Outcome for Result<Decision, Decision> {
    fn into_decision(self) -> Decision {
        self.unwrap_or_else(|denied| denied)
    }
}

/// The decision of a checked action, allowed or denied. When `req.explain` is true it
/// carries the checks recorded since the last `decide`, in the order they ran (after any
/// the policy put in `checks` itself); otherwise `checks` stays as it is (empty). The
/// recorder is cleared either way.
///
/// A denied decision built by hand ([`crate::deny`]) carries no failed check: nothing
/// could have held. Keep the contract: the host refuses a denied decision whose first
/// failed check has another reason, or whose reason is that of a check that held, and an
/// allowed decision with a failed check — so a rule's `Err` must end the action (`?`).
pub fn decide(req: &Request, outcome: impl Outcome) -> Decision {
    let mut decision = outcome.into_decision();
    let entries = take();
    if req.explain {
        let mut seen = Vec::new();
        decision
            .checks
            .extend(entries.into_iter().map(|entry| entry.to_check(&mut seen)));
    }
    decision
}
