//! The operator's trust file (`--trust`) and a program's `policy.sig`: the signing code
//! reads both from files only, so each input is written to a scratch directory first.
//!
//! Invariants: neither parser panics; a trust file is read or refused with
//! `cannot read trust file: …`; a signature file is verified (against a fixed component,
//! manifest and trusted key) or refused with a non-empty reason. The seed `policy.sig` in
//! fuzz/corpus/trust/ is a real signature of these bytes, so the fuzzer starts past the
//! digest checks, at the key and signature decoding.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cardrules::Trust;
use libfuzzer_sys::fuzz_target;

const COMPONENT: &[u8] = b"fuzz component";
const MANIFEST: &[u8] = b"program = \"bergen\"\nname = \"B\"\ntime-zone = \"Europe/Oslo\"\nlanguages = [\"en\"]\ncomponent = \"policy.wasm\"\n";
/// The public half of the key that signed fuzz/corpus/trust/policy.sig.
const KEY: &str = "ed25519:gm3OyeRh49evlzFypwDZRAE7CZFoUhHxUsdhe7Ou3mk=";
const SEED: &str = include_str!("../corpus/trust/policy.sig");

fn scratch() -> &'static (PathBuf, Trust) {
    static SCRATCH: OnceLock<(PathBuf, Trust)> = OnceLock::new();
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
        std::fs::write(dir.join("policy.sig"), SEED).unwrap();
        trust.verify("bergen", &dir, COMPONENT, MANIFEST).unwrap();
        (dir, trust)
    })
}

fuzz_target!(|data: &[u8]| {
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let (dir, trust) = scratch();

    let path = dir.join("trust.toml");
    std::fs::write(&path, data).unwrap();
    if let Err(e) = Trust::from_file(&path) {
        assert!(e.is_bad_input() && e.to_string().starts_with("cannot read trust file: "));
    }

    std::fs::write(dir.join("policy.sig"), data).unwrap();
    if let Err(why) = trust.verify("bergen", dir, COMPONENT, MANIFEST) {
        assert!(!why.is_empty());
    }
});
