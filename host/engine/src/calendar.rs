//! Calendar periods in a program's time zone: the one implementation of local days, ISO
//! weeks, months, semesters and years that every policy relies on.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

use crate::error::Error;

/// A calendar period, taken in the program's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    IsoWeek,
    Month,
    Semester,
    Year,
}

impl Period {
    /// The period's name as the policy world spells it, e.g. `iso-week`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::IsoWeek => "iso-week",
            Period::Month => "month",
            Period::Semester => "semester",
            Period::Year => "year",
        }
    }
}

/// A program's calendar: its time zone and the arithmetic done in it.
#[derive(Debug, Clone)]
pub struct Calendar {
    zone: TimeZone,
    name: String,
}

/// A moment on the program's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub date: Date,
    pub hour: i8,
    pub minute: i8,
    pub second: i8,
    /// 1 (Monday) to 7 (Sunday).
    pub weekday: i8,
}

impl Calendar {
    /// The calendar of the IANA time zone `name`, e.g. `Europe/Oslo`.
    pub fn new(name: &str) -> Result<Calendar, Error> {
        let zone = jiff::tz::db()
            .get(name)
            .map_err(|e| Error::invalid(format!("unknown time zone `{name}`: {e}")))?;
        Ok(Calendar {
            zone,
            name: name.to_string(),
        })
    }

    /// The time zone's IANA name.
    pub fn zone_name(&self) -> &str {
        &self.name
    }

    fn zoned(&self, at: i64) -> Result<Zoned, Error> {
        let ts = Timestamp::from_second(at)
            .map_err(|e| Error::invalid(format!("time {at} is out of range: {e}")))?;
        Ok(ts.to_zoned(self.zone.clone()))
    }

    /// `at` (seconds since the epoch) on the wall clock.
    pub fn local(&self, at: i64) -> Result<LocalTime, Error> {
        let z = self.zoned(at)?;
        Ok(LocalTime {
            date: z.date(),
            hour: z.hour(),
            minute: z.minute(),
            second: z.second(),
            weekday: z.weekday().to_monday_one_offset(),
        })
    }

    /// The local date of `at`.
    pub fn date(&self, at: i64) -> Result<Date, Error> {
        Ok(self.zoned(at)?.date())
    }

    /// The half-open window `[start, end)` of the local `period` that contains `at`.
    pub fn period_of(&self, period: Period, at: i64) -> Result<(i64, i64), Error> {
        let date = self.zoned(at)?.date();
        let (first, next) = match period {
            Period::Day => (date, date.tomorrow().map_err(range)?),
            Period::IsoWeek => {
                let monday = date
                    .checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days())
                    .map_err(range)?;
                (monday, monday.checked_add(7.days()).map_err(range)?)
            }
            Period::Month => {
                let first = date.first_of_month();
                (first, first.checked_add(1.month()).map_err(range)?)
            }
            Period::Semester => {
                let month = if date.month() <= 6 { 1 } else { 7 };
                let first = Date::new(date.year(), month, 1).map_err(range)?;
                (first, first.checked_add(6.months()).map_err(range)?)
            }
            Period::Year => {
                let first = date.first_of_year();
                (first, first.checked_add(1.year()).map_err(range)?)
            }
        };
        Ok((self.start_of(first)?, self.start_of(next)?))
    }

    /// The first moment of a local date (midnight, or later if a DST gap skips it).
    fn start_of(&self, date: Date) -> Result<i64, Error> {
        let z = date.to_zoned(self.zone.clone()).map_err(range)?;
        Ok(z.start_of_day().map_err(range)?.timestamp().as_second())
    }

    /// The same wall-clock time `months` calendar months from `at`, clamped to the end
    /// of a shorter month.
    pub fn add_months(&self, at: i64, months: i32) -> Result<i64, Error> {
        let z = self.zoned(at)?;
        // `try_months`, not `months()`: a span past jiff's ±239 976 months panics, and a
        // policy chooses `months`.
        let span = jiff::Span::new().try_months(months).map_err(range)?;
        let later = z.checked_add(span).map_err(range)?;
        Ok(later.timestamp().as_second())
    }

    /// A wall-clock time in this zone as an instant (the earlier one if ambiguous).
    pub fn instant_of(&self, datetime: DateTime) -> Result<i64, Error> {
        let z = datetime.to_zoned(self.zone.clone()).map_err(range)?;
        Ok(z.timestamp().as_second())
    }
}

fn range(e: jiff::Error) -> Error {
    Error::invalid(format!("date out of range: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn local_day_follows_the_time_zone_not_utc() {
        let oslo = Calendar::new("Europe/Oslo").unwrap();
        // 23:30 UTC on 31 December is already New Year in Oslo.
        let (start, end) = oslo
            .period_of(Period::Year, at("2024-12-31T23:30:00Z"))
            .unwrap();
        assert_eq!(start, at("2025-01-01T00:00:00+01:00"));
        assert_eq!(end, at("2026-01-01T00:00:00+01:00"));
    }

    #[test]
    fn a_day_with_a_dst_change_is_23_hours_long() {
        let oslo = Calendar::new("Europe/Oslo").unwrap();
        let (start, end) = oslo
            .period_of(Period::Day, at("2024-03-31T12:00:00+02:00"))
            .unwrap();
        assert_eq!(end - start, 23 * 3600);
    }

    #[test]
    fn iso_weeks_start_on_monday() {
        let brussels = Calendar::new("Europe/Brussels").unwrap();
        // Sunday 2024-03-10 belongs to the week of Monday 2024-03-04.
        let (start, end) = brussels
            .period_of(Period::IsoWeek, at("2024-03-10T20:00:00+01:00"))
            .unwrap();
        assert_eq!(start, at("2024-03-04T00:00:00+01:00"));
        assert_eq!(end, at("2024-03-11T00:00:00+01:00"));
    }

    #[test]
    fn semesters_split_on_the_first_of_july() {
        let oslo = Calendar::new("Europe/Oslo").unwrap();
        let (start, end) = oslo
            .period_of(Period::Semester, at("2024-06-30T23:59:59+02:00"))
            .unwrap();
        assert_eq!(
            (start, end),
            (
                at("2024-01-01T00:00:00+01:00"),
                at("2024-07-01T00:00:00+02:00")
            )
        );
        let (start, _) = oslo
            .period_of(Period::Semester, at("2024-07-01T00:00:00+02:00"))
            .unwrap();
        assert_eq!(start, at("2024-07-01T00:00:00+02:00"));
    }

    #[test]
    fn six_months_after_31_august_is_the_end_of_february() {
        let brussels = Calendar::new("Europe/Brussels").unwrap();
        let later = brussels
            .add_months(at("2023-08-31T10:00:00+02:00"), 6)
            .unwrap();
        assert_eq!(later, at("2024-02-29T10:00:00+01:00"));
    }

    #[test]
    fn unknown_time_zones_are_refused() {
        let err = Calendar::new("Europe/Atlantis").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown time zone `Europe/Atlantis`"),
            "{err}"
        );
    }
}
