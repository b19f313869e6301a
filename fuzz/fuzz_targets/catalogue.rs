//! A program's `catalogue.toml`.
//!
//! Invariants: parsing never panics; every offer is filed under its own non-empty id and
//! serializes to JSON (as the policy's view of the catalogue does).

#![no_main]

use cardrules::inputs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let offers = match inputs::catalogue(text) {
        Ok(offers) => offers,
        Err(e) => {
            assert!(e.is_bad_input() && !e.to_string().is_empty());
            return;
        }
    };
    for (id, offer) in &offers {
        assert!(!id.is_empty());
        assert_eq!(id, &offer.id);
        serde_json::to_string(offer).expect("a parsed offer serializes");
    }
});
