//! The operator's trust file (`--trust`) and a program's `policy.sig`: the trust file is
//! read from a file only, so each input is written to a scratch directory first; the
//! signature is verified from its bytes.
//!
//! Invariants: neither parser panics; a trust file is read or refused with
//! `cannot read trust file: …`; a signature file is verified (against fixed program files
//! and a trusted key) or refused with a non-empty reason. The seed `policy.sig` in
//! fuzz/corpus/trust/ is a real signature (format v2) of these files, so the fuzzer starts
//! past the format checks, at the key, signature and digest checks.

#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use cardrules::Trust;
use libfuzzer_sys::fuzz_target;

const COMPONENT: &[u8] = b"fuzz component";
const MANIFEST: &[u8] = b"program = \"bergen\"\nname = \"B\"\ntime-zone = \"Europe/Oslo\"\nlanguages = [\"en\"]\ncomponent = \"policy.wasm\"\n";
const CATALOGUE: &[u8] = b"# no offers\n";
/// The public half of the key that signed fuzz/corpus/trust/policy.sig.
const KEY: &str = "ed25519:WjNHsupwz7pFjvIVwBnv2/zXTdJ9QoSzw4XKwDfq6Fo=";

/// The program files the seed signs, as the loader reads them.
fn files() -> BTreeMap<String, Vec<u8>> {
    [
        ("catalogue.toml", CATALOGUE),
        ("policy.toml", MANIFEST),
        ("policy.wasm", COMPONENT),
    ]
    .into_iter()
    .map(|(path, bytes)| (path.to_string(), bytes.to_vec()))
    .collect()
}
const SEED: &str = include_str!("../corpus/trust/policy.sig");

fn scratch() -> &'static (PathBuf, Trust, BTreeMap<String, Vec<u8>>) {
    static SCRATCH: OnceLock<(PathBuf, Trust, BTreeMap<String, Vec<u8>>)> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        // Memory-backed where there is one: writing to disk twice per input is slow.
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        // Each run leaves its directory behind; clear those of runs that have ended.
        let prefix = "cardrules-fuzz-trust-";
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(prefix)
                && !PathBuf::from(format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let trust = Trust::nobody().with_key("bergen", KEY).unwrap();
        // The target reaches the signature checks: the seed verifies.
        let files = files();
        trust
            .verify("bergen", Some(SEED.as_bytes()), &files, "policy.wasm")
            .unwrap();
        (dir, trust, files)
    })
}

fuzz_target!(|data: &[u8]| {
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let (dir, trust, files) = scratch();

    let path = dir.join("trust.toml");
    std::fs::write(&path, data).unwrap();
    if let Err(e) = Trust::from_file(&path) {
        assert!(e.is_bad_input() && e.to_string().starts_with("cannot read trust file: "));
    }

    if let Err(why) = trust.verify("bergen", Some(data), files, "policy.wasm") {
        assert!(!why.is_empty());
    }
});
