//! `POST /v1/decisions` bodies and `cardrules decide --request` files.
//!
//! Invariants: parsing never panics; a request that parses serializes, parses again to an
//! equal request; and its time has a local day, ISO week, month, semester and year in each
//! shipped program's time zone that contain it (or a clean out-of-range error).

#![no_main]

use std::sync::OnceLock;

use cardrules::{Calendar, Period, inputs};
use libfuzzer_sys::fuzz_target;

const ZONES: [&str; 3] = ["Europe/Oslo", "Europe/Brussels", "Europe/Copenhagen"];
const PERIODS: [Period; 5] = [
    Period::Day,
    Period::IsoWeek,
    Period::Month,
    Period::Semester,
    Period::Year,
];

fn calendars() -> &'static [Calendar] {
    static CALENDARS: OnceLock<Vec<Calendar>> = OnceLock::new();
    CALENDARS.get_or_init(|| ZONES.iter().map(|z| Calendar::new(z).unwrap()).collect())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let request = match inputs::request(text) {
        Ok(request) => request,
        Err(e) => {
            assert!(e.is_bad_input() && e.to_string().starts_with("cannot parse request: "));
            return;
        }
    };
    let json = serde_json::to_string(&request).expect("a parsed request serializes");
    let again = inputs::request(&json)
        .unwrap_or_else(|e| panic!("`{json}` (from `{text}`) does not parse again: {e}"));
    assert_eq!(again, request, "`{json}` parses to another request");

    let at = request.at.as_second();
    for calendar in calendars() {
        for period in PERIODS {
            if let Ok((start, end)) = calendar.period_of(period, at) {
                assert!(
                    start <= at && at < end,
                    "{period:?} of {} in {} is [{start}, {end})",
                    request.at,
                    calendar.zone_name()
                );
            }
        }
    }
});
