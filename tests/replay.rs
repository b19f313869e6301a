//! `cardrules replay` on a realistic year: the very policies that wrote a ledger replay it
//! unchanged, and a lowered yearly limit changes exactly the decisions it should.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cardrules::Request;
use cardrules_sqlite::SqliteLedger;
use serde_json::{Value, json};

mod support;
use support::files::{copy_dir, lower_kino_limit, shipped_policies};
use support::hosts::serving_all;

/// A year of traffic on the three programs, on a SQLite ledger; returns the ledger file and
/// the recorded bergen-kino decisions (card, year, allowed).
fn a_year_of_traffic(dir: &Path) -> (PathBuf, Vec<(String, i16, bool)>) {
    let policies = dir.join("policies");
    copy_dir(&shipped_policies(), &policies);
    let file = dir.join("ledger.sqlite");
    let host = serving_all(Arc::new(SqliteLedger::open(&file).unwrap()), &policies);
    let kids = ["AK-1001", "AK-1002", "AK-1003", "AK-1004"];
    let offers = ["bergen-kino", "akvariet", "kode-museum", "bergen-kino"];
    let mut kino = Vec::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let start = jiff::Timestamp::from_second(1_704_106_800).unwrap(); // 2024-01-01T11:00Z
    for n in 0..600u32 {
        let at = start + jiff::SignedDuration::from_secs(i64::from(n) * 15 * 3600);
        let (request, kino_card): (Value, Option<&str>) = match next(3) {
            0 => {
                let card = kids[next(kids.len())];
                let offer = offers[next(offers.len())];
                let request = json!({"program": "bergen", "card": card, "action": "redeem",
                                     "offer": offer, "party": 1 + next(2)});
                (request, (offer == "bergen-kino").then_some(card))
            }
            1 => {
                let offer = ["mas", "rubenshuis", "bib-permeke"][next(3)];
                let card = ["A-3001", "A-3002"][next(2)];
                (
                    json!({"program": "antwerpen", "card": card, "action": "check-in", "offer": offer}),
                    None,
                )
            }
            _ => {
                let (card, offer) = [("BK-2001", "bh-toast"), ("BK-2002", "sg-perler")][next(2)];
                let action = ["purchase", "purchase", "top-up"][next(3)];
                (
                    json!({"program": "albertslund", "card": card, "action": action,
                        "offer": offer, "amount": 500 + 100 * next(10)}),
                    None,
                )
            }
        };
        let mut request = request;
        request["at"] = at.to_string().into();
        request["id"] = format!("till/{n}").into();
        let request: Request = serde_json::from_value(request).unwrap();
        let decision = host.decide(&request).unwrap();
        if let Some(card) = kino_card {
            let year = at
                .to_zoned(jiff::tz::TimeZone::get("Europe/Oslo").unwrap())
                .year();
            kino.push((card.to_string(), year, decision.allow));
        }
    }
    (file, kino)
}

fn replay(dir: &Path, file: &Path, policies: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .args(["replay", "--json", "--ledger"])
        .arg(file)
        .arg("--policies")
        .arg(policies)
        .arg("--html")
        .arg(dir.join("report.html"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_ledger_replayed_against_its_own_policies_changes_nothing_and_a_lower_limit_changes_what_it_should()
 {
    let dir = tempfile::tempdir().unwrap();
    let (file, kino) = a_year_of_traffic(dir.path());
    let before = std::fs::read(&file).unwrap();

    let same = replay(dir.path(), &file, &dir.path().join("policies"));
    assert_eq!(same["replayed"], 600, "{same:#}");
    assert_eq!(same["changed"], 0, "{same:#}");
    assert_eq!(same["transitions"], json!([]));
    for (program, assets) in same["assets"].as_object().unwrap() {
        for (asset, units) in assets.as_object().unwrap() {
            assert_eq!(units["recorded"], units["replayed"], "{program} {asset}");
        }
    }

    // The new rule book: Bergen kino's yearly limit goes from 4 to 2.
    let candidate = dir.path().join("candidate");
    copy_dir(&dir.path().join("policies"), &candidate);
    lower_kino_limit(&candidate);
    let report = replay(dir.path(), &file, &candidate);

    // Computed directly: per card and year, every allowed kino visit past the second.
    let mut allowed: BTreeMap<(String, i16), u64> = BTreeMap::new();
    for (card, year, allow) in &kino {
        if *allow {
            *allowed.entry((card.clone(), *year)).or_default() += 1;
        }
    }
    let expected: u64 = allowed.values().map(|n| n.saturating_sub(2)).sum();
    assert!(
        expected >= 4,
        "the traffic should hit the new limit: {allowed:?}"
    );
    assert_eq!(report["replayed"], 600);
    assert_eq!(report["changed"], expected, "{report:#}");
    let transitions = report["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 1, "{report:#}");
    assert_eq!(transitions[0]["program"], "bergen");
    assert_eq!(transitions[0]["from"], "allow");
    assert_eq!(transitions[0]["to"], "quota-exhausted");
    assert_eq!(transitions[0]["count"], expected);
    assert!(!transitions[0]["examples"].as_array().unwrap().is_empty());
    // Each example names the rule that now decides otherwise, on the host's numbers.
    let why = &transitions[0]["why"][0];
    assert_eq!(why["example"], transitions[0]["examples"][0]);
    assert_eq!(why["check"]["rule"], "yearly-limit", "{why:#}");
    assert_eq!(why["check"]["passed"], false);
    assert_eq!(why["check"]["reason"], "quota-exhausted");
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(page.contains("allow → quota-exhausted"), "{page}");
    assert!(
        page.contains("yearly-limit `quota-exhausted` used 2 of 2"),
        "{page}"
    );

    // The original ledger was only read.
    assert_eq!(std::fs::read(&file).unwrap(), before);
}
