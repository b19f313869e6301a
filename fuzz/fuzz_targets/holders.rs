//! A program's `holders.toml` (its demo holders).
//!
//! Invariants: parsing never panics, and every holder read from TOML serializes to JSON
//! that the API's holder parser reads back as the same holder.

#![no_main]

use cardrules::inputs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(holders) = inputs::holders(text) else {
        return;
    };
    for holder in holders {
        let json = serde_json::to_string(&holder).expect("a parsed holder serializes");
        let again = inputs::holder(&json)
            .unwrap_or_else(|e| panic!("`{json}` (from TOML) does not parse as JSON: {e}"));
        assert_eq!(again, holder, "`{json}` parses to another holder");
    }
});
