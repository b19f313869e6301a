//! `PUT /v1/programs/{program}/holders/{card}` bodies.
//!
//! Invariants: parsing never panics; a holder that parses serializes and parses again to an
//! equal holder; read through a `serde_json::Value` (as the server does, to fill in the
//! card from the path) it is the same holder.

#![no_main]

use cardrules::{Holder, inputs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let holder = match inputs::holder(text) {
        Ok(holder) => holder,
        Err(e) => {
            assert!(e.is_bad_input() && e.to_string().starts_with("cannot parse holder: "));
            return;
        }
    };
    let json = serde_json::to_string(&holder).expect("a parsed holder serializes");
    let again = inputs::holder(&json)
        .unwrap_or_else(|e| panic!("`{json}` (from `{text}`) does not parse again: {e}"));
    assert_eq!(again, holder, "`{json}` parses to another holder");

    let value: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
    let via_value: Holder = serde_json::from_value(value)
        .unwrap_or_else(|e| panic!("`{text}` parses, but not through a JSON value: {e}"));
    assert_eq!(via_value, holder);
});
