//! When a request may say it happened: its `at` against the host's clock. A till that was
//! offline reports late (docs/programs.md), but only as late as its program's manifest
//! allows (`max-lateness`), and no clock runs ahead by more than `max-skew`; a person
//! asking through a portal asks now. Suites and replay decide recorded times, unbounded
//! ([`crate::Host::decide`]); callers who report are bounded ([`crate::Host::decide_as`]).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// The host's clock: what "now" is. Injected in tests ([`crate::Host::with_clock`]), so
/// that no test waits for time to pass.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that always says the same time (for tests and tools).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// The system's clock, shared.
pub(crate) fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Who reports a request's `at`, which sets how far from the host's clock it may lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// A till, a venue, a registrar's desk or an admin: it may report what happened while
    /// it was offline, up to its program's `max-lateness` late, and its clock may run up
    /// to `max-skew` ahead.
    Till,
    /// A person asking now (a guardian's portal): `at` is now, within `max-skew` either way.
    Person,
}

/// What the log says when times are not bounded (`serve` or `decide` with
/// `--max-lateness none`).
pub const UNBOUNDED: &str = "`--max-lateness none`: requests are decided at any `at`, \
    however late or early, whatever their programs' `max-lateness` and `max-skew`: for \
    recorded traffic only";

/// The default `max-lateness`: a till offline over a long weekend still reports its sales.
pub const DEFAULT_MAX_LATENESS: SignedDuration = SignedDuration::from_hours(72);
/// The default `max-skew`: what a clock kept by NTP, or a person's phone, is off by.
pub const DEFAULT_MAX_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// A program's bounds on `at` (`max-lateness` and `max-skew` in `policy.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    pub max_lateness: SignedDuration,
    pub max_skew: SignedDuration,
}

impl Default for TimeBounds {
    fn default() -> TimeBounds {
        TimeBounds {
            max_lateness: DEFAULT_MAX_LATENESS,
            max_skew: DEFAULT_MAX_SKEW,
        }
    }
}

impl TimeBounds {
    /// Checks that `at`, reported by `reporter` when the host's clock says `now`, lies
    /// within the bounds of `program`; otherwise the caller's error, naming the bound.
    pub fn check(
        &self,
        program: &str,
        reporter: Reporter,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let early = now.duration_until(at); // positive: ahead of the clock
        let (lateness, word) = match reporter {
            Reporter::Till => (self.max_lateness, "max-lateness"),
            Reporter::Person => (self.max_skew, "max-skew"),
        };
        if early > self.max_skew {
            return Err(Error::invalid(format!(
                "`at` `{at}` is {:#} ahead of the host's clock: program `{program}` takes \
                 requests at most {:#} ahead (its `max-skew`)",
                early.round(jiff::Unit::Second).unwrap_or(early),
                self.max_skew
            )));
        }
        let late = -early;
        if late > lateness {
            let late = late.round(jiff::Unit::Second).unwrap_or(late);
            return Err(Error::invalid(match reporter {
                Reporter::Till => format!(
                    "`at` `{at}` is {late:#} late: program `{program}` takes requests at most \
                     {lateness:#} late (its `{word}`)"
                ),
                Reporter::Person => format!(
                    "`at` `{at}` is {late:#} before now: a guardian's request is taken at now, \
                     within {lateness:#} (program `{program}`'s `{word}`)"
                ),
            }));
        }
        Ok(())
    }
}

/// A manifest's duration (`"72h"`, `"5m"`, `"PT72H"`), not negative.
pub(crate) fn duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<SignedDuration, D::Error> {
    let text = String::deserialize(deserializer)?;
    let duration: SignedDuration = text.parse().map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration such as \"72h\" or \"5m\": {e}"
        ))
    })?;
    if duration.is_negative() {
        return Err(serde::de::Error::custom(format!(
            "`{text}` is negative: a bound is a duration of 0 or more"
        )));
    }
    Ok(duration)
}

/// `at` (seconds since the epoch) as RFC 3339, or the seconds if out of range.
pub fn instant_text(at: i64) -> String {
    match jiff::Timestamp::from_second(at) {
        Ok(t) => t.to_string(),
        Err(_) => at.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const NOW: &str = "2024-05-07T14:00:00Z";

    fn check(reporter: Reporter, when: &str) -> Result<()> {
        TimeBounds::default().check("bergen", reporter, at(when), at(NOW))
    }

    #[test]
    fn a_till_reports_up_to_its_lateness_late_and_its_skew_ahead() {
        // Exactly on the bounds: taken.
        check(Reporter::Till, "2024-05-04T14:00:00Z").unwrap();
        check(Reporter::Till, "2024-05-07T14:05:00Z").unwrap();
        check(Reporter::Till, NOW).unwrap();
        // A second beyond: refused, naming the bound.
        let late = check(Reporter::Till, "2024-05-04T13:59:59Z").unwrap_err();
        assert!(late.is_bad_input());
        assert_eq!(
            late.to_string(),
            "`at` `2024-05-04T13:59:59Z` is 72h 1s late: program `bergen` takes requests at \
             most 72h late (its `max-lateness`)"
        );
        let ahead = check(Reporter::Till, "2024-05-07T14:05:01Z").unwrap_err();
        assert_eq!(
            ahead.to_string(),
            "`at` `2024-05-07T14:05:01Z` is 5m 1s ahead of the host's clock: program `bergen` \
             takes requests at most 5m ahead (its `max-skew`)"
        );
        // The attack of a year ago.
        let old = check(Reporter::Till, "2023-05-07T14:00:00Z").unwrap_err();
        assert!(old.to_string().contains("(its `max-lateness`)"), "{old}");
    }

    #[test]
    fn a_person_asks_now_within_the_skew() {
        check(Reporter::Person, "2024-05-07T13:55:00Z").unwrap();
        check(Reporter::Person, "2024-05-07T14:05:00Z").unwrap();
        // What a till may report an hour late, a guardian may not.
        check(Reporter::Till, "2024-05-07T13:00:00Z").unwrap();
        let late = check(Reporter::Person, "2024-05-07T13:00:00Z").unwrap_err();
        assert!(late.is_bad_input());
        assert_eq!(
            late.to_string(),
            "`at` `2024-05-07T13:00:00Z` is 1h before now: a guardian's request is taken at \
             now, within 5m (program `bergen`'s `max-skew`)"
        );
        let ahead = check(Reporter::Person, "2024-05-07T15:00:00Z").unwrap_err();
        assert!(ahead.to_string().contains("(its `max-skew`)"), "{ahead}");
    }
}
