//! A program's `policy.toml`.
//!
//! Invariants: parsing never panics; a manifest that parses lists a language; its time
//! zone is either known (and the calendar keeps its name) or refused with a clean error.

#![no_main]

use cardrules::{Calendar, inputs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let manifest = match inputs::manifest(text) {
        Ok(manifest) => manifest,
        Err(e) => {
            assert!(e.is_bad_input() && !e.to_string().is_empty());
            return;
        }
    };
    assert!(!manifest.languages.is_empty());
    match Calendar::new(&manifest.time_zone) {
        Ok(calendar) => assert_eq!(calendar.zone_name(), manifest.time_zone),
        Err(e) => assert!(e.to_string().starts_with("unknown time zone `")),
    }
});
