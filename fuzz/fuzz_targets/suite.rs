//! Policy suite files (`cardrules test`, and the gate of a hot reload).
//!
//! Invariants: parsing never panics; a suite that parses has steps and offers with distinct,
//! non-empty ids; its holders serialize to JSON that the API's holder parser reads back as
//! the same holders.

#![no_main]

use std::collections::HashSet;

use cardrules::inputs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let suite = match inputs::suite(text) {
        Ok(suite) => suite,
        Err(e) => {
            assert!(e.is_bad_input() && !e.to_string().is_empty());
            return;
        }
    };
    assert!(!suite.steps.is_empty());
    let mut ids = HashSet::new();
    for offer in &suite.offers {
        assert!(!offer.id.is_empty() && ids.insert(offer.id.as_str()));
    }
    for holder in &suite.holders {
        let json = serde_json::to_string(holder).expect("a parsed holder serializes");
        let again = inputs::holder(&json)
            .unwrap_or_else(|e| panic!("`{json}` (from a suite) does not parse as JSON: {e}"));
        assert_eq!(&again, holder, "`{json}` parses to another holder");
    }
});
