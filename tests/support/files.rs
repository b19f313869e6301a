//! Files for tests: the shipped policies, where they are and which programs they hold, and
//! copying them somewhere a test may change them.

use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The shipped policies: `policies/`, with one directory per program.
pub fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// The shipped programs, sorted: the directories of `policies/` holding a `policy.toml`.
/// Read there rather than listed, so that a program added to `policies/` is tested too.
pub fn shipped_programs() -> Vec<String> {
    let mut programs: Vec<String> = std::fs::read_dir(shipped_policies())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("policy.toml").is_file())
        .map(|dir| dir.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    programs.sort();
    assert!(!programs.is_empty(), "no programs in `policies/`");
    programs
}

/// Copies the directory `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces `path` at once (write aside, rename), as a deployment should.
pub fn replace(path: &Path, contents: &[u8]) {
    let aside = path.with_extension("incoming");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Lowers Bergen kino's yearly limit from 4 to 2 in the policies at `policies`: the new
/// rule book of the replay and shadow tests.
pub fn lower_kino_limit(policies: &Path) {
    let catalogue = policies.join("bergen/catalogue.toml");
    let text = std::fs::read_to_string(&catalogue).unwrap();
    let lowered = text.replacen(
        "location = \"bergen-kino\"\nyearly-limit = 4",
        "location = \"bergen-kino\"\nyearly-limit = 2",
        1,
    );
    assert_ne!(text, lowered);
    std::fs::write(&catalogue, lowered).unwrap();
}
