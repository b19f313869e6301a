//! Changing the rules while serving: hot reload under live traffic, signed updates with a
//! trust file, and a `--shadow` candidate compared without touching the answers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::files::{copy_dir, lower_kino_limit, replace, shipped_policies};
use crate::support::server::*;

/// Appends a custom section to a component: the same code, a different digest — what a
/// rebuilt policy looks like to the host.
fn rebuilt(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"cardrules-test";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    assert!(content.len() < 128, "one-byte LEB128 size");
    let mut out = component.to_vec();
    out.push(0); // custom section
    out.push(content.len() as u8);
    out.extend_from_slice(&content);
    out
}

#[test]
fn hot_reload_swaps_good_updates_and_refuses_broken_ones_under_live_traffic() {
    let server = Arc::new(Server::start());
    let bergen = server.policies().join("bergen");
    let original_component = std::fs::read(bergen.join("bergen.wasm")).unwrap();
    let original_manifest = std::fs::read_to_string(bergen.join("policy.toml")).unwrap();
    let original_catalogue = std::fs::read_to_string(bergen.join("catalogue.toml")).unwrap();
    let first_digest = server.digest("bergen");

    // Live traffic on all three programs while the files change underneath. Each answer
    // must be what the good versions decide — not merely a 200: a wrong denial from a
    // briefly served bad version would be caught.
    let request_for = |t: usize, n: usize| match n % 3 {
        0 => json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                    "offer": "bergen-kino", "at": "2024-03-01T18:00:00+01:00",
                    "dry-run": true}),
        1 => json!({"program": "albertslund", "card": "BK-2002",
                    "action": "top-up", "amount": 1,
                    "at": "2024-05-07T16:00:00+02:00", "id": format!("t{t}-{n}")}),
        _ => json!({"program": "antwerpen", "card": "A-3001", "action": "price",
                    "offer": "mas", "at": "2024-05-07T16:00:00+02:00"}),
    };
    let content = |d: &Value| {
        json!([
            d["allow"],
            d["reason"],
            d["admitted"],
            d["price"],
            d["message"],
            d["notes"]
        ])
    };
    let expected: Arc<Vec<Value>> = Arc::new(
        (0..3)
            .map(|n| content(&server.decide(&request_for(9, n))))
            .collect(),
    );
    for answer in expected.iter() {
        assert_eq!(answer[0], true, "{answer}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let traffic: Vec<_> = (0..3)
        .map(|t| {
            let (server, stop, served, failures, expected) = (
                server.clone(),
                stop.clone(),
                served.clone(),
                failures.clone(),
                expected.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let request = request_for(t, n);
                    let (status, decision) = server.post("/v1/decisions", &request.to_string());
                    if status != 200 || content(&decision) != expected[n % 3] {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{request} → {status} {decision}"));
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // A good update: a rebuilt component and a catalogue with a new offer.
    let new_offer = "\n[[offers]]\nid = \"bergen-kino-reload\"\nname = \"Bergen Kino (ny sal)\"\nprovider = \"Bergen Kino AS\"\ncategory = \"public-event\"\nlocation = \"bergen-kino\"\nyearly-limit = 4\n";
    let mut probe = kino("AK-1002", None);
    probe["offer"] = "bergen-kino-reload".into();
    probe["dry-run"] = true.into();
    assert_eq!(server.decide(&probe)["reason"], "unknown-offer");
    replace(
        &bergen.join("catalogue.toml"),
        format!("{original_catalogue}{new_offer}").as_bytes(),
    );
    let good = rebuilt(&original_component, "v2");
    replace(&bergen.join("bergen.wasm"), &good);
    let good_digest = format!("sha256:{}", sha256_hex(&good));
    assert_ne!(good_digest, first_digest);
    eventually("the rebuilt bergen serves", &server, || {
        server.digest("bergen") == good_digest && server.decide(&probe)["reason"] != "unknown-offer"
    });
    assert_eq!(server.decide(&probe)["allow"], true);
    let loaded_at = |server: &Server| {
        let (_, all) = server.get("/v1/programs");
        all["programs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["program"] == "bergen")
            .map(|p| p["loaded-at"].clone())
            .unwrap()
    };

    // Broken updates: each refused with a log line, the good version keeps serving.
    let broken_manifest = original_manifest.replace("max-age = 17", "max-age = 5");
    assert_ne!(broken_manifest, original_manifest);
    let broken: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bergen.wasm",
            b"\0asm not really a component".to_vec(),
            "not a valid component",
        ),
        (
            "bergen.wasm",
            std::fs::read(server.policies().join("antwerpen/antwerpen.wasm")).unwrap(),
            "describes itself as program `antwerpen`",
        ),
        (
            "catalogue.toml",
            b"[[offers]\nid = ".to_vec(),
            "catalogue.toml",
        ),
        (
            "policy.toml",
            broken_manifest.into_bytes(),
            "its own suites fail",
        ),
    ];
    for (file, contents, expected) in broken {
        // Once the last reload has settled, the version serving now must still serve
        // after the refusal.
        std::thread::sleep(Duration::from_secs(1));
        let good_loaded_at = loaded_at(&server);
        assert!(good_loaded_at.is_string(), "{good_loaded_at}");
        replace(&bergen.join(file), &contents);
        eventually(
            &format!("a broken `{file}` is refused ({expected})"),
            &server,
            || {
                let (_, all) = server.get("/v1/programs");
                all["refused"].as_array().unwrap().iter().any(|r| {
                    r["program"] == "bergen" && r["error"].as_str().unwrap().contains(expected)
                })
            },
        );
        assert_eq!(server.digest("bergen"), good_digest);
        // The digest is the component's: a refused `policy.toml` leaves it as it was
        // anyway, so check that the served version is the very one loaded before.
        assert_eq!(loaded_at(&server), good_loaded_at, "{file} was served");
        assert_eq!(
            server.decide(&probe)["allow"],
            true,
            "the good version still serves"
        );
        // Put the good file back; the refusal clears.
        let restore = match file {
            "bergen.wasm" => good.clone(),
            "catalogue.toml" => format!("{original_catalogue}{new_offer}").into_bytes(),
            _ => original_manifest.clone().into_bytes(),
        };
        replace(&bergen.join(file), &restore);
        eventually("the refusal clears", &server, || {
            let (_, all) = server.get("/v1/programs");
            all["refused"].as_array().unwrap().is_empty()
        });
    }
    assert!(
        server
            .log()
            .contains("update refused, previous version kept")
    );

    stop.store(true, Ordering::Relaxed);
    for thread in traffic {
        thread.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "failed requests during reloads: {failures:#?}"
    );
    assert!(
        served.load(Ordering::Relaxed) > 30,
        "traffic ran throughout"
    );
}

#[test]
fn with_a_trust_file_only_signed_policies_serve_and_unsigned_updates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    let key = dir.path().join("bergen-kommune");
    cardrules(&["keygen", "--out", key.to_str().unwrap()]);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let trust = dir.path().join("trust.toml");
    std::fs::write(
        &trust,
        format!("[programs]\nbergen = [\"{}\"]\n", public.trim()),
    )
    .unwrap();
    let secret = key.with_extension("key");
    cardrules(&[
        "sign",
        "--key",
        secret.to_str().unwrap(),
        policies.join("bergen").to_str().unwrap(),
    ]);

    let dir = Arc::new(dir);
    let server = Server::start_with(dir.clone(), &["--trust", trust.to_str().unwrap()]);
    // Only bergen is signed by a trusted key; the others are refused, saying why.
    let (_, all) = server.get("/v1/programs");
    let serving: Vec<&str> = all["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["program"].as_str().unwrap())
        .collect();
    assert_eq!(serving, ["bergen"]);
    let refused = all["refused"].to_string();
    assert!(refused.contains("unsigned: no `policy.sig`"), "{refused}");
    let mut elsewhere = kino("A-3001", None);
    elsewhere["program"] = "antwerpen".into();
    let (status, error) = server.post("/v1/decisions", &elsewhere.to_string());
    assert_eq!(status, 503, "{error}");
    assert!(server.decide(&kino("AK-1001", None))["allow"] == true);

    // A rebuilt component without a new signature is refused; signed, it serves.
    let bergen = policies.join("bergen");
    let signed_digest = server.digest("bergen");
    let rebuilt = rebuilt(
        &std::fs::read(bergen.join("bergen.wasm")).unwrap(),
        "unsigned",
    );
    replace(&bergen.join("bergen.wasm"), &rebuilt);
    eventually("the unsigned update is refused", &server, || {
        server.get("/v1/programs").1["refused"]
            .to_string()
            .contains("the component was changed after signing")
    });
    assert_eq!(server.digest("bergen"), signed_digest);
    cardrules(&[
        "sign",
        "--key",
        secret.to_str().unwrap(),
        bergen.to_str().unwrap(),
    ]);
    let new_digest = format!("sha256:{}", sha256_hex(&rebuilt));
    eventually("the signed update serves", &server, || {
        server.digest("bergen") == new_digest
    });
}

#[test]
fn a_shadow_candidate_is_compared_on_the_same_state_without_touching_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    // The candidate: Bergen kino's yearly limit lowered from 4 to 2.
    let candidate = dir.path().join("candidate");
    copy_dir(&shipped_policies(), &candidate);
    lower_kino_limit(&candidate);
    let shadow = candidate.display().to_string();
    let server = Server::start_with(Arc::new(dir), &["--allow-unsigned", "--shadow", &shadow]);

    for month in 1..=4 {
        let request = json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                             "offer": "bergen-kino", "id": format!("kino-{month}"),
                             "at": format!("2024-0{month}-10T17:00:00+01:00")});
        // The answers are the serving version's: all four visits allowed.
        assert_eq!(server.decide(&request)["allow"], true);
    }
    eventually("the shadow has compared the four visits", &server, || {
        let (_, all) = server.get("/v1/programs");
        let bergen = &all["shadow"]["bergen"];
        bergen["agreed"].as_u64().unwrap_or(0) + bergen["differed"].as_u64().unwrap_or(0) >= 4
    });
    let (_, all) = server.get("/v1/programs");
    let bergen = &all["shadow"]["bergen"];
    assert_eq!(bergen["agreed"], 2, "{all:#}");
    assert_eq!(bergen["differed"], 2, "{all:#}");
    assert_eq!(
        bergen["transitions"],
        json!([{"from": "allow", "to": "quota-exhausted", "count": 2}])
    );
    assert!(server.log().contains("shadow differs"), "{}", server.log());
    // The same tallies as metrics.
    let metrics = metrics_of(&server);
    let compared = |outcome| {
        metrics.value(
            "cardrules_shadow_comparisons_total",
            &[("program", "bergen"), ("outcome", outcome)],
        )
    };
    assert_eq!((compared("same"), compared("changed")), (2.0, 2.0));
    // Nothing of the candidate was committed: the card's visits are the served ones.
    let fifth = json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                       "offer": "bergen-kino", "at": "2024-05-10T17:00:00+02:00"});
    assert_eq!(server.decide(&fifth)["reason"], "quota-exhausted");

    // The holder erased, a shadow started afresh on the ledger reports its decisions as
    // erased (their facts are gone) instead of comparing them or failing.
    let (status, erased) = call(
        &server,
        None,
        "DELETE",
        "/v1/programs/bergen/holders/AK-1001",
        "",
    );
    assert_eq!(status, 200, "{erased}");
    let dir = server.dir.clone();
    drop(server);
    let server = Server::start_with(dir, &["--allow-unsigned", "--shadow", &shadow]);
    eventually("the shadow has followed the journal", &server, || {
        let (_, all) = server.get("/v1/programs");
        all["shadow"]["bergen"]["erased"].as_u64().unwrap_or(0) >= 5
    });
    let (_, all) = server.get("/v1/programs");
    let bergen = &all["shadow"]["bergen"];
    assert_eq!(
        (&bergen["agreed"], &bergen["differed"], &bergen["erased"]),
        (&json!(0), &json!(0), &json!(5)),
        "{all:#}"
    );
}
